"""Tiered LLM orchestration: plan a DAG, route each node to the cheapest adequate tier."""
