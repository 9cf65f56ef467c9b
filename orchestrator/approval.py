"""Human approval: a task that waits for a person before it runs, or before its answer counts.

A task with ``approve="before"`` (a plan file's ``"approve": "before"``, the workflow
decorators' ``approve=``) waits before its first call; one with ``approve="after"`` runs,
and its answer, once verification passed, waits before it is accepted. Who decides:

* an :data:`Approver` given to the engine (``Engine(approver=...)``) is asked at once; it
  answers with an :class:`ApprovalDecision`, or ``None`` to leave it for later;
* otherwise (or on ``None``) the node is ``waiting``: its dependents wait with it, the rest
  of the DAG goes on, and when nothing else can run the run ends ``waiting`` (the CLI exits
  3). Nothing runs, so nothing is spent, while it waits. The decision is recorded later
  with :func:`decide` (``orchestrator approve RUN_ID TASK [--reject WHY]``), and ``resume``
  goes on from there without re-running anything: an approved answer is the node's
  output as it stands; a rejected one is feedback, as a failed verification is: the next
  attempt, one tier up, sees the answer and the reviewer's reason. A task rejected before
  it ran fails (its dependents are skipped).

Every decision is an attempt of its own on the node (tier ``human``, no model, no cost,
``approval`` says the stage), so it is stored, shown and traced with the rest. A tool, too,
can need approval before it runs or of its result (:mod:`orchestrator.tool_approval`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.events import AttemptSpending, AttemptStarted, EventBus
from orchestrator.exceptions import UserError
from orchestrator.models.base import Message, ToolCall, ToolResult
from orchestrator.node import Node, render_value
from orchestrator.results import Attempt, NodeResult, NodeStatus, Outcome, Verdict
from orchestrator.store.base import RunStore
from orchestrator.tool_approval import (
    PausedTools,
    ToolApproval,
    paused_attempt,
    told,
    tool_decision,
    tool_stages,
)

__all__ = [
    "HUMAN_TIER",
    "ApprovalDecision",
    "ApprovalRequest",
    "Approvals",
    "Approver",
    "candidate",
    "decide",
    "decision_attempt",
    "decision_for",
]

HUMAN_TIER = "human"
"""The tier name of a person's decision."""

Stage = Literal["before", "after"]


class ApprovalRequest(BaseModel):
    """What an approver is asked about one task."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    """The run."""
    task_id: str
    """The task."""
    when: Stage
    """``before`` it runs, or ``after``: its answer passed verification (with
    :attr:`tool_calls`: before those calls run, or after, of their results)."""
    instruction: str
    """The task's instruction."""
    output: Any = None
    """``after``: the answer to approve."""
    attempt: int | None = None
    """``after``: the number of the attempt that gave it."""
    tier: str | None = None
    """``after``: the tier that gave it (with :attr:`tool_calls`: the one calling them)."""
    tool_calls: tuple[dict[str, Any], ...] = ()
    """A decision on the tool calls of one model turn (each ``id``, ``name``,
    ``arguments`` and, after, ``result``), not on the task."""


class ApprovalDecision(BaseModel):
    """A person's decision: approved, or rejected with a reason the next attempt reads."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    """Whether the task may run (``before``) or its answer stands (``after``)."""
    reason: str = ""
    """Why (a rejection's reason is the next attempt's feedback)."""


Approver = Callable[[ApprovalRequest], Awaitable[ApprovalDecision | None]]
"""Asked for each approval as it comes up; ``None``: no decision now (the task waits)."""


def decision_for(result: NodeResult, when: Stage, approves: int | None = None) -> Attempt | None:
    """The latest decision recorded on ``result`` for ``when`` (and, after, that answer)."""
    for attempt in reversed(result.attempts):
        if attempt.approval == when and (when == "before" or attempt.approves == approves):
            return attempt
    return None


def candidate(result: NodeResult) -> Attempt | None:
    """The answering attempt whose answer waits for approval (the last one that passed)."""
    for attempt in reversed(result.attempts):
        if attempt.answering and attempt.passed:
            return attempt
    return None


def decision_attempt(
    number: int,
    when: Stage | Literal["tool"],
    decision: ApprovalDecision,
    approves: int | None = None,
    tools: str = "",
) -> Attempt:
    """A decision as the attempt that records it on the node (``tools``: the calls judged)."""
    now = datetime.now(UTC)
    verb = "approved" if decision.approved else "rejected"
    what = (
        f"the tool calls of attempt {approves} ({tools})" if when == "tool"
        else "the task before it ran" if when == "before"
        else f"the answer of attempt {approves}"
    )  # fmt: skip
    reason = f"a reviewer {verb} {what}" + (f": {decision.reason}" if decision.reason else "")
    return Attempt(
        number=number, tier=HUMAN_TIER, model=None, started_at=now, finished_at=now,
        route_reason="a person's decision", approval=when, approves=approves,
        verdict=Verdict(passed=decision.approved, reason=reason, verifier="approval"),
    )  # fmt: skip


async def decide(
    store: RunStore, run_id: str, task_id: str, *, reject: str | None = None
) -> Attempt:
    """Record a person's decision on a task that waits for one; ``resume`` acts on it.

    Args:
        store: The store holding the run.
        run_id: The run.
        task_id: The waiting task.
        reject: ``None`` approves; a reason rejects (the next attempt's feedback).

    Returns:
        The decision, as recorded.

    Raises:
        UserError: If the run or the task is unknown, or the task is not waiting for a
            decision (the message says what it is doing instead).
    """
    try:
        stored = await store.load_run(run_id)
    except KeyError:
        raise UserError(f"no run {run_id!r} in the store") from None
    if stored.plan is None or task_id not in {task.id for task in stored.plan.tasks}:
        raise UserError(f"run {run_id} has no task {task_id!r}")
    node = stored.nodes.get(task_id)
    if node is None or node.status is not NodeStatus.WAITING:
        status = node.status.value if node is not None else "not run yet"
        raise UserError(f"task {task_id!r} of run {run_id} is not waiting for approval ({status})")
    attempts = stored.attempts.get(task_id, [])
    waiting = NodeResult(id=task_id, status=node.status, attempts=list(attempts))
    decision = ApprovalDecision(approved=reject is None, reason=reject or "")
    number = max((a.number for a in attempts), default=0) + 1
    if (paused := paused_attempt(waiting)) is not None and paused.tool_wait is not None:
        tools = ", ".join(paused.tool_wait.tools)
        attempt = decision_attempt(number, "tool", decision, paused.number, tools)
        await store.record_attempt(run_id, task_id, attempt)
        return attempt
    answer = candidate(waiting)
    when: Stage = "after" if answer is not None else "before"
    attempt = decision_attempt(number, when, decision, answer.number if answer else None)
    await store.record_attempt(run_id, task_id, attempt)
    return attempt


class Approvals:
    """The approval steps of a :class:`~orchestrator.attempt.NodeRunner` (a mixin)."""

    run_id: str
    bus: EventBus
    approver: Approver | None
    tools: Any  # the runner's ToolRegistry
    approve_tools: Mapping[str, Stage]

    def _tool_gate(
        self,
        node: Node,
        result: NodeResult,
        attempt: Attempt,
        resumed: PausedTools | None = None,
        *,
        pausable: bool = True,
    ) -> ToolApproval | None:
        """The gate of ``attempt``'s tool loop; ``None``: none of its tools needs approval."""
        if resumed is None and not node.task.tools:
            return None
        own = {name: self.tools[name] for name in node.task.tools if name in self.tools}
        stage = tool_stages(own, self.approve_tools)
        if resumed is None and not any(stage(name) for name in node.task.tools):
            return None

        async def ask(
            when: Stage, calls: Sequence[ToolCall], results: Sequence[ToolResult]
        ) -> Verdict | None:
            return await self._ask_tools(
                node, result, attempt, when=when, calls=calls, results=results
            )

        return ToolApproval(stage, ask, result=result, resumed=resumed, pausable=pausable)

    async def _ask_tools(
        self,
        node: Node,
        result: NodeResult,
        attempt: Attempt,
        *,
        when: Stage,
        calls: Sequence[ToolCall],
        results: Sequence[ToolResult],
    ) -> Verdict | None:
        """The approver's decision on one turn's tool calls (recorded), or ``None``."""
        if self.approver is None:
            return None
        outputs = {r.tool_call_id: r.content for r in results}
        request = ApprovalRequest(
            run_id=self.run_id, task_id=node.task.id, when=when,
            instruction=node.task.instruction, attempt=attempt.number, tier=attempt.tier,
            tool_calls=tuple(
                {"id": c.id, "name": c.name, "arguments": c.arguments}
                | ({"result": outputs[c.id]} if c.id in outputs else {})
                for c in calls
            ),
        )  # fmt: skip
        decision = await self.approver(request)
        if decision is None:
            return None
        number = max(a.number for a in result.attempts) + 1
        names = ", ".join(c.name for c in calls)
        recorded = decision_attempt(number, "tool", decision, attempt.number, names)
        result.attempts.append(recorded)
        if self.bus:
            await self.bus.emit(AttemptStarted(self.run_id, node.task.id, recorded))
            await self.bus.emit_finished(self.run_id, node.task.id, recorded)
        return told(recorded)

    async def _paused_tools(
        self, node: Node, result: NodeResult
    ) -> tuple[bool, PausedTools | None]:
        """A resumed node whose tool loop waited: ``(still waiting, where to go on)``.

        The decision is the one recorded, or the approver's now.
        """
        paused = paused_attempt(result)
        if paused is None or (wait := paused.tool_wait) is None:
            return False, None
        decided = tool_decision(result, paused)
        verdict = told(decided) if decided is not None else None
        if verdict is None:
            turn = Message.model_validate(wait.messages[-1]).content
            calls = [b for b in turn if isinstance(b, ToolCall) and b.id in wait.pending]
            results = [ToolResult.model_validate(r) for r in wait.results]
            verdict = await self._ask_tools(
                node, result, paused, when=wait.stage, calls=calls, results=results
            )
        if verdict is None:
            return True, None
        result.status, result.reason = NodeStatus.NOT_RUN, None
        return False, PausedTools(paused, wait, verdict)

    async def _approved(
        self, node: Node, result: NodeResult, when: Stage, answer: Attempt | None, output: Any
    ) -> Verdict | None:
        """The decision on ``node`` at ``when`` (recorded, or asked for now); ``None``: wait."""
        approves = answer.number if answer is not None else None
        earlier = decision_for(result, when, approves)
        if earlier is not None:
            return earlier.verdict
        if self.approver is None:
            return None
        request = ApprovalRequest(
            run_id=self.run_id, task_id=node.task.id, when=when, instruction=node.task.instruction,
            output=output, attempt=approves, tier=answer.tier if answer is not None else None,
        )  # fmt: skip
        decision = await self.approver(request)
        if decision is None:
            return None
        number = max((a.number for a in result.attempts), default=0) + 1
        attempt = decision_attempt(number, when, decision, approves)
        result.attempts.append(attempt)
        if self.bus:
            await self.bus.emit(AttemptStarted(self.run_id, node.task.id, attempt))
            await self.bus.emit_finished(self.run_id, node.task.id, attempt)
        return attempt.verdict

    async def _may_start(self, node: Node, result: NodeResult) -> bool:
        """Whether the node may run now: no approval needed before, or it has it."""
        if node.task.approve != "before":
            return True
        verdict = await self._approved(node, result, "before", None, None)
        if verdict is None:
            result.status, result.reason = NodeStatus.WAITING, Outcome.WAITING_FOR_APPROVAL
        elif not verdict.passed:
            result.status, result.reason = NodeStatus.FAILED, verdict.reason
        return verdict is not None and verdict.passed

    async def _run_python(
        self, node: Node, arguments: Mapping[str, Any], result: NodeResult
    ) -> None:
        raise NotImplementedError  # the runner's

    async def _run_python_approved(
        self, node: Node, arguments: Mapping[str, Any], result: NodeResult
    ) -> None:
        """A Python task that needs approval (rejected after, it fails: it would not change)."""
        done, rejected, _ = await self._waiting_answer(node, result)
        if rejected is not None:
            result.status = NodeStatus.FAILED
            result.reason = rejected.verdict.reason if rejected.verdict else None
            return
        if done or not await self._may_start(node, result):
            return
        await self._run_python(node, arguments, result)
        answer = result.attempts[-1]
        if (
            result.status is NodeStatus.SUCCEEDED
            and not await self._held(node, result, answer, result.output)
            and not answer.passed
        ):
            result.status, result.output = NodeStatus.FAILED, None
            result.reason = answer.verdict.reason if answer.verdict else None

    async def _held(self, node: Node, result: NodeResult, answer: Attempt, output: Any) -> bool:
        """Whether a passed answer waits for approval.

        Otherwise it is approved, or rejected: then it counts as failed verification.
        """
        if node.task.approve != "after":
            return False
        verdict = await self._approved(node, result, "after", answer, output)
        if verdict is None:
            result.status, result.output = NodeStatus.WAITING, output
            result.reason = Outcome.WAITING_FOR_APPROVAL
            return True
        if not verdict.passed:  # feedback, as a failed verification is
            await self._rejected(node, answer, verdict)
        return False

    async def _rejected(self, node: Node, answer: Attempt, verdict: Verdict) -> None:
        """A reviewer rejected ``answer``: it counts as failed verification (stored so)."""
        answer.verdict = Verdict(passed=False, reason=verdict.reason, verifier="approval")
        if self.bus:
            await self.bus.emit(AttemptSpending(self.run_id, node.task.id, answer))

    async def _waiting_answer(
        self, node: Node, result: NodeResult
    ) -> tuple[bool, Attempt | None, str]:
        """A resumed node whose answer waited for a decision: whether it is settled now.

        Returns ``(done, previous, previous_text)``: done when it is approved (the node
        succeeded, nothing runs again) or still undecided (it waits on); else the rejected
        answer, the feedback of the next attempt.
        """
        answer = candidate(result) if result.status is NodeStatus.WAITING else None
        if answer is None:
            return False, None, ""
        verdict = await self._approved(node, result, "after", answer, result.output)
        if verdict is None:
            return True, None, ""
        if verdict.passed:
            result.status, result.reason = NodeStatus.SUCCEEDED, None
            return True, None, ""
        await self._rejected(node, answer, verdict)
        text = render_value(result.output) if result.output is not None else ""
        result.status, result.output, result.reason = NodeStatus.NOT_RUN, None, None
        return False, answer, text
