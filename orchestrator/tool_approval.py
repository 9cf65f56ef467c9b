"""Tools that need a person: approval of a call before it runs, or of its result after.

Which tools: a tool object with ``approve = "before"`` or ``"after"`` (``@tool(approve=...)``,
``FunctionTool(..., approve=...)``), or a name matched by ``RunConfig.approve_tools``
(patterns such as ``"mcp__fs__write_*"``; the CLI's ``--approve-tool`` and
``--approve-tool-result``). When the model asks for such a tool, the attempt's tool loop
asks the engine's approver, if any; with no decision at hand it stops at that turn: the
attempt keeps the conversation so far (:class:`~orchestrator.paused.ToolWait`), the node
is ``waiting`` and the run can end ``waiting`` (the CLI exits 3), as for a task's approval.

``orchestrator approve RUN TASK [--reject WHY]`` decides on all the calls of that turn,
and ``resume`` goes on from it on the same tier: earlier turns are not sent again and a
tool that ran is not run again. A refused call, or a rejected result, goes back to the
model as an error result carrying the reviewer's reason (feedback: the model may try
another way). Every decision is an attempt on the node (tier ``human``, ``approval="tool"``,
``approves``: the paused attempt), so it is stored, shown and traced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from orchestrator.models.base import Message, ToolCall, ToolResult
from orchestrator.paused import ToolsAwaitApproval, ToolWait
from orchestrator.results import Attempt, NodeResult, NodeStatus, Verdict

__all__ = [
    "Ask",
    "PausedTools",
    "ToolApproval",
    "paused_attempt",
    "told",
    "tool_decision",
    "tool_stages",
]

Stage = Literal["before", "after"]


def tool_stages(
    tools: Mapping[str, Any], patterns: Mapping[str, Stage]
) -> Callable[[str], Stage | None]:
    """When each tool needs approval: a pattern of the run's, else the tool's ``approve``."""

    def stage(name: str) -> Stage | None:
        for pattern, when in patterns.items():
            if fnmatchcase(name, pattern):
                return when
        own = getattr(tools.get(name), "approve", None)
        return own if own in ("before", "after") else None

    return stage


def paused_attempt(result: NodeResult) -> Attempt | None:
    """The attempt of a waiting node whose tool loop stopped for a decision."""
    if result.status is not NodeStatus.WAITING:
        return None
    for attempt in reversed(result.attempts):
        if attempt.answering:
            return attempt if attempt.tool_wait is not None else None
    return None


def tool_decision(result: NodeResult, paused: Attempt) -> Attempt | None:
    """The decision recorded on ``paused``'s waiting tool calls, if any."""
    wait = paused.tool_wait
    assert wait is not None
    for attempt in reversed(result.attempts):
        if (
            attempt.approval == "tool"
            and attempt.approves == paused.number
            and attempt.number > wait.after
        ):
            return attempt
    return None


def told(decision: Attempt) -> Verdict:
    """A recorded decision on tool calls as the model is told it: the reviewer's own words."""
    verdict = decision.verdict
    assert verdict is not None
    why = verdict.reason.partition("): ")[2]  # after "... of attempt N (tools)"
    return verdict.model_copy(update={"reason": why or "no reason given"})


@dataclass(frozen=True, slots=True)
class PausedTools:
    """A paused attempt's conversation, decided on: where the resumed attempt goes on."""

    attempt: Attempt
    """The paused attempt."""
    wait: ToolWait
    """What it stored."""
    verdict: Verdict
    """The decision on its waiting calls."""

    @property
    def messages(self) -> list[Message]:
        """The conversation to go on from."""
        return [Message.model_validate(m) for m in self.wait.messages]

    @property
    def reason(self) -> str:
        """The resumed attempt's route reason."""
        verb = "approved" if self.verdict.passed else "refused"
        return (
            f"goes on from the conversation of attempt {self.attempt.number}: a reviewer "
            f"{verb} its {', '.join(self.wait.tools)} ({self.verdict.reason})"
        )


Ask = Callable[[Stage, Sequence[ToolCall], Sequence[ToolResult]], Awaitable[Verdict | None]]
"""Asks for a decision on a turn's calls now (the engine's approver, recorded); ``None``: none."""


class ToolApproval:
    """One attempt's :class:`~orchestrator.turns.ToolGate`."""

    def __init__(
        self,
        stage: Callable[[str], Stage | None],
        ask: Ask,
        *,
        result: NodeResult,
        resumed: PausedTools | None = None,
        pausable: bool = True,
    ) -> None:
        self._stage, self._ask, self._result, self._pausable = stage, ask, result, pausable
        self._resumed = (resumed.wait, resumed.verdict) if resumed is not None else None

    @property
    def resumed(self) -> tuple[ToolWait, Verdict] | None:
        """The paused turn this attempt goes on from, and the decision on it."""
        return self._resumed

    def stage(self, name: str) -> Stage | None:
        """When tool ``name`` needs approval."""
        return self._stage(name)

    async def decide(
        self,
        stage: Stage,
        calls: Sequence[ToolCall],
        messages: Sequence[Message],
        results: Sequence[ToolResult],
        steps: int,
    ) -> Verdict:
        """The decision asked for now; with none, stop the loop at this turn (stored)."""
        if not self._pausable:  # a shadow attempt: nobody is asked for a run never used
            return Verdict(
                passed=False, verifier="approval",
                reason="a shadow attempt does not run tools that need approval",
            )  # fmt: skip
        verdict = await self._ask(stage, calls, results)
        if verdict is not None:
            return verdict
        raise ToolsAwaitApproval(
            ToolWait(
                stage=stage,
                tools=tuple(c.name for c in calls),
                pending=tuple(c.id for c in calls),
                messages=tuple(m.model_dump(mode="json") for m in messages),
                results=tuple(r.model_dump(mode="json") for r in results),
                steps=steps,
                after=max(a.number for a in self._result.attempts),
            )
        )
