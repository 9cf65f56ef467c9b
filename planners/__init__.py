"""Planners: produce a Plan from a goal."""
