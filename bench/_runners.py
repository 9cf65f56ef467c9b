"""The same DAG run by each system under test, with the same node work.

Each ``prepare_*`` builds what the system needs for one run (graph objects, a compiled
LangGraph, a validated engine run) and returns a zero-argument coroutine function that
executes it once. Building is timed apart from running. ``work(i)`` is node ``i``'s body;
``limit`` caps how many node bodies run at once (``None``: no cap).

:func:`user_call` splits a system's run into the steps a user takes (define the graph,
prepare it, execute it) and also gives the user's whole call as written (for our engine
``await engine.run(workflow)``; for LangGraph build, ``compile`` and ``ainvoke``), so the
overhead benchmark can time both the whole call and the execution alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import networkx as nx

from bench._dags import Dag
from orchestrator import Engine, RunConfig, RunStatus, Workflow
from orchestrator.events import Listener
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


def workflow_of(dag: Dag, work: Work) -> Workflow:
    """The DAG as a user writes it with the public API: a :class:`~orchestrator.Workflow`
    of async Python tasks ``n0``, ``n1``..., each naming its DAG dependencies in
    ``depends_on`` (ordering only: no values are passed) and awaiting ``work(i)``."""
    workflow = Workflow(dag.name)
    for index, deps in enumerate(dag.deps):
        workflow.task(name=f"n{index}", depends_on=[f"n{d}" for d in deps])(_body(work, index))
    return workflow


def _body(work: Work, index: int) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        await work(index)

    return body


def make_engine(
    dag: Dag,
    limit: int | None,
    listeners: Sequence[Listener] = (),
    telemetry: Telemetry | None = None,
) -> Engine:
    """The engine a user holds (built once, before any run): no cap unless ``limit``."""
    config = RunConfig(max_concurrency=limit or dag.size)
    return Engine(TestModel("unused"), listeners=listeners, config=config, telemetry=telemetry)


def _detach(run: Any) -> None:
    # Private: the engine has no public switch for its telemetry listener (see below).
    bus = run._bus
    bus._listeners[:] = [item for item in bus._listeners if not isinstance(item, RunTelemetry)]


async def prepare_engine(
    dag: Dag,
    work: Work,
    limit: int | None,
    listeners: Sequence[Listener] = (),
    telemetry: Telemetry | None = None,
    *,
    detach_telemetry: bool = True,
) -> Execute:
    """Our :class:`~orchestrator.Engine`: a workflow (:func:`workflow_of`) validated by
    ``engine.prepare``, Python nodes, results, events.

    ``detach_telemetry`` takes the engine's telemetry listener off the run (no spans, no
    log lines), reaching into the run: the engine had no public switch for it when this was
    written. Where the engine leaves the listener out by itself (telemetry that can produce
    nothing), there is nothing to take off.
    """
    engine = make_engine(dag, limit, listeners, telemetry)
    run = engine.prepare(workflow_of(dag, work))
    if detach_telemetry:
        _detach(run)

    async def execute() -> None:
        result = await run.execute()
        assert result.status is RunStatus.SUCCEEDED, result.status

    return execute


def langgraph_graph(dag: Dag, work: Work) -> Any:
    """A LangGraph ``StateGraph`` (not compiled): one node per DAG node, a join
    (``add_edge([deps], node)``) for several dependencies."""
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
    return graph


_THREADS = itertools.count(1)
"""Checkpointed LangGraph runs each get a thread of their own, as our runs get a run id."""


def langgraph_config(dag: Dag, limit: int | None, checkpointer: Any = None) -> dict[str, Any]:
    config: dict[str, Any] = {"recursion_limit": dag.size + 10}
    if limit:
        config["max_concurrency"] = limit
    if checkpointer is not None:
        config["configurable"] = {"thread_id": f"bench-{next(_THREADS)}"}
    return config


async def prepare_langgraph(
    dag: Dag, work: Work, limit: int | None, checkpointer: Any = None
) -> Execute:
    """LangGraph: a StateGraph with one node per DAG node, joins for several dependencies;
    ``checkpointer``: compiled with it (LangGraph's persistence), each run its own thread."""
    app = langgraph_graph(dag, work).compile(checkpointer=checkpointer)
    config = langgraph_config(dag, limit, checkpointer)

    async def execute() -> None:
        await app.ainvoke({"x": 0}, config)  # type: ignore[arg-type]

    return execute


@dataclass(frozen=True)
class UserCall:
    """One run of a DAG in the steps a user takes, and as the one call a user writes.

    ``build()`` defines the graph (a Workflow, a StateGraph...), ``prepare(built)``
    validates or compiles it, ``execute(prepared)`` runs it; ``whole()`` is the user's
    code from definition to result, written as a user writes it.
    """

    build: Callable[[], Awaitable[Any]]
    prepare: Callable[[Any], Awaitable[Any]]
    execute: Callable[[Any], Awaitable[None]]
    whole: Callable[[], Awaitable[None]]


def engine_call(
    dag: Dag,
    work: Work,
    limit: int | None,
    listeners: Sequence[Listener] = (),
    telemetry: Telemetry | None = None,
    *,
    detach_telemetry: bool = False,
) -> UserCall:
    """Our engine as a user calls it: ``result = await engine.run(workflow_of(dag, work))``
    with an engine built beforehand (:func:`make_engine`). ``detach_telemetry`` (mode
    ``off``) needs the run between ``prepare`` and ``execute``, so its whole call is
    ``engine.prepare`` + the private detach + ``run.execute()``: not a user's call."""
    engine = make_engine(dag, limit, listeners, telemetry)

    async def build() -> Workflow:
        return workflow_of(dag, work)

    async def prepare(workflow: Workflow) -> Any:
        run = engine.prepare(workflow)
        if detach_telemetry:
            _detach(run)
        return run

    async def execute(run: Any) -> None:
        result = await run.execute()
        assert result.status is RunStatus.SUCCEEDED, result.status

    async def whole() -> None:
        if detach_telemetry:
            await execute(await prepare(await build()))
            return
        result = await engine.run(workflow_of(dag, work))
        assert result.status is RunStatus.SUCCEEDED, result.status

    return UserCall(build, prepare, execute, whole)


def langgraph_call(dag: Dag, work: Work, limit: int | None, checkpointer: Any = None) -> UserCall:
    """LangGraph as a user calls it: build the StateGraph, ``compile`` it (with the
    checkpointer, if any), ``await app.ainvoke(...)``."""

    async def build() -> Any:
        return langgraph_graph(dag, work)

    async def prepare(graph: Any) -> Any:
        return graph.compile(checkpointer=checkpointer), langgraph_config(dag, limit, checkpointer)

    async def execute(prepared: Any) -> None:
        app, config = prepared
        await app.ainvoke({"x": 0}, config)

    async def whole() -> None:
        app = langgraph_graph(dag, work).compile(checkpointer=checkpointer)
        await app.ainvoke({"x": 0}, langgraph_config(dag, limit, checkpointer))

    return UserCall(build, prepare, execute, whole)


def plain_call(system: str, dag: Dag, work: Work, limit: int | None) -> UserCall:
    """asyncio, anyio, the bare scheduler: ``prepare_*`` is the whole preparation."""
    runner = RUNNERS[system]

    async def build() -> None:
        return None

    async def prepare(_: None) -> Execute:
        return await runner(dag, work, limit)

    async def execute(run: Execute) -> None:
        await run()

    async def whole() -> None:
        await (await runner(dag, work, limit))()

    return UserCall(build, prepare, execute, whole)


def user_call(system: str, dag: Dag, work: Work, limit: int | None, **setup: Any) -> UserCall:
    """``system``'s :class:`UserCall`; ``setup``: the engine's or LangGraph's keyword
    arguments (listeners, telemetry, a checkpointer)."""
    if system == "engine":
        return engine_call(dag, work, limit, **setup)
    if system == "langgraph":
        return langgraph_call(dag, work, limit, **setup)
    return plain_call(system, dag, work, limit)


RUNNERS: dict[str, Callable[..., Awaitable[Execute]]] = {
    "asyncio": prepare_asyncio,
    "anyio": prepare_anyio,
    "scheduler": prepare_scheduler,
    "engine": prepare_engine,
    "langgraph": prepare_langgraph,
}
"""Systems under test by name, fastest expected first."""
