"""The engine: what outlives a run, and where runs are prepared.

``Engine`` holds the model client, ladder, router, tools, listeners and default settings;
:meth:`Engine.prepare` validates the work and returns a :class:`~orchestrator.run.Run`
(one execution, in :mod:`orchestrator.run`); :func:`stored_result` rebuilds a stored run's
result without its tools.

Work is a :class:`~orchestrator.plan.Plan`, a workload (a
:class:`~orchestrator.workflow.Workflow`), or a :class:`~orchestrator.goal.Goal`, planned
inside the run (:mod:`orchestrator.goal`).
"""

from __future__ import annotations

import copy
import gc
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import networkx as nx

from orchestrator.approval import Approver
from orchestrator.budget import Budget
from orchestrator.citations import PassageLookup
from orchestrator.dag import validate_plan
from orchestrator.events import Listener
from orchestrator.exceptions import PlanProblem, PlanValidationError, UserError
from orchestrator.executor import Executor, LocalExecutor
from orchestrator.goal import AttemptHook, Goal, GoalPlanner
from orchestrator.models.base import ModelClient
from orchestrator.node import Node, node_from_task
from orchestrator.plan import Plan
from orchestrator.results import PlanningRecord, RunResult
from orchestrator.routing import CapabilityRouter, Router
from orchestrator.run import Run, RunConfig
from orchestrator.store.base import StoredRun
from orchestrator.streaming import RunEvents
from orchestrator.telemetry.tracing import Telemetry
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tool import Tool, Toolset
from orchestrator.tools.registry import FunctionTool, ToolRegistry, tool

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
        tools: Tools tasks may name in their allowlists (typed functions are wrapped with
            :func:`~orchestrator.tools.tool`); two tools of one name are an error. An
            :class:`~orchestrator.tools.MCPServer` (any toolset) brings its tools, named
            ``mcp__<server>__<tool>``: each run starts it before its first call and stops
            it after its last.
        listeners: Called with every :mod:`~orchestrator.events` event.
        config: Default run settings.
        passages: The corpus that ``citations`` verifier specs of plans check against.
        telemetry: Where spans and metrics go; default: the telemetry in use where a run is
            prepared (:func:`~orchestrator.telemetry.use_telemetry`), else the global
            OpenTelemetry providers (a no-op until an application installs an SDK).
        approver: Asked for each approval a task needs (``approve="before"``/``"after"``),
            as it comes up; ``None``, or an answer of ``None``: the task waits, and the run
            ends ``waiting`` once nothing else can run (see :mod:`orchestrator.approval`).
        executor: Where sync Python work runs (node functions, tool calls):
            :class:`~orchestrator.executor.LocalExecutor` (default: a worker thread), or
            a :class:`~orchestrator.executors.ray.RayExecutor` (a Ray cluster's workers).
            Async functions run on the driver's event loop either way.

    Raises:
        ToolDefinitionError: If two tools share a name, or a function cannot be a tool.
    """

    def __init__(
        self,
        client: ModelClient,
        ladder: TierLadder | None = None,
        *,
        router: Router | None = None,
        tools: Iterable[Tool | Toolset | Callable[..., Any]] = (),
        listeners: Sequence[Listener] = (),
        config: RunConfig | None = None,
        passages: PassageLookup | None = None,
        telemetry: Telemetry | None = None,
        approver: Approver | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.client = client
        self.executor: Executor = executor or LocalExecutor()
        self.approver = approver
        self.passages = passages
        self.ladder = ladder or default_ladder()
        self.router = router or CapabilityRouter()
        self.tools = ToolRegistry(_run_by(self.executor, tools))
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
        with _no_collector_pauses():
            return self._prepare(
                work, inputs=inputs, run_id=run_id, resume=resume, planning=planning,
                overrides=overrides,
            )  # fmt: skip

    def _prepare(
        self,
        work: Plan | Workload | Goal,
        *,
        inputs: Mapping[str, Any] | None,
        run_id: str | None,
        resume: StoredRun | None,
        planning: PlanningRecord | None,
        overrides: Mapping[str, Any],
    ) -> Run:
        config = self.config
        if overrides:  # checked like the rest: a bad value is an error naming the setting
            config = RunConfig.model_validate({**self.config.model_dump(), **overrides})
        if resume is not None:
            run_id = run_id or resume.summary.run_id
        run = Run(
            engine=self, config=config, inputs=dict(inputs or {}),
            run_id=run_id or new_run_id(), planning=planning,
            goal=work if isinstance(work, Goal) else None,
            spent_usd=resume.summary.cost_usd if resume is not None else None,
        )  # fmt: skip
        if not isinstance(work, Goal):
            run.adopt(*self.nodes_of(work, inputs or {}))
        elif resume is not None and resume.plan is not None:  # planned before: not again
            run.adopt(*self.nodes_of(resume.plan, inputs or {}))
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
        judges = _judge_tier_problems(nodes, self.ladder.names)  # refused before any call
        try:
            graph = validate_plan(plan, known_tools=self.tools.known())
        except PlanValidationError as exc:
            raise PlanValidationError([*exc.problems, *judges]) from None
        if judges:
            raise PlanValidationError(judges)
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

    def stream(
        self,
        work: Plan | Workload | Goal,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        **overrides: Any,
    ) -> RunEvents:
        """Validate ``work`` and return its run's events: iterating them executes it.

        ``async for event in engine.stream(plan): ...`` is ``prepare(...).events()``; see
        :mod:`orchestrator.streaming` (back-pressure, what breaking out does).

        Raises:
            PlanValidationError: If the plan is invalid (every problem listed).
            UserError: If a setting or a run input is wrong.
        """
        return self.prepare(work, inputs=inputs, run_id=run_id, **overrides).events()


def _run_by(
    executor: Executor, tools: Iterable[Tool | Toolset | Callable[..., Any]]
) -> Iterable[Tool | Toolset | Callable[..., Any]]:
    """The tools, each function tool's sync calls run by a remote ``executor`` (a copy)."""
    if not executor.remote or isinstance(tools, ToolRegistry):
        return tools
    shipped: list[Tool | Toolset | Callable[..., Any]] = []
    for item in tools:
        made = tool(item) if callable(item) and not isinstance(item, (Tool, Toolset)) else item
        if isinstance(made, FunctionTool) and not made.local:  # (an async one runs here)
            made = copy.copy(made)
            made.executor = executor
        shipped.append(made)
    return shipped


def stored_result(stored: StoredRun) -> RunResult:
    """The result of a stored run as the store knows it, without its tools or corpus.

    The final result if the run ended; for a run whose process died, what it had done:
    finished nodes, attempts cut off (their worst case counted as spent), planning.
    """
    if stored.result is not None:
        return stored.result
    engine = Engine(_NoClient(), passages=_NoPassages())
    goal = Goal(stored.summary.goal, _never_plans) if stored.plan is None else None
    config = RunConfig(budget_usd=stored.budget_usd)
    run = Run(engine=engine, config=config, inputs={}, run_id=stored.summary.run_id,
              goal=goal, spent_usd=stored.summary.cost_usd)  # fmt: skip
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


@contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """Hold the cyclic garbage collector while a run is prepared (no await happens in it).

    Preparing builds several objects a node (tasks, nodes, results, the graph), all of them
    alive afterwards: the collector would only traverse them, again and again, a full
    collection of the whole heap now and then included (measured: a third of preparing a
    10,000-node plan in a process with LangGraph imported). Held, they are looked at once,
    at the first collection after it. Reference counting frees garbage as usual meanwhile.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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


def new_run_id() -> str:
    """A new run id: the UTC time it was made and 8 random hex digits."""
    return f"run_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


def _judge_tier_problems(nodes: Sequence[Node], tiers: Sequence[str]) -> list[PlanProblem]:
    """A judge on a tier the ladder does not have (it would fail every attempt, paid)."""
    return [
        PlanProblem(
            node.task.id,
            f"its llm_judge names tier {tier!r}, which the ladder does "
            f"not have (tiers: {', '.join(tiers)})",
        )
        for node in nodes
        for verifier in node.verifiers
        if isinstance(tier := getattr(verifier, "tier", None), str) and tier not in tiers
    ]
