"""What limits a run's nodes: attempts, tiers, the tool loop, caching, batches, approvals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.node import Node
from orchestrator.wire import DEFAULT_SYSTEM_PROMPT

__all__ = ["RunPolicy"]


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """Limits on a node's attempts.

    Attributes:
        max_attempts: Most attempts per node (``None``: one per tier from the start tier).
        max_tier: Index of the highest tier escalation may reach.
        system_prompt: System prompt of task attempts.
        max_tool_steps: Most model calls in one attempt's tool loop.
        tool_timeout_s: Deadline of each tool call.
        cache: Whether requests mark prompt-cache breakpoints.
        batch: Whether tasks' calls go in Message Batches (unless a task says otherwise).
        approve_tools: Tool-name patterns whose calls need a person's approval, ``before``
            they run or ``after`` (of their results): :mod:`orchestrator.tool_approval`.
    """

    max_attempts: int | None
    max_tier: int
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tool_steps: int = 8
    tool_timeout_s: float = 60.0
    cache: bool = True
    batch: bool = False
    approve_tools: Mapping[str, Literal["before", "after"]] = field(default_factory=dict)

    def batches(self, node: Node) -> bool:
        """Whether ``node``'s calls go in Message Batches."""
        return self.batch if node.task.batch is None else node.task.batch
