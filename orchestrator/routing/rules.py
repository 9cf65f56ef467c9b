"""Routing by rules: the :class:`Router` protocol and the capability rules.

A router chooses the tier a node's first attempt runs on, from a :class:`RouteRequest`:
what it can see of the task (its instruction, the whole prompt with its inputs and their
size, its kind, its declared needs). The built-in
:class:`CapabilityRouter` picks the cheapest tier whose capability profile covers every
need. It reads only capability levels and context windows, never model names, so a new
model release is a change to the tiers file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from orchestrator.capabilities import Needs
from orchestrator.results import NodeResult
from orchestrator.tiers import TierLadder

if TYPE_CHECKING:
    from orchestrator.routing.classifier import TaskClassifier

__all__ = [
    "CALIBRATION_ROUTE",
    "PROBE_ROUTE",
    "REFERENCE_CHECK",
    "CapabilityRouter",
    "ClassifyingRouter",
    "LearningRouter",
    "RouteDecision",
    "RouteRequest",
    "Router",
]

CALIBRATION_ROUTE = "calibration run: "
"""How the route reason of a calibration run's attempts starts (:mod:`orchestrator.calibrate`):
every task of the run sampled, its answers compared with the top tier's."""

PROBE_ROUTE = "probe: "
"""How the route reason of a probe starts: a shadow attempt on a tier below the one the
node passed on (the top tier's shadow attempts start ``"shadow: "``)."""

REFERENCE_CHECK = "reference"
"""The verifier name of a calibration run's comparison with the top tier's answer."""

TaskKind = Literal["text", "structured", "tools"]
"""What the task produces: free text, structured output (a schema), or text with tools."""


def task_kind(*, structured: bool, tools: bool) -> TaskKind:
    """The kind of a task with (or without) an output schema and tools."""
    return "structured" if structured else ("tools" if tools else "text")


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a router sees of the task it routes.

    Attributes:
        needs: The declared capability needs (what the rules route on).
        instruction: The task's instruction.
        prompt: The first attempt's whole prompt: the instruction and the inputs from
            earlier tasks (the instruction alone when there are none).
        input_tokens: An upper estimate of the prompt's size in tokens (its UTF-8 bytes).
        kind: ``"structured"`` if the task has an output schema, ``"tools"`` if it may call
            tools, else ``"text"``.
        task_id: The task's id.
        label: What a classifier call said of the task before routing (a router with a
            :class:`~orchestrator.routing.classifier.TaskClassifier`), else ``None``.
    """

    needs: Needs
    instruction: str = ""
    prompt: str = ""
    input_tokens: int = 0
    kind: TaskKind = "text"
    task_id: str = ""
    label: str | None = None

    @classmethod
    def of(
        cls,
        needs: Needs,
        instruction: str = "",
        *,
        prompt: str | None = None,
        kind: TaskKind = "text",
        task_id: str = "",
    ) -> RouteRequest:
        """A request with ``input_tokens`` counted from its prompt (default: the instruction).

        The one place that estimate is made: the engine builds its requests with it too.
        """
        text = instruction if prompt is None else prompt
        return cls(needs, instruction, text, len(text.encode()), kind, task_id)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a node starts.

    Attributes:
        index: Position of the chosen tier on the ladder.
        covered: Whether that tier covers every need (``False``: nothing does; strongest used).
        reason: Why this tier, in plain words (shown on the attempt).
        shadow: Also answer the task on ``shadow_tier`` once it passes (a paid shadow
            attempt that changes nothing in the result; a learning router compares the two
            answers to learn what its checks miss and how the other tier does).
        shadow_tier: Where the shadow attempt runs (index); ``None``: the top tier. None
            runs on the tier the node passed on.
    """

    index: int
    covered: bool
    reason: str
    shadow: bool = False
    shadow_tier: int | None = None


@runtime_checkable
class Router(Protocol):
    """Chooses the tier a node's first attempt runs on."""

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        """Return the starting tier for the task ``request`` describes."""
        ...


@runtime_checkable
class ClassifyingRouter(Router, Protocol):
    """A router that wants each task labelled by a cheap-tier call before routing it.

    The engine makes the call (paid, recorded as a ``classify`` attempt) when
    ``classifier`` is set, and routes with the answer in :attr:`RouteRequest.label`.
    """

    classifier: TaskClassifier | None


@runtime_checkable
class LearningRouter(Router, Protocol):
    """A router that learns from finished nodes; the engine feeds it every one."""

    def observe(self, result: NodeResult, request: RouteRequest | None = None) -> bool:
        """Learn from a finished node; return whether it was counted.

        ``request``: what the node was routed with, when the caller knows it (replaying
        the store); the engine passes only the result, so a router that learns from the
        task's content remembers the requests it routed.
        """
        ...


class CapabilityRouter:
    """Cheapest tier whose profile covers every need; the strongest when none does."""

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        """Return the cheapest covering tier, or the strongest with ``covered=False``."""
        return self.route_needs(request.needs, ladder)

    def route_needs(self, needs: Needs, ladder: TierLadder) -> RouteDecision:
        """The same decision from the declared needs alone (all the rules read)."""
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
