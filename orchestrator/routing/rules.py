"""Routing by rules: the :class:`Router` protocol and the capability rules.

A router chooses the tier a node's first attempt runs on. The built-in
:class:`CapabilityRouter` picks the cheapest tier whose capability profile covers every
need. It reads only capability levels and context windows, never model names, so a new
model release is a change to the tiers file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.capabilities import Needs
from orchestrator.results import NodeResult
from orchestrator.tiers import TierLadder

__all__ = ["CapabilityRouter", "LearningRouter", "RouteDecision", "Router"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a node starts.

    Attributes:
        index: Position of the chosen tier on the ladder.
        covered: Whether that tier covers every need (``False``: nothing does; strongest used).
        reason: Why this tier, in plain words (shown on the attempt).
    """

    index: int
    covered: bool
    reason: str


@runtime_checkable
class Router(Protocol):
    """Chooses the tier a node's first attempt runs on."""

    def route(self, needs: Needs, ladder: TierLadder) -> RouteDecision:
        """Return the starting tier for a task with ``needs``."""
        ...


@runtime_checkable
class LearningRouter(Router, Protocol):
    """A router that learns from finished nodes; the engine feeds it every one."""

    def observe(self, result: NodeResult) -> bool:
        """Learn from a finished node; return whether it was counted."""
        ...


class CapabilityRouter:
    """Cheapest tier whose profile covers every need; the strongest when none does."""

    def route(self, needs: Needs, ladder: TierLadder) -> RouteDecision:
        """Return the cheapest covering tier, or the strongest with ``covered=False``."""
        for index, tier in enumerate(ladder.tiers):
            if not needs.shortfalls(tier.capabilities, tier.context_window):
                return RouteDecision(index, True, f"cheapest tier covering the needs: {tier.name}")
        top = len(ladder) - 1
        strongest = ladder[top]
        missing = ", ".join(needs.shortfalls(strongest.capabilities, strongest.context_window))
        return RouteDecision(
            top,
            False,
            f"no tier covers the needs ({missing} on {strongest.name}); using the strongest",
        )
