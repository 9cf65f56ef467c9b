"""Scheduling: real concurrency under limits, no barriers, skips, cancellation.

None of these tests use timing: they block model calls on events and count.
"""

from __future__ import annotations

from collections import defaultdict

import anyio
import networkx as nx
import pytest

from orchestrator import (
    Attempt,
    Engine,
    ModelRequest,
    NodeStatus,
    Plan,
    RunStatus,
    Task,
    TierLadder,
    default_ladder,
)
from orchestrator.scheduler import Scheduler
from orchestrator.store import LeaseOwner, MemoryStore, StoreListener
from orchestrator.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


class Gate:
    """Model calls block on ``release``; counts how many run at once, overall and per tier."""

    def __init__(self, *, release_when_running: int | None = None) -> None:
        self.release = anyio.Event()
        self.running = 0
        self.peak = 0
        self.by_tier: dict[str, int] = defaultdict(int)
        self.peak_by_tier: dict[str, int] = defaultdict(int)
        self.reached = anyio.Event()
        self.release_when_running = release_when_running
        self.started: list[str] = []

    async def __call__(self, request: ModelRequest) -> str:
        tier = request.tier.name
        self.started.append(request.task_id or "")
        self.running += 1
        self.by_tier[tier] += 1
        self.peak = max(self.peak, self.running)
        self.peak_by_tier[tier] = max(self.peak_by_tier[tier], self.by_tier[tier])
        if self.running == self.release_when_running:
            self.reached.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
            self.by_tier[tier] -= 1
        return f"done {request.task_id}"


def wide_ladder(haiku_limit: int = 1000) -> TierLadder:
    """The default ladder with per-tier limits out of the way (haiku's set to ``haiku_limit``)."""
    tiers = [tier.model_copy(update={"max_concurrency": 1000}) for tier in default_ladder().tiers]
    tiers[0] = tiers[0].model_copy(update={"max_concurrency": haiku_limit})
    return TierLadder(tiers=tuple(tiers))


def independent(count: int) -> Plan:
    return Plan(goal="wide", tasks=[Task(id=f"t{i}", instruction=f"do {i}") for i in range(count)])


async def test_global_limit_reached_exactly_and_never_exceeded() -> None:
    gate = Gate(release_when_running=50)
    engine = Engine(FunctionModel(gate), wide_ladder())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            results = []

            async def run() -> None:
                results.append(await engine.run(independent(200), max_concurrency=50))

            tg.start_soon(run)
            await gate.reached.wait()
            await anyio.wait_all_tasks_blocked()  # everything that could start has started
            assert gate.running == 50
            gate.release.set()
    assert gate.peak == 50
    assert results[0].status is RunStatus.SUCCEEDED
    assert len(results[0].nodes) == 200


async def test_per_tier_limit_never_exceeded() -> None:
    gate = Gate(release_when_running=5)
    engine = Engine(FunctionModel(gate), wide_ladder(haiku_limit=5))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: engine.run(independent(60), max_concurrency=50))
            await gate.reached.wait()
            await anyio.wait_all_tasks_blocked()
            assert gate.by_tier["haiku"] == 5  # 45 nodes hold a global slot but wait for haiku
            gate.release.set()
    assert gate.peak_by_tier["haiku"] == 5


async def test_no_barrier_dependent_starts_before_slow_sibling_ends() -> None:
    """A -> C with a slow B beside them: C starts while B is still running."""
    c_started = anyio.Event()

    async def answer(request: ModelRequest) -> str:
        if request.task_id == "B":
            await c_started.wait()  # B can only end after C started: a barrier would deadlock
        if request.task_id == "C":
            c_started.set()
        return f"out {request.task_id}"

    plan = Plan(
        goal="no barrier",
        tasks=[
            Task(id="A", instruction="a"),
            Task(id="B", instruction="b"),
            Task(id="C", instruction="c", depends_on=["A"]),
        ],
    )
    with anyio.fail_after(5):
        result = await Engine(FunctionModel(answer)).run(plan)
    assert result.status is RunStatus.SUCCEEDED
    c_start = result.node("C").attempts[0].started_at
    b_end = result.node("B").attempts[0].finished_at
    assert b_end is not None
    assert c_start < b_end


async def test_dependency_outputs_reach_dependents() -> None:
    def answer(request: ModelRequest) -> str:
        return f"[{request.task_id}: {request.messages[-1].content}]"

    plan = Plan(
        goal="pass outputs",
        tasks=[
            Task(id="facts", instruction="list facts"),
            Task(id="summary", instruction="summarise", depends_on=["facts"]),
        ],
    )
    result = await Engine(FunctionModel(answer)).run(plan)
    assert "[facts: list facts]" in result.node("summary").output
    assert result.output == result.node("summary").output


async def test_failed_node_skips_transitive_dependents_only() -> None:
    def answer(request: ModelRequest) -> str:
        return "" if request.task_id == "bad" else "fine"  # empty fails NonEmpty on every tier

    plan = Plan(
        goal="skips",
        tasks=[
            Task(id="bad", instruction="x"),
            Task(id="child", instruction="x", depends_on=["bad"]),
            Task(id="grandchild", instruction="x", depends_on=["child", "other"]),
            Task(id="other", instruction="x"),
            Task(id="sibling", instruction="x", depends_on=["other"]),
        ],
    )
    result = await Engine(FunctionModel(answer)).run(plan)
    statuses = {node.id: node.status for node in result.nodes}
    assert statuses == {
        "bad": NodeStatus.FAILED,
        "child": NodeStatus.SKIPPED,
        "grandchild": NodeStatus.SKIPPED,
        "other": NodeStatus.SUCCEEDED,
        "sibling": NodeStatus.SUCCEEDED,
    }
    assert result.node("grandchild").reason == "dependency 'bad' failed"
    assert result.node("child").attempts == []
    assert result.status is RunStatus.PARTIAL


async def test_cancel_keeps_finished_results() -> None:
    blocked = anyio.Event()
    finished_first = anyio.Event()

    async def answer(request: ModelRequest) -> str:
        if request.task_id == "slow":
            blocked.set()
            await anyio.sleep_forever()
        return "quick answer"

    plan = Plan(
        goal="cancel",
        tasks=[
            Task(id="quick", instruction="q"),
            Task(id="slow", instruction="s"),
            Task(id="after", instruction="a", depends_on=["slow"]),
        ],
    )
    engine = Engine(FunctionModel(answer))

    def on_event(event: object) -> None:
        from orchestrator import NodeFinished

        if isinstance(event, NodeFinished) and event.result.id == "quick":
            finished_first.set()

    engine.listeners.append(on_event)
    run = engine.prepare(plan)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            results = []

            async def execute() -> None:
                results.append(await run.execute())

            tg.start_soon(execute)
            await blocked.wait()
            await finished_first.wait()
            run.cancel()
    result = results[0]
    assert result.status is RunStatus.CANCELLED
    assert result.node("quick").status is NodeStatus.SUCCEEDED
    assert result.node("quick").output == "quick answer"
    slow = result.node("slow")
    assert slow.status is NodeStatus.NOT_RUN
    assert slow.reason == "cancelled"
    assert slow.attempts[0].error == "cancelled"
    assert slow.attempts[0].finished_at is not None
    assert result.node("after").status is NodeStatus.NOT_RUN


async def test_cancel_from_outside_still_leaves_a_complete_snapshot() -> None:
    started = anyio.Event()

    async def answer(request: ModelRequest) -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"

    run = Engine(FunctionModel(answer)).prepare(independent(3))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.execute)
            await started.wait()
            tg.cancel_scope.cancel()
    snapshot = run.snapshot()
    assert snapshot.status is RunStatus.CANCELLED
    assert {node.status for node in snapshot.nodes} == {NodeStatus.NOT_RUN}


async def test_scheduler_alone_runs_in_dependency_order() -> None:
    graph: nx.DiGraph[int] = nx.DiGraph([(1, 2), (1, 3), (2, 4), (3, 4)])
    order: list[int] = []

    async def run_node(node: int) -> bool:
        order.append(node)
        return True

    scheduler = Scheduler(graph, run_node, max_concurrency=2)
    await scheduler.run()
    assert order[0] == 1
    assert order[-1] == 4
    assert scheduler.finished == {1: True, 2: True, 3: True, 4: True}
    assert scheduler.peak_running <= 2


def test_scheduler_rejects_non_positive_limit() -> None:
    async def run_node(node: int) -> bool:
        return True

    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(nx.DiGraph(), run_node, max_concurrency=0)


async def test_scheduler_without_limit_runs_every_waiting_node_at_once() -> None:
    """Nodes that wait get a worker each: with no cap, all 300 are in flight together."""
    graph: nx.DiGraph[int] = nx.DiGraph()
    graph.add_nodes_from(range(300))
    release, all_in = anyio.Event(), anyio.Event()
    running = 0

    async def run_node(node: int) -> bool:
        nonlocal running
        running += 1
        if running == 300:
            all_in.set()
        await release.wait()
        return True

    scheduler = Scheduler(graph, run_node)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            await all_in.wait()
            release.set()
    assert scheduler.peak_running == 300
    assert len(scheduler.finished) == 300


async def test_scheduler_can_be_cancelled_amid_nodes_that_never_wait() -> None:
    """Instant nodes run back to back on one worker, which still yields to cancellation."""
    graph: nx.DiGraph[int] = nx.DiGraph()
    graph.add_nodes_from(range(10_000))
    ran = 0

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run_node(node: int) -> bool:
                nonlocal ran
                ran += 1
                if ran == 10:
                    tg.cancel_scope.cancel()
                return True

            tg.start_soon(Scheduler(graph, run_node).run)
    assert 10 <= ran < 10_000


class SlowStore(MemoryStore):
    """Attempt writes wait for ``release``; congested once ``bound`` of them are waiting."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound
        self.waiting = 0
        self.peak_waiting = 0
        self.release = anyio.Event()

    @property
    def congested(self) -> bool:
        return self.waiting >= self.bound

    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        self.waiting += 1
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        await super().record_attempt(run_id, node_id, attempt, lease=lease)


async def test_a_congested_store_holds_back_new_nodes_and_loses_none() -> None:
    """With no concurrency cap, 300 ready nodes whose store writes back up are not 300
    suspended nodes: the engine stops adding running nodes while the store is congested,
    and every node still runs and is recorded once it catches up."""
    store = SlowStore(bound=4)
    engine = Engine(TestModel("ok"), wide_ladder(), listeners=[StoreListener(store)])
    run = engine.prepare(independent(300), max_concurrency=300)
    results = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def execute() -> None:
                results.append(await run.execute())

            tg.start_soon(execute)
            try:
                await anyio.wait_all_tasks_blocked()
                waiting = store.waiting
            finally:  # attempt records are written shielded: never leave them waiting
                store.release.set()
    # Nodes started while the first writes were on their way in go on, the rest wait.
    assert store.bound <= waiting <= store.bound + 2
    assert results[0].status is RunStatus.SUCCEEDED
    stored = await store.load_run(run.run_id)
    assert len(stored.nodes) == 300
    assert all(len(stored.attempts[f"t{i}"]) == 1 for i in range(300))


async def test_scheduler_may_grow_false_keeps_one_worker_and_finishes() -> None:
    graph: nx.DiGraph[int] = nx.DiGraph()
    graph.add_nodes_from(range(50))
    release = anyio.Event()
    running = 0
    grow = False

    async def run_node(node: int) -> bool:
        nonlocal running
        running += 1
        await release.wait()
        running -= 1
        return True

    scheduler = Scheduler(graph, run_node, may_grow=lambda: grow)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            await anyio.wait_all_tasks_blocked()
            running_while_held = running
            grow = True
            release.set()
    assert running_while_held == 1
    assert len(scheduler.finished) == 50
    assert scheduler.peak_running > 1  # it grew once allowed
