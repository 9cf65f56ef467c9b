"""A lightweight classifier before routing: a cheap tier labels each task first.

The seed's option for when a task's words say too little: before a node is routed, one
call on a cheap tier (the ladder's cheapest unless ``tier`` says otherwise) reads the task
and answers one of a few labels, easiest first (default ``easy`` / ``hard``). The label
reaches the router as :attr:`RouteRequest.label`, and :class:`CalibratedRouter` learns
from it like any other feature (a ``label=...`` token), so what a label is worth is
learned, not assumed.

The call is paid like any other and within the run's budget: the engine records it as
the node's first attempt with ``classify=True`` and the ``label`` it answered (its cost in
the node's cost and in :attr:`RunResult.classify_cost_usd`), never as the node's answer
and never verified. A resumed node reuses the label it already paid for. An answer that
names no label, or a call that fails, leaves the label unset and routing goes on without
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.exceptions import UserError
from orchestrator.tiers import Tier, TierLadder
from orchestrator.wire import CLASSIFY_SYSTEM_PROMPT, classify_prompt, parse_label

__all__ = ["TaskClassifier"]


@dataclass(frozen=True, slots=True)
class TaskClassifier:
    """Labels each task with a cheap-tier call before it is routed.

    Args:
        tier: The tier that classifies (default: the ladder's cheapest).
        labels: One-word labels, easiest first.
        max_output_tokens: ``max_tokens`` of the call (a label is a word or two).
        max_chars: The task's prompt is cut to this many characters (its cost, mostly).
    """

    tier: str | None = None
    labels: tuple[str, ...] = ("easy", "hard")
    max_output_tokens: int = 8
    max_chars: int = 8000

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise UserError(f"a classifier needs at least two labels, got {list(self.labels)}")
        for label in self.labels:
            if not label or len(label.split()) != 1:
                raise UserError(f"classifier labels are single words, got {label!r}")
        if len({label.lower() for label in self.labels}) != len(self.labels):
            raise UserError(f"classifier labels must differ, got {list(self.labels)}")
        if self.max_output_tokens < 1 or self.max_chars < 1:
            raise UserError("a classifier's max_output_tokens and max_chars must be positive")

    def pick_tier(self, ladder: TierLadder) -> Tier:
        """The tier that classifies: ``tier`` (which must be in the ladder), else the cheapest."""
        return ladder.get(self.tier) if self.tier is not None else ladder[0]

    @property
    def system(self) -> str:
        """The system prompt of the call."""
        return CLASSIFY_SYSTEM_PROMPT

    def prompt(self, task: str) -> str:
        """The user turn: the task's prompt (cut to ``max_chars``) and the labels."""
        return classify_prompt(task[: self.max_chars], self.labels)

    def parse(self, text: str) -> str | None:
        """The label the answer names, ``None`` when it names none."""
        return parse_label(text, self.labels)
