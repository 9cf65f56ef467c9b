"""The same DAG run by each system under test, with the same node work.

Each ``prepare_*`` builds what the system needs for one run (graph objects, a compiled
LangGraph, a validated engine run) and returns a zero-argument coroutine function that
executes it once. Building is timed apart from running. ``work(i)`` is node ``i``'s body;
``limit`` caps how many node bodies run at once (``None``: no cap).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import networkx as nx

from bench._dags import Dag
from orchestrator import Engine, Plan, RunConfig, RunStatus, Task
from orchestrator.events import Listener
from orchestrator.node import Node
from orchestrator.scheduler import Scheduler
from orchestrator.telemetry import RunTelemetry, Telemetry
from orchestrator.testing import TestModel

Work = Callable[[int], Awaitable[None]]
Execute = Callable[[], Awaitable[None]]


async def prepare_asyncio(dag: Dag, work: Work, limit: int | None) -> Execute:
    """Plain asyncio: a task per node awaiting its dependencies' events (the floor)."""
    # asyncio.Semaphore is banned in the library (anyio there); here it *is* the reference.
    semaphore = asyncio.Semaphore(limit) if limit else None  # noqa: TID251

    async def execute() -> None:
        done = [asyncio.Event() for _ in dag.deps]

        async def node(index: int, deps: tuple[int, ...]) -> None:
            for dep in deps:
                await done[dep].wait()
            if semaphore is None:
                await work(index)
            else:
                async with semaphore:
                    await work(index)
            done[index].set()

        tasks = [asyncio.create_task(node(i, deps)) for i, deps in enumerate(dag.deps)]
        for task in tasks:
            await task

    return execute


async def prepare_anyio(dag: Dag, work: Work, limit: int | None) -> Execute:
    """A raw anyio task group: a task per node awaiting its dependencies' events."""

    async def execute() -> None:
        done = [anyio.Event() for _ in dag.deps]
        limiter = anyio.CapacityLimiter(limit) if limit else None

        async def node(index: int, deps: tuple[int, ...]) -> None:
            for dep in deps:
                await done[dep].wait()
            if limiter is None:
                await work(index)
            else:
                async with limiter:
                    await work(index)
            done[index].set()

        async with anyio.create_task_group() as group:
            for index, deps in enumerate(dag.deps):
                group.start_soon(node, index, deps)

    return execute


async def prepare_scheduler(dag: Dag, work: Work, limit: int | None) -> Execute:
    """Our bare :class:`~orchestrator.scheduler.Scheduler` on a networkx graph."""
    graph: nx.DiGraph[int] = nx.DiGraph()
    graph.add_nodes_from(range(dag.size))
    graph.add_edges_from(dag.edges)

    async def run_node(index: int) -> bool:
        await work(index)
        return True

    async def execute() -> None:
        scheduler = Scheduler(graph, run_node, max_concurrency=limit)
        await scheduler.run()
        assert len(scheduler.finished) == dag.size

    return execute


class DagWorkload:
    """A DAG as engine nodes: each a Python task whose async function is ``work(i)``."""

    def __init__(self, dag: Dag, work: Work) -> None:
        self.dag = dag
        self.work = work

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        tasks = [
            Task(id=f"n{i}", instruction="no-op", depends_on=[f"n{d}" for d in deps])
            for i, deps in enumerate(self.dag.deps)
        ]
        nodes = [
            Node(task=task, verifiers=(), function=functools.partial(self.work, i))
            for i, task in enumerate(tasks)
        ]
        return Plan(goal=self.dag.name, tasks=tasks), nodes


async def prepare_engine(
    dag: Dag,
    work: Work,
    limit: int | None,
    listeners: Sequence[Listener] = (),
    telemetry: Telemetry | None = None,
    *,
    detach_telemetry: bool = True,
) -> Execute:
    """Our :class:`~orchestrator.Engine`: validated plan, Python nodes, results, events.

    ``detach_telemetry`` takes the engine's telemetry listener off the run (no spans, no
    log lines), reaching into the run: the engine had no public switch for it when this was
    written. Where the engine leaves the listener out by itself (telemetry that can produce
    nothing), there is nothing to take off.
    """
    config = RunConfig(max_concurrency=limit or dag.size)
    engine = Engine(TestModel("unused"), listeners=listeners, config=config, telemetry=telemetry)
    run = engine.prepare(DagWorkload(dag, work))
    if detach_telemetry:
        bus = run._bus
        bus._listeners[:] = [item for item in bus._listeners if not isinstance(item, RunTelemetry)]

    async def execute() -> None:
        result = await run.execute()
        assert result.status is RunStatus.SUCCEEDED, result.status

    return execute


async def prepare_langgraph(dag: Dag, work: Work, limit: int | None) -> Execute:
    """LangGraph: a StateGraph with one node per DAG node, joins for several dependencies."""
    # Imported here: LangGraph lives only in bench/.venv, never in the project's environment.
    from typing import TypedDict  # noqa: PLC0415

    from langgraph.graph import END, START, StateGraph  # noqa: PLC0415

    class State(TypedDict, total=False):
        x: int

    def body(index: int) -> Callable[[State], Awaitable[dict[str, Any]]]:
        async def node(state: State) -> dict[str, Any]:
            await work(index)
            return {}

        return node

    graph = StateGraph(State)
    for index in range(dag.size):
        graph.add_node(f"n{index}", body(index))  # type: ignore[call-overload]
    for index, deps in enumerate(dag.deps):
        if not deps:
            graph.add_edge(START, f"n{index}")
        elif len(deps) == 1:
            graph.add_edge(f"n{deps[0]}", f"n{index}")
        else:
            graph.add_edge([f"n{d}" for d in deps], f"n{index}")
        if not dag.dependents[index]:
            graph.add_edge(f"n{index}", END)
    app = graph.compile()
    config: dict[str, Any] = {"recursion_limit": dag.size + 10}
    if limit:
        config["max_concurrency"] = limit

    async def execute() -> None:
        await app.ainvoke({"x": 0}, config)  # type: ignore[arg-type]

    return execute


RUNNERS: dict[str, Callable[..., Awaitable[Execute]]] = {
    "asyncio": prepare_asyncio,
    "anyio": prepare_anyio,
    "scheduler": prepare_scheduler,
    "engine": prepare_engine,
    "langgraph": prepare_langgraph,
}
"""Systems under test by name, fastest expected first."""
