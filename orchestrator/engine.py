"""The engine: validate the work, schedule its nodes, and assemble the run's result.

``Engine`` holds what outlives a run (model client, ladder, router, tools, listeners,
defaults); ``Run`` is one execution, which can be cancelled and inspected while it runs.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import networkx as nx
from networkx.classes.reportviews import OutDegreeView
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.attempt import DEFAULT_SYSTEM_PROMPT, NodeRunner, RunPolicy
from orchestrator.budget import Budget
from orchestrator.citations import PassageLookup
from orchestrator.dag import validate_plan
from orchestrator.events import (
    Event,
    EventBus,
    Listener,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import UserError
from orchestrator.models.base import ModelClient
from orchestrator.node import Node, node_from_task
from orchestrator.plan import Plan
from orchestrator.results import (
    PLANNING_NODE,
    Attempt,
    NodeResult,
    NodeStatus,
    PlanningRecord,
    RunResult,
    RunStatus,
    planning_from_attempt,
)
from orchestrator.routing import CapabilityRouter, LearningRouter, Router
from orchestrator.scheduler import Scheduler
from orchestrator.store.base import StoredRun
from orchestrator.telemetry.tracing import Telemetry, current_telemetry, current_trace_id
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tool import Tool

__all__ = ["Engine", "Run", "RunConfig", "Workload"]


class RunConfig(BaseModel):
    """Per-run settings (each can be overridden per call of :meth:`Engine.run`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrency: int = Field(default=16, gt=0)
    """Most nodes running at once across all tiers."""
    budget_usd: float | None = Field(default=None, ge=0)
    """Most the run may spend; ``None`` for no limit."""
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
        work: Plan | Workload,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        resume: StoredRun | None = None,
        planning: PlanningRecord | None = None,
        **overrides: Any,
    ) -> Run:
        """Validate ``work`` and return a :class:`Run` ready to execute.

        Args:
            work: A plan, or a workload such as a :class:`~orchestrator.workflow.Workflow`.
            inputs: Run inputs (workflow parameters that name no task).
            run_id: The run's id; default: a new one (the resumed run's, when resuming).
            resume: A stored run to continue: its succeeded nodes are not run again, its
                spend counts against the budget, and attempts it had in flight are kept,
                marked as interrupted with unknown cost.
            planning: What planning the plan cost; it counts against the budget and in the
                result's ``cost_usd``.
            overrides: Fields of :class:`RunConfig` for this run.

        Raises:
            PlanValidationError: If the plan is invalid (every problem listed).
            UserError: If a setting or a run input is wrong.
        """
        config = self.config
        if overrides:  # checked like the rest: a bad value is an error naming the setting
            config = RunConfig.model_validate({**self.config.model_dump(), **overrides})
        if isinstance(work, Plan):
            plan = work
            nodes = [node_from_task(task, passages=self.passages) for task in work.tasks]
        else:
            plan, nodes = work.to_plan_and_nodes()
        graph = validate_plan(plan, known_tools=self.tools.keys())
        _check_inputs(nodes, {task.id for task in plan.tasks}, inputs or {})
        if resume is not None:
            run_id = run_id or resume.summary.run_id
        run = Run(
            engine=self, plan=plan, nodes=nodes, graph=graph, config=config,
            inputs=dict(inputs or {}), run_id=run_id or _new_run_id(), planning=planning,
        )  # fmt: skip
        if resume is not None:
            run.restore(resume)
        return run

    async def run(
        self,
        work: Plan | Workload,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        **overrides: Any,
    ) -> RunResult:
        """Validate and execute ``work``; returns when every node has a final status."""
        return await self.prepare(work, inputs=inputs, run_id=run_id, **overrides).execute()


class Run:
    """One execution of a plan. Create with :meth:`Engine.prepare`."""

    def __init__(
        self,
        *,
        engine: Engine,
        plan: Plan,
        nodes: list[Node],
        graph: nx.DiGraph[str],
        config: RunConfig,
        inputs: dict[str, Any],
        run_id: str,
        planning: PlanningRecord | None = None,
    ) -> None:
        self.run_id = run_id
        self.planning = planning
        self._planning_stored = False
        self.plan = plan
        self.config = config
        self._nodes = {node.task.id: node for node in nodes}
        self._graph = graph
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
        self.results = {
            task.id: NodeResult(
                id=task.id,
                depends_on=task.depends_on,
                needs=task.needs,
                status=NodeStatus.NOT_RUN,
            )
            for task in plan.tasks
        }
        self._completed: set[str] = set()
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._started_at = datetime.now(UTC)
        self._scheduler: Scheduler[str] | None = None
        self._final: RunResult | None = None

    @property
    def _planning_cost(self) -> float:
        return self.planning.cost_usd if self.planning is not None else 0.0

    def restore(self, stored: StoredRun) -> None:
        """Continue from a stored run (see :meth:`Engine.prepare`'s ``resume``)."""
        self.budget = Budget(self.config.budget_usd, spent_usd=stored.summary.cost_usd)
        self._runner.budget = self.budget
        for node_id, node in stored.nodes.items():
            if node.status is NodeStatus.SUCCEEDED and node_id in self.results:
                self.results[node_id] = node.model_copy(deep=True)
                self._completed.add(node_id)
        planned = stored.attempts.get(PLANNING_NODE)
        if planned:  # planned before resuming: its spend is stored already, never again
            self.planning = self.planning or planning_from_attempt(planned[-1])
            self._planning_stored = True
        for node_id, attempts in stored.attempts.items():
            if node_id in self.results and node_id not in self._completed:
                self.results[node_id].attempts = [_interrupted(a) for a in attempts]

    def cancel(self) -> None:
        """Stop the run: running attempts are cancelled, finished nodes keep their results."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def execute(self) -> RunResult:
        """Run every node that can run and return the result (partial if cancelled).

        Raises:
            RuntimeError: If the run was already executed (prepare a new one instead).
        """
        if self._scheduler is not None:
            raise RuntimeError(f"run {self.run_id} was already executed; prepare a new run")
        self._started_at = datetime.now(UTC)
        self._errors_before = _errors_seen(self._client)
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
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                await scheduler.run()
        except anyio.get_cancelled_exc_class():
            self._cancel_requested = True  # cancelled from outside: record it, then propagate
            raise
        finally:
            self._final = self.snapshot()
            with anyio.CancelScope(shield=True):
                await self._bus.emit(RunFinished(self.run_id, self._final))
        return self._final

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
        nodes = list(self.results.values())
        attempts = [attempt for node in nodes for attempt in node.attempts]
        output_task = self._output_task()
        finished = datetime.now(UTC)
        return RunResult(
            run_id=self.run_id,
            status=self._status(nodes),
            goal=self.plan.goal,
            output=self._output(output_task),
            output_task=output_task,
            cost_usd=sum(a.cost_usd for a in attempts) + self._planning_cost,
            wasted_cost_usd=sum(a.cost_usd for a in attempts if not a.passed)
            + (self.planning.wasted_cost_usd if self.planning else 0.0),
            budget_usd=self.config.budget_usd,
            started_at=self._started_at,
            finished_at=finished,
            wall_s=(finished - self._started_at).total_seconds(),
            trace_id=self._trace_id,
            simulated=any(a.simulated for a in attempts)
            or (self.planning is not None and self.planning.simulated),
            planning=self.planning,
            api_errors=dict(sorted((_errors_seen(self._client) - self._errors_before).items())),
            nodes=nodes,
        )

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
        if all(node.status is NodeStatus.SUCCEEDED for node in nodes):
            return RunStatus.SUCCEEDED
        if self._cancel_requested or (self._scope is not None and self._scope.cancel_called):
            return RunStatus.CANCELLED
        if self.budget.exhausted:
            return RunStatus.BUDGET_EXHAUSTED
        if any(node.status is NodeStatus.SUCCEEDED for node in nodes):
            return RunStatus.PARTIAL
        return RunStatus.FAILED

    def _output_task(self) -> str | None:
        if self.plan.output_task is not None:
            return self.plan.output_task
        sinks = self._sinks()
        return sinks[0] if len(sinks) == 1 else None

    def _output(self, output_task: str | None) -> Any:
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
    if attempt.finished_at is not None:
        return attempt
    return attempt.model_copy(
        update={
            "error": "interrupted: the process ended during this attempt; its cost is unknown",
            "error_type": "interrupted",
            "cost_unknown": True,
        }
    )


def _errors_seen(client: ModelClient) -> Counter[str]:
    """The client's tally of failed API calls by error type, if it keeps one."""
    seen = getattr(client, "errors_seen", None)
    return Counter(seen) if isinstance(seen, Mapping) else Counter()


def _new_run_id() -> str:
    return f"run_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
