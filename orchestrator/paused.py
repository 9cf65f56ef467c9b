"""A tool loop paused for a person: what an attempt stores to go on later without re-paying.

A tool may require a person's approval before it runs, or of its result before the model
reads it (:mod:`orchestrator.tool_approval`). When no decision is at hand, the attempt's
tool loop stops at that turn and the attempt keeps a :class:`ToolWait`: the conversation so
far (ending with the model's turn that asked for the tools) and, after, the results the
turn's tools already returned. ``resume`` continues that conversation on the same tier: the
turns before it are not sent again, and a tool that ran is not run again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ToolWait", "ToolsAwaitApproval"]


class ToolWait(BaseModel):
    """An attempt's tool loop waiting for a decision on some of its tool calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Literal["before", "after"]
    """``before``: the calls wait to run; ``after``: they ran, their results wait."""
    tools: tuple[str, ...]
    """The names of the calls that wait, in the order the model asked for them."""
    pending: tuple[str, ...]
    """The ids of those calls."""
    messages: tuple[dict[str, Any], ...]
    """The conversation so far (each a ``Message`` as JSON), ending with the model's turn
    that asked for the tools."""
    results: tuple[dict[str, Any], ...] = ()
    """The results of that turn's calls that already ran (each a ``ToolResult`` as JSON)."""
    steps: int
    """Model turns the attempt had taken (of its ``max_tool_steps``)."""
    after: int
    """The highest attempt number on the node when it paused: a decision on it is a later one."""


class ToolsAwaitApproval(Exception):
    """Raised out of the tool loop: some of a turn's tool calls wait for a person."""

    def __init__(self, wait: ToolWait) -> None:
        super().__init__(f"tool calls wait for approval: {', '.join(wait.tools)}")
        self.wait = wait
