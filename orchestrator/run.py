"""One run: plan its goal if it has one, schedule its nodes, and assemble its result.

A :class:`Run` is made by :meth:`Engine.prepare <orchestrator.engine.Engine.prepare>` (or
rebuilt from the store by :func:`~orchestrator.engine.stored_result`). It can be cancelled
and inspected (:meth:`Run.snapshot`) while it executes. It uses only what
:class:`RunHost` names of the engine that prepared it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import anyio
import networkx as nx
from networkx.classes.reportviews import OutDegreeView
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.attempt import NodeRunner
from orchestrator.budget import Budget, resuming
from orchestrator.events import (
    AttemptSpending,
    EventBus,
    Listener,
    NodeFinished,
    NodeStarted,
    PlanningStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import BudgetExhausted, ModelAPIError, PlanValidationError
from orchestrator.goal import Goal
from orchestrator.models.base import ModelClient, errors_seen
from orchestrator.node import Node
from orchestrator.plan import Plan
from orchestrator.policy import RunPolicy
from orchestrator.pricing import USD, ZERO_USD
from orchestrator.replan import Replanning
from orchestrator.results import (
    PLANNING_NODE,
    Attempt,
    NodeResult,
    NodeStatus,
    Outcome,
    PlanningRecord,
    RunResult,
    RunStatus,
    discount_totals,
    planning_from_attempts,
    unrun_node,
)
from orchestrator.routing import LearningRouter, Router
from orchestrator.routing.learning import learning_listener
from orchestrator.scheduler import Scheduler
from orchestrator.store.base import StoredRun, interrupted
from orchestrator.streaming import DEFAULT_BUFFER, RunEvents
from orchestrator.telemetry.tracing import Telemetry, current_telemetry, current_trace_id
from orchestrator.tiers import TierLadder
from orchestrator.tools.registry import ToolRegistry
from orchestrator.wire import DEFAULT_SYSTEM_PROMPT

__all__ = ["Run", "RunConfig"]


class RunConfig(BaseModel):
    """Per-run settings (each can be overridden per call of :meth:`Engine.run`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrency: int = Field(default=16, gt=0)
    """Most nodes running at once across all tiers."""
    budget_usd: USD | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Most the run may spend, planning included; ``None`` for no limit (exact: a float is
    read as its shortest decimal form)."""
    max_attempts: int | None = Field(default=None, gt=0)
    """Most attempts per node; ``None``: one per tier from the routed tier to ``max_tier``."""
    max_tier: str | None = None
    """Highest tier escalation may reach; ``None``: the strongest."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System prompt of every task attempt."""
    max_tool_steps: int = Field(default=8, gt=0)
    """Most model calls in one attempt's tool loop."""
    tool_timeout_s: float = Field(default=60.0, gt=0)
    """Deadline of each tool call."""
    cache: bool = True
    """Mark prompt-cache breakpoints (system prompt, tool catalogue); ``False`` marks none."""
    replan: int = Field(default=0, ge=0)
    """Most times the planner revises the rest of the plan when tasks fail for good (runs
    that plan a goal; see :mod:`orchestrator.replan`); 0: never."""
    batch: bool = False
    """Send tasks' model calls (judges, escalations) in Message Batches, at the batch price,
    for work that can wait; a task's own ``batch`` overrides it."""
    approve_tools: dict[str, Literal["before", "after"]] = {}
    """Tool-name patterns whose calls need approval: :mod:`orchestrator.tool_approval`."""


class RunHost(Protocol):
    """What a run uses of the :class:`~orchestrator.engine.Engine` that prepared it."""

    @property
    def client(self) -> ModelClient:
        """The model client."""
        ...

    @property
    def ladder(self) -> TierLadder:
        """The tiers, cheapest first."""
        ...

    @property
    def router(self) -> Router:
        """Picks each node's first tier."""
        ...

    @property
    def tools(self) -> ToolRegistry:
        """Tools by name."""
        ...

    @property
    def listeners(self) -> Sequence[Listener]:
        """Called with every event."""
        ...

    @property
    def telemetry(self) -> Telemetry | None:
        """Where spans and metrics go (``None``: the current telemetry)."""
        ...

    def nodes_of(
        self, work: Plan, inputs: Mapping[str, Any]
    ) -> tuple[Plan, list[Node], nx.DiGraph[str]]:
        """Validate a plan made by the run's planner."""
        ...


_PLANNING_FAILURES = (PlanValidationError, ModelAPIError, BudgetExhausted)
"""What ends planning, and the run with it, as a failed run (any other error is a bug)."""


class Run(Replanning):
    """One execution of a plan (or of a goal, planned first); see :meth:`Engine.prepare`."""

    def __init__(
        self,
        *,
        engine: RunHost,
        config: RunConfig,
        inputs: dict[str, Any],
        run_id: str,
        planning: PlanningRecord | None = None,
        goal: Goal | None = None,
        spent_usd: Decimal | None = None,
    ) -> None:
        self.run_id = run_id
        self.planning = planning
        self._planning_stored = False
        self._goal = goal
        self._planning_attempts: list[Attempt] = []
        self.plan: Plan | None = None
        self.config = config
        self._engine = engine
        self._nodes: dict[str, Node] = {}
        self._graph: nx.DiGraph[str] = nx.DiGraph()
        self._inputs = inputs
        self.replans, self.replaced, self.replan_error = 0, [], None  # see Replanning
        self.replan_limit = config.replan
        telemetry = engine.telemetry or current_telemetry()
        # Telemetry that can produce nothing (no SDK, logs below INFO) is not subscribed:
        # an empty bus lets the engine skip event work entirely.
        watching: list[Listener] = [telemetry.run_listener()] if telemetry.wants_events() else []
        if isinstance(engine.router, LearningRouter):  # it learns from every finished node
            watching.append(learning_listener(engine.router))
        self._bus = EventBus([*watching, *engine.listeners])
        self._client = engine.client
        self._errors_before: Counter[str] = Counter()
        self._trace_id: str | None = None
        # The run's one budget: what was spent before (a resumed run's stored spend, or
        # planning done before the run) counts against it.
        self.budget = Budget(
            config.budget_usd, spent_usd=self._planning_cost if spent_usd is None else spent_usd
        )
        ladder = engine.ladder
        max_tier = ladder.index(config.max_tier) if config.max_tier else len(ladder) - 1
        self._runner = NodeRunner(
            run_id=run_id,
            ladder=ladder,
            client=engine.client,
            router=engine.router,
            budget=self.budget,
            policy=RunPolicy(
                max_attempts=config.max_attempts,
                max_tier=max_tier,
                system_prompt=config.system_prompt,
                max_tool_steps=config.max_tool_steps,
                tool_timeout_s=config.tool_timeout_s,
                cache=config.cache,
                batch=config.batch,
                approve_tools=config.approve_tools,
            ),
            tools=engine.tools,
            bus=self._bus,
            approver=getattr(engine, "approver", None),  # asked for approvals as they come
            executor=getattr(engine, "executor", None),  # where Python work runs
        )
        self.results: dict[str, NodeResult] = {}
        self._completed: set[str] = set()
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._executed = False
        self._started_at = datetime.now(UTC)
        self._scheduler: Scheduler[str] | None = None
        self._final: RunResult | None = None

    def _validated(self, plan: Plan) -> tuple[Plan, list[Node], nx.DiGraph[str]]:
        return self._engine.nodes_of(plan, self._inputs)

    def adopt(self, plan: Plan, nodes: list[Node], graph: nx.DiGraph[str]) -> None:
        """Take the (validated) plan the run executes."""
        self.plan = plan
        self._nodes = {node.task.id: node for node in nodes}
        self._runner.share_inputs(nodes)
        self._graph = graph
        restored, self.results = (
            self.results,
            {task.id: unrun_node(task.id, task.depends_on, task.needs) for task in plan.tasks},
        )
        for node_id, result in restored.items():  # what a resumed run brought along
            if node_id in self.results:
                self.results[node_id] = result

    @property
    def _planning_cost(self) -> Decimal:
        return self.planning.cost_usd if self.planning is not None else ZERO_USD

    def restore(self, stored: StoredRun) -> None:
        """Continue from a stored run (see :meth:`Engine.prepare`'s ``resume``).

        The budget already counts the stored spend: it is passed as ``spent_usd`` when the
        run is made, so a run has one budget from start to end.
        """
        for node_id, node in stored.nodes.items():
            kept = node.status in (NodeStatus.SUCCEEDED, NodeStatus.WAITING)  # with its answer
            if kept and (node_id in self.results or not self.plan):
                self.results[node_id] = node.model_copy(deep=True)
                if node.status is NodeStatus.SUCCEEDED:
                    self._completed.add(node_id)
        planned = stored.attempts.get(PLANNING_NODE)
        if planned:  # planned before resuming: its spend is stored already, never again
            self._planning_attempts = [interrupted(a) for a in planned]
            self.planning = self.planning or planning_from_attempts(self._planning_attempts)
            self._planning_stored = True
        for node_id, attempts in stored.attempts.items():
            if node_id == PLANNING_NODE or node_id in self._completed:
                continue
            if node_id in self.results or not self.plan:
                result = self.results.get(node_id) or NodeResult(
                    id=node_id, status=NodeStatus.NOT_RUN
                )
                if result.status is not NodeStatus.WAITING:  # a fresh start, attempts kept
                    result.status, result.output, result.reason = NodeStatus.NOT_RUN, None, None
                result.attempts = [interrupted(a) for a in attempts]
                self.results[node_id] = result
            else:  # a task a revision of the plan replaced: its spend stays in the result
                old = [interrupted(a) for a in attempts]
                self.replaced.append(NodeResult(id=node_id, status=NodeStatus.FAILED, attempts=old))

    def cancel(self) -> None:
        """Stop the run: running attempts are cancelled, finished nodes keep their results."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def events(self, *, buffer: int = DEFAULT_BUFFER, text: bool = True) -> RunEvents:
        """Execute the run as its events are read (see :mod:`orchestrator.streaming`)."""
        return RunEvents(self, self._bus, buffer=buffer, text=text)

    async def execute(self) -> RunResult:
        """Plan the goal if there is one, run every node that can run, return the result.

        The result is partial if cancelled, and ``failed`` (or ``budget_exhausted``) with
        no nodes if planning failed. The engine's MCP servers start first and stop last.

        Raises:
            RuntimeError: If the run was already executed (prepare a new one instead).
            MCPServerError: If an MCP server did not start (nothing ran).
        """
        if self._executed:
            raise RuntimeError(f"run {self.run_id} was already executed; prepare a new run")
        self._executed = True
        async with self._engine.tools.opened(self.plan.tasks if self.plan else ()):
            return await self._execute()

    async def _execute(self) -> RunResult:
        self._started_at = datetime.now(UTC)
        self._errors_before = errors_seen(self._client)
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                if self.plan is None:
                    await self._plan_goal()
                if self.plan is not None:
                    await self._run_plan()
        except anyio.get_cancelled_exc_class():
            self._cancel_requested = True  # cancelled from outside: record it, then propagate
            raise
        finally:
            self._final = self.snapshot()
            with anyio.CancelScope(shield=True):
                await self._bus.emit(RunFinished(self.run_id, self._final))
        return self._final

    async def _plan_goal(self) -> None:
        """Plan the goal within the run's budget, recording every round as it goes."""
        goal = self._goal
        assert goal is not None, "a run without a plan has a goal"
        await self._bus.emit(PlanningStarted(self.run_id, goal.text, self.config.budget_usd))
        started = anyio.current_time()
        error: str | None = None
        plan: Plan | None = None
        try:
            with resuming(self._planning_attempts):  # a plan a killed process batched
                plan = await goal.planner(goal.text, self.budget, self._planning_round)
            self.adopt(*self._engine.nodes_of(plan, self._inputs))
        except _PLANNING_FAILURES as exc:
            error = str(exc)
        finally:
            attempts = self._planning_attempts
            record = planning_from_attempts(attempts, error=error) if attempts else None
            if record is None and error is not None:
                record = PlanningRecord(tier="", model="", rounds=0, error=error)
            if record is not None:
                record.wall_s = anyio.current_time() - started  # this process's planning
            self.planning = record
            self._planning_stored = True  # every round was recorded as it went

    async def _planning_round(self, attempt: Attempt) -> None:
        if not any(a is attempt for a in self._planning_attempts):
            self._planning_attempts.append(attempt)
        if self._bus:
            await self._bus.emit(AttemptSpending(self.run_id, PLANNING_NODE, attempt))

    async def _run_plan(self) -> None:
        assert self.plan is not None
        planning = None if self._planning_stored else self.planning
        await self._bus.emit(RunStarted(self.run_id, self.plan, planning, self.config.budget_usd))
        self._trace_id = current_trace_id()  # the run span's, once telemetry opened it
        await self._schedule()
        while self._may_replan() and await self._revise():  # tasks failed for good
            await self._schedule()

    async def _schedule(self) -> None:
        scheduler = Scheduler(
            self._graph,
            self._run_node,
            max_concurrency=self.config.max_concurrency,
            may_launch=lambda: not (self.budget.exhausted or self._cancel_requested),
            may_grow=self._uncongested if self._bus.watches_congestion else _always,
            completed=self._completed,
        )
        self._scheduler = scheduler
        await scheduler.run()

    def _uncongested(self) -> bool:
        return not self._bus.congested()

    async def _run_node(self, node_id: str) -> bool:
        node = self._nodes[node_id]
        result = self.results[node_id]
        arguments = {name: self._value(source) for name, source in node.arguments.items()}
        if self._bus:
            await self._bus.emit(NodeStarted(self.run_id, node_id))
        try:
            await self._runner.run(node, arguments, result)
        finally:
            if result.status is not NodeStatus.SUCCEEDED and result.reason is None:
                result.reason = Outcome.CANCELLED
            if self._bus:
                with anyio.CancelScope(shield=True):
                    await self._bus.emit(NodeFinished(self.run_id, result))
        return result.status is NodeStatus.SUCCEEDED

    def _value(self, source: str) -> Any:
        if source in self.results:
            return self.results[source].output
        return self._inputs[source]

    def snapshot(self) -> RunResult:
        """Return the run's result as it stands now (final once :meth:`execute` returns)."""
        if self._final is not None:
            return self._final
        self._mark_unfinished()
        nodes = list(self.results.values()) if self.plan is not None else []
        attempts = [attempt for node in (*nodes, *self.replaced) for attempt in node.attempts]
        output_task = self._output_task()
        finished = datetime.now(UTC)
        planning = self._planning_now()
        return RunResult(
            run_id=self.run_id,
            status=self._status(nodes),
            goal=self.plan.goal if self.plan is not None else self._goal_text(),
            output=self._output(output_task),
            output_task=output_task,
            cost_usd=sum((a.cost_usd for a in attempts), ZERO_USD)
            + (planning.cost_usd if planning else ZERO_USD),
            wasted_cost_usd=sum(
                (a.cost_usd for a in attempts if not a.passed and a.answering), ZERO_USD
            )
            + (planning.wasted_cost_usd if planning else ZERO_USD),
            shadow_cost_usd=sum((a.cost_usd for a in attempts if a.shadow), ZERO_USD),
            classify_cost_usd=sum((a.cost_usd for a in attempts if a.classify), ZERO_USD),
            **discount_totals([*attempts, *self._planning_attempts]),
            replans=self.replans,
            replaced=list(self.replaced),
            budget_usd=self.config.budget_usd,
            started_at=self._started_at,
            finished_at=finished,
            wall_s=(finished - self._started_at).total_seconds(),
            trace_id=self._trace_id,
            simulated=any(a.simulated for a in attempts)
            or (planning is not None and planning.simulated),
            planning=planning,
            api_errors=dict(sorted((errors_seen(self._client) - self._errors_before).items())),
            nodes=nodes,
        )

    def _planning_now(self) -> PlanningRecord | None:
        """Planning as it stands (while planning, from the rounds so far)."""
        planning = self._goal is not None and self.plan is None and self._planning_attempts
        if planning and (self.planning is None or self.planning.error is None):
            return planning_from_attempts(self._planning_attempts)
        return self.planning

    def _goal_text(self) -> str:
        return self._goal.text if self._goal is not None else ""

    def _mark_unfinished(self) -> None:
        scheduler = self._scheduler
        for node_id, result in self.results.items():
            if scheduler is not None and node_id in scheduler.skipped:
                failed = scheduler.skipped[node_id]
                if self.results[failed].status is NodeStatus.WAITING:
                    result.reason = f"waits for the approval of {failed!r}"
                else:
                    result.status = NodeStatus.SKIPPED
                    result.reason = f"dependency {failed!r} failed"
            elif result.status is NodeStatus.NOT_RUN and result.reason is None and scheduler:
                if self._cancel_requested or (
                    self._scope is not None and self._scope.cancel_called
                ):
                    result.reason = Outcome.CANCELLED
                elif self.budget.exhausted:
                    result.reason = Outcome.BUDGET_EXHAUSTED

    def _status(self, nodes: list[NodeResult]) -> RunStatus:
        if self.plan is not None and all(node.status is NodeStatus.SUCCEEDED for node in nodes):
            return RunStatus.SUCCEEDED
        if self._cancel_requested or (self._scope is not None and self._scope.cancel_called):
            return RunStatus.CANCELLED
        if self.budget.exhausted:
            return RunStatus.BUDGET_EXHAUSTED
        if any(node.status is NodeStatus.WAITING for node in nodes):
            return RunStatus.WAITING
        if any(node.status is NodeStatus.SUCCEEDED for node in nodes):
            return RunStatus.PARTIAL
        return RunStatus.FAILED

    def _output_task(self) -> str | None:
        if self.plan is None:
            return None
        if self.plan.output_task is not None:
            return self.plan.output_task
        sinks = self._sinks()
        return sinks[0] if len(sinks) == 1 else None

    def _output(self, output_task: str | None) -> Any:
        if self.plan is None:
            return None
        if output_task is not None:
            return self.results[output_task].output
        return {
            sink: self.results[sink].output
            for sink in self._sinks()
            if self.results[sink].output is not None
        }

    def _sinks(self) -> list[str]:
        # One view of its own: ``graph.out_degree`` is cached on the graph and refers back
        # to it, a reference cycle that would keep the graph for the garbage collector.
        return [node for node, degree in OutDegreeView(self._graph) if degree == 0]


def _always() -> bool:
    return True
