"""The engine: validate the work, schedule its nodes, and assemble the run's result.

``Engine`` holds what outlives a run (model client, ladder, router, tools, listeners,
defaults); ``Run`` is one execution, which can be cancelled and inspected while it runs.

Work is a :class:`~orchestrator.plan.Plan`, a workload (a
:class:`~orchestrator.workflow.Workflow`), or a :class:`Goal`: a goal that a planner turns
into a plan *inside* the run, so that planning spends from the run's budget, is recorded
(and resumable) like the rest of the run, and fails as a run does, with its cost.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import anyio
import networkx as nx
from networkx.classes.reportviews import OutDegreeView
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.attempt import NodeRunner, RunPolicy
from orchestrator.budget import Budget
from orchestrator.citations import PassageLookup
from orchestrator.dag import validate_plan
from orchestrator.events import (
    AttemptSpending,
    Event,
    EventBus,
    Listener,
    NodeFinished,
    NodeStarted,
    PlanningStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import BudgetExhausted, ModelAPIError, PlanValidationError, UserError
from orchestrator.models.base import ModelClient
from orchestrator.node import Node, node_from_task
from orchestrator.plan import Plan
from orchestrator.pricing import USD, ZERO_USD
from orchestrator.results import (
    PLANNING_NODE,
    Attempt,
    NodeResult,
    NodeStatus,
    PlanningRecord,
    RunResult,
    RunStatus,
    planning_from_attempts,
)
from orchestrator.routing import CapabilityRouter, LearningRouter, Router
from orchestrator.scheduler import Scheduler
from orchestrator.store.base import StoredRun
from orchestrator.telemetry.tracing import Telemetry, current_telemetry, current_trace_id
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tool import Tool
from orchestrator.wire import DEFAULT_SYSTEM_PROMPT

__all__ = [
    "Engine",
    "Goal",
    "GoalPlanner",
    "Run",
    "RunConfig",
    "Workload",
    "new_run_id",
    "stored_result",
]


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


class Workload(Protocol):
    """Anything that can become nodes: a :class:`~orchestrator.workflow.Workflow`, say."""

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        """Return the plan (for validation and records) and its runnable nodes."""
        ...


class AttemptHook(Protocol):
    """Awaited with a planning round's attempt record whenever it changes."""

    async def __call__(self, attempt: Attempt, /) -> None: ...


class GoalPlanner(Protocol):
    """Turns a goal into a plan, spending from ``budget`` and reporting each round.

    It must reserve every model call in ``budget`` (a :class:`~orchestrator.budget.Meter`
    does), report each round's :class:`~orchestrator.results.Attempt` through
    ``on_attempt`` when it starts, when a call is reserved and when it ends, and raise
    :class:`~orchestrator.exceptions.PlanValidationError`,
    :class:`~orchestrator.exceptions.ModelAPIError` or
    :class:`~orchestrator.exceptions.BudgetExhausted` when it cannot plan.
    """

    async def __call__(self, goal: str, budget: Budget, on_attempt: AttemptHook, /) -> Plan:
        """Return the plan for ``goal``."""
        ...


@dataclass(frozen=True, slots=True)
class Goal:
    """Work that is planned inside the run (see the module docstring).

    Attributes:
        text: The goal.
        planner: What plans it (the research agent's planner, say).
    """

    text: str
    planner: GoalPlanner


class Engine:
    """Runs plans and workflows on a tier ladder.

    Args:
        client: The model client (the Anthropic client, or a test double).
        ladder: Tiers, cheapest first; defaults to :func:`~orchestrator.tiers.default_ladder`.
        router: Picks each node's first tier; defaults to :class:`CapabilityRouter`.
        tools: Tools tasks may name in their allowlists.
        listeners: Called with every :mod:`~orchestrator.events` event.
        config: Default run settings.
        passages: The corpus that ``citations`` verifier specs of plans check against.
        telemetry: Where spans and metrics go; default: the telemetry in use where a run is
            prepared (:func:`~orchestrator.telemetry.use_telemetry`), else the global
            OpenTelemetry providers (a no-op until an application installs an SDK).
    """

    def __init__(
        self,
        client: ModelClient,
        ladder: TierLadder | None = None,
        *,
        router: Router | None = None,
        tools: Sequence[Tool] = (),
        listeners: Sequence[Listener] = (),
        config: RunConfig | None = None,
        passages: PassageLookup | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.client = client
        self.passages = passages
        self.ladder = ladder or default_ladder()
        self.router = router or CapabilityRouter()
        self.tools = {tool.name: tool for tool in tools}
        self.listeners = list(listeners)
        self.config = config or RunConfig()
        self.telemetry = telemetry

    def prepare(
        self,
        work: Plan | Workload | Goal,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        resume: StoredRun | None = None,
        planning: PlanningRecord | None = None,
        **overrides: Any,
    ) -> Run:
        """Validate ``work`` and return a :class:`Run` ready to execute.

        Args:
            work: A plan, a workload such as a :class:`~orchestrator.workflow.Workflow`,
                or a :class:`Goal` to plan inside the run (its plan is validated then).
            inputs: Run inputs (workflow parameters that name no task).
            run_id: The run's id; default: a new one (the resumed run's, when resuming).
            resume: A stored run to continue: its succeeded nodes are not run again, its
                spend counts against the budget, and attempts it had in flight are kept,
                marked as interrupted, their worst case counted as spent.
            planning: What planning done before the run cost; it counts against the
                budget and in the result's ``cost_usd``.
            overrides: Fields of :class:`RunConfig` for this run.

        Raises:
            PlanValidationError: If the plan is invalid (every problem listed).
            UserError: If a setting or a run input is wrong.
        """
        config = self.config
        if overrides:  # checked like the rest: a bad value is an error naming the setting
            config = RunConfig.model_validate({**self.config.model_dump(), **overrides})
        if resume is not None:
            run_id = run_id or resume.summary.run_id
        run = Run(
            engine=self, config=config, inputs=dict(inputs or {}),
            run_id=run_id or new_run_id(), planning=planning,
            goal=work if isinstance(work, Goal) else None,
        )  # fmt: skip
        if not isinstance(work, Goal):
            run.adopt(*self.nodes_of(work, inputs or {}))
        if resume is not None:
            run.restore(resume)
        return run

    def nodes_of(
        self, work: Plan | Workload, inputs: Mapping[str, Any]
    ) -> tuple[Plan, list[Node], nx.DiGraph[str]]:
        """Validate ``work``: its plan, runnable nodes and dependency graph.

        Raises:
            PlanValidationError: If the plan is invalid (every problem listed).
            UserError: If a run input is missing.
        """
        if isinstance(work, Plan):
            plan = work
            nodes = [node_from_task(task, passages=self.passages) for task in work.tasks]
        else:
            plan, nodes = work.to_plan_and_nodes()
        graph = validate_plan(plan, known_tools=self.tools.keys())
        _check_inputs(nodes, {task.id for task in plan.tasks}, inputs)
        return plan, nodes, graph

    async def run(
        self,
        work: Plan | Workload | Goal,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        **overrides: Any,
    ) -> RunResult:
        """Validate and execute ``work``; returns when every node has a final status."""
        return await self.prepare(work, inputs=inputs, run_id=run_id, **overrides).execute()


_PLANNING_FAILURES = (PlanValidationError, ModelAPIError, BudgetExhausted)
"""What ends planning, and the run with it, as a failed run (any other error is a bug)."""


class Run:
    """One execution of a plan (or of a goal, planned first); see :meth:`Engine.prepare`."""

    def __init__(
        self,
        *,
        engine: Engine,
        config: RunConfig,
        inputs: dict[str, Any],
        run_id: str,
        planning: PlanningRecord | None = None,
        goal: Goal | None = None,
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
        telemetry = engine.telemetry or current_telemetry()
        # Telemetry that can produce nothing (no SDK, logs below INFO) is not subscribed:
        # an empty bus lets the engine skip event work entirely.
        watching: list[Listener] = [telemetry.run_listener()] if telemetry.wants_events() else []
        if isinstance(engine.router, LearningRouter):  # it learns from every finished node
            watching.append(_feeder(engine.router))
        self._bus = EventBus([*watching, *engine.listeners])
        self._client = engine.client
        self._errors_before: Counter[str] = Counter()
        self._trace_id: str | None = None
        self.budget = Budget(config.budget_usd, spent_usd=self._planning_cost)
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
            ),
            tools=engine.tools,
            bus=self._bus,
        )
        self.results: dict[str, NodeResult] = {}
        self._completed: set[str] = set()
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._executed = False
        self._started_at = datetime.now(UTC)
        self._scheduler: Scheduler[str] | None = None
        self._final: RunResult | None = None

    def adopt(self, plan: Plan, nodes: list[Node], graph: nx.DiGraph[str]) -> None:
        """Take the (validated) plan the run executes."""
        self.plan = plan
        self._nodes = {node.task.id: node for node in nodes}
        self._graph = graph
        restored, self.results = (
            self.results,
            {
                task.id: NodeResult(
                    id=task.id,
                    depends_on=task.depends_on,
                    needs=task.needs,
                    status=NodeStatus.NOT_RUN,
                )
                for task in plan.tasks
            },
        )
        for node_id, result in restored.items():  # what a resumed run brought along
            if node_id in self.results:
                self.results[node_id] = result

    @property
    def _planning_cost(self) -> Decimal:
        return self.planning.cost_usd if self.planning is not None else ZERO_USD

    def restore(self, stored: StoredRun) -> None:
        """Continue from a stored run (see :meth:`Engine.prepare`'s ``resume``)."""
        self.budget = Budget(self.config.budget_usd, spent_usd=stored.summary.cost_usd)
        self._runner.budget = self.budget
        for node_id, node in stored.nodes.items():
            if node.status is NodeStatus.SUCCEEDED and (node_id in self.results or not self.plan):
                self.results[node_id] = node.model_copy(deep=True)
                self._completed.add(node_id)
        planned = stored.attempts.get(PLANNING_NODE)
        if planned:  # planned before resuming: its spend is stored already, never again
            self._planning_attempts = [_interrupted(a) for a in planned]
            self.planning = self.planning or planning_from_attempts(self._planning_attempts)
            self._planning_stored = True
        for node_id, attempts in stored.attempts.items():
            if node_id == PLANNING_NODE or node_id in self._completed:
                continue
            if node_id in self.results or not self.plan:
                result = self.results.setdefault(
                    node_id, NodeResult(id=node_id, status=NodeStatus.NOT_RUN)
                )
                result.attempts = [_interrupted(a) for a in attempts]

    def cancel(self) -> None:
        """Stop the run: running attempts are cancelled, finished nodes keep their results."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def execute(self) -> RunResult:
        """Plan the goal if there is one, run every node that can run, return the result.

        The result is partial if cancelled, and ``failed`` (or ``budget_exhausted``) with
        no nodes if planning failed.

        Raises:
            RuntimeError: If the run was already executed (prepare a new one instead).
        """
        if self._executed:
            raise RuntimeError(f"run {self.run_id} was already executed; prepare a new run")
        self._executed = True
        self._started_at = datetime.now(UTC)
        self._errors_before = _errors_seen(self._client)
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
        await self._bus.emit(PlanningStarted(self.run_id, goal.text))
        started = anyio.current_time()
        error: str | None = None
        plan: Plan | None = None
        try:
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
        await self._bus.emit(RunStarted(self.run_id, self.plan, planning))
        self._trace_id = current_trace_id()  # the run span's, once telemetry opened it
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
                result.reason = "cancelled"
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
        attempts = [attempt for node in nodes for attempt in node.attempts]
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
            wasted_cost_usd=sum((a.cost_usd for a in attempts if not a.passed), ZERO_USD)
            + (planning.wasted_cost_usd if planning else ZERO_USD),
            budget_usd=self.config.budget_usd,
            started_at=self._started_at,
            finished_at=finished,
            wall_s=(finished - self._started_at).total_seconds(),
            trace_id=self._trace_id,
            simulated=any(a.simulated for a in attempts)
            or (planning is not None and planning.simulated),
            planning=planning,
            api_errors=dict(sorted((_errors_seen(self._client) - self._errors_before).items())),
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
                result.status = NodeStatus.SKIPPED
                result.reason = f"dependency {failed!r} failed"
            elif result.status is NodeStatus.NOT_RUN and result.reason is None and scheduler:
                if self._cancel_requested or (
                    self._scope is not None and self._scope.cancel_called
                ):
                    result.reason = "cancelled"
                elif self.budget.exhausted:
                    result.reason = "budget_exhausted"

    def _status(self, nodes: list[NodeResult]) -> RunStatus:
        if self.plan is not None and all(node.status is NodeStatus.SUCCEEDED for node in nodes):
            return RunStatus.SUCCEEDED
        if self._cancel_requested or (self._scope is not None and self._scope.cancel_called):
            return RunStatus.CANCELLED
        if self.budget.exhausted:
            return RunStatus.BUDGET_EXHAUSTED
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


def stored_result(stored: StoredRun) -> RunResult:
    """The result of a stored run as the store knows it, without its tools or corpus.

    The final result if the run ended; for a run whose process died, what it had done:
    finished nodes, attempts cut off (their worst case counted as spent), planning.
    """
    if stored.result is not None:
        return stored.result
    engine = Engine(_NoClient(), passages=_NoPassages())
    goal = Goal(stored.summary.goal, _never_plans) if stored.plan is None else None
    run = Run(engine=engine, config=RunConfig(), inputs={}, run_id=stored.summary.run_id,
              goal=goal)  # fmt: skip
    if stored.plan is not None:
        plan = stored.plan
        nodes = [node_from_task(task, passages=engine.passages) for task in plan.tasks]
        run.adopt(plan, nodes, validate_plan(plan))  # known_tools=None: no tool check
    run.restore(stored)
    run._started_at = stored.summary.started_at
    return run.snapshot()


class _NoPassages:
    """Nodes of a stored plan with citation checks are built without their corpus."""

    def passage_text(self, passage_id: str) -> str | None:
        return None  # pragma: no cover  (a stored run is never verified)


class _NoClient:
    async def complete(self, request: Any, meter: Any) -> Any:
        raise AssertionError("a stored run never calls a model")  # pragma: no cover


async def _never_plans(goal: str, budget: Budget, on_attempt: AttemptHook) -> Plan:
    raise AssertionError("a stored run is never planned")  # pragma: no cover


def _check_inputs(nodes: Sequence[Node], task_ids: set[str], inputs: Mapping[str, Any]) -> None:
    missing = sorted(
        {
            f"{source!r} (needed by {node.task.id!r})"
            for node in nodes
            for source in node.arguments.values()
            if source not in task_ids and source not in inputs
        }
    )
    if missing:
        raise UserError(
            f"missing run input(s): {', '.join(missing)}; pass them with inputs={{...}}"
        )


def _always() -> bool:
    return True


def _feeder(router: LearningRouter) -> Listener:
    def feed(event: Event) -> None:
        if isinstance(event, NodeFinished):
            router.observe(event.result)

    return feed


def _interrupted(attempt: Attempt) -> Attempt:
    """An attempt the process died in: what it may have been billed counts as spent.

    Its cost is an upper bound (``cost_unknown``) only if a call was in flight; an
    attempt that died before sending anything (waiting for a slot) cost what it had.
    """
    if attempt.finished_at is not None:
        return attempt
    in_flight = attempt.in_flight_usd > 0
    return attempt.model_copy(
        update={
            "error": "interrupted: the process ended during this attempt"
            + (
                "; its cost counts the worst case of the calls it had in flight (an upper bound)"
                if in_flight
                else " before it had a call in flight"
            ),
            "error_type": "interrupted",
            "cost_usd": attempt.cost_usd + attempt.in_flight_usd,
            "in_flight_usd": ZERO_USD,
            "cost_unknown": attempt.cost_unknown or in_flight,
        }
    )


def _errors_seen(client: ModelClient) -> Counter[str]:
    """The client's tally of failed API calls by error type, if it keeps one."""
    seen = getattr(client, "errors_seen", None)
    return Counter(seen) if isinstance(seen, Mapping) else Counter()


def new_run_id() -> str:
    """A new run id: the UTC time it was made and 8 random hex digits."""
    return f"run_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
