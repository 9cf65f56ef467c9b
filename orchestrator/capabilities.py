"""The capability vocabulary: what a task needs and what a tier covers.

A small, named set of dimensions, each with integer levels. Tasks declare the level they need
per dimension (``Needs``); tiers declare the level they cover (``Capabilities``). Routing
compares the two and never looks at model names, so moving a model's capability line is a
configuration change, not a code change.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CAPABILITY_DIMENSIONS",
    "LEVEL_MEANINGS",
    "MAX_LEVEL",
    "Capabilities",
    "Level",
    "Needs",
]

MAX_LEVEL: Final = 3
"""The highest level of any dimension."""

Level = Annotated[int, Field(ge=0, le=MAX_LEVEL)]
"""A capability level: 0 (not needed) to 3 (frontier)."""

CAPABILITY_DIMENSIONS: Final[dict[str, str]] = {
    "reasoning": "depth of multi-step reasoning, analysis and synthesis",
    "long_context": "using information spread across long inputs",
    "coding": "reading and writing code",
    "tool_use": "choosing and calling tools over several steps",
}
"""Each dimension's name and what it measures (the planner's prompt shows these)."""

LEVEL_MEANINGS: Final[dict[int, str]] = {
    0: "not needed",
    1: "basic: extraction, summarising, simple lookups",
    2: "strong: multi-step work, comparisons, non-trivial code",
    3: "frontier: hard synthesis, subtle trade-offs, long chains of reasoning",
}
"""What each level means, for planners and humans."""


class Capabilities(BaseModel):
    """The level a tier covers in each capability dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    reasoning: Level = 0
    """Depth of multi-step reasoning."""
    long_context: Level = 0
    """Use of information spread across long inputs."""
    coding: Level = 0
    """Reading and writing code."""
    tool_use: Level = 0
    """Choosing and calling tools over several steps."""

    def levels(self) -> dict[str, int]:
        """Return the level of every dimension, by name."""
        return {name: getattr(self, name) for name in CAPABILITY_DIMENSIONS}


class Needs(Capabilities):
    """What a task needs: a level per capability dimension plus a context size."""

    context_tokens: Annotated[int, Field(ge=0)] = 0
    """Tokens of input the task must fit into the model's context window."""

    def shortfalls(self, covered: Capabilities, context_window: int) -> list[str]:
        """List, in plain words, every need that ``covered`` does not meet.

        Args:
            covered: The capability profile of a tier.
            context_window: The tier's context window in tokens.

        Returns:
            One entry per unmet need, e.g. ``"reasoning 3 > 2"``; empty when all are met.
        """
        have = covered.levels()
        missing = [
            f"{name} {level} > {have[name]}"
            for name, level in self.levels().items()
            if level > have[name]
        ]
        if self.context_tokens > context_window:
            missing.append(f"context_tokens {self.context_tokens} > {context_window}")
        return missing
