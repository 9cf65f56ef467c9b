"""Typed tools that models may call."""
