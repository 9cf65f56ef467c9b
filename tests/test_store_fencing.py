"""Fenced writes: a driver that lost its run's lease writes nothing only an owner may write.

The contract, on every store: a write given a lease owner is made only while that owner
holds the run's lease, checked in the write's own transaction, else ``RunLeased`` and
nothing written; in a group commit only the calls whose lease is gone fail. On PostgreSQL,
a fenced write racing a takeover waits for it and sees the new holder. Through the
:class:`StoreListener`: the record made before a call is sent is refused once the lease is
another's, so the call is not sent, the lease is reported lost at once and the run stops;
its node results and status are never written over the new owner's, while what it spent
still is. And a node's accepted answer is never durable without the node's result: a store
caught after any write resumes without asking again for anything it recorded as answered.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from orchestrator import Engine, NodeStatus, Plan, RunStatus, Task
from orchestrator.events import AttemptFinished, AttemptSpending, Event, NodeFinished
from orchestrator.exceptions import RunLeased
from orchestrator.results import Attempt, NodeResult, RunResult, Verdict
from orchestrator.store import (
    MemoryStore,
    PostgresStore,
    RunStore,
    SQLiteStore,
    StoredRun,
    StoreListener,
)
from orchestrator.store import lease as lease_module
from orchestrator.store.lease import LeaseOwner, hold_lease
from orchestrator.testing import FunctionModel

pytestmark = pytest.mark.anyio

_SCHEMAS = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """Every store: in memory, one SQLite file, a real PostgreSQL (a schema per test)."""
    opened: RunStore
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        opened = await SQLiteStore.open(tmp_path / "runs.db")
    else:
        url = request.getfixturevalue("postgres_url")
        opened = await PostgresStore.open(url, schema=f"fencing_{next(_SCHEMAS)}")
    yield opened
    await opened.aclose()


class Clock:
    """The leases' wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(lease_module, "wall_clock", fake)
    return fake


PLAN = Plan(goal="fenced", tasks=[Task(id="a", instruction="a"), Task(id="b", instruction="b")])


def attempt(number: int, *, cost: str = "0", in_flight: str = "0") -> Attempt:
    return Attempt(
        number=number, tier="haiku", model="m", started_at=datetime.now(UTC),
        cost_usd=Decimal(cost), in_flight_usd=Decimal(in_flight),
    )  # fmt: skip


def node(node_id: str, status: NodeStatus = NodeStatus.SUCCEEDED) -> NodeResult:
    return NodeResult(id=node_id, status=status, output=f"{node_id} by its owner")


def result_of(run_id: str, status: RunStatus) -> RunResult:
    now = datetime.now(UTC)
    return RunResult(
        run_id=run_id, status=status, goal=PLAN.goal, started_at=now, finished_at=now, wall_s=0
    )


async def fenced_writes(store: RunStore, run_id: str, owner: LeaseOwner) -> list[Any]:
    """Every write of the interface, fenced by ``owner``: what each raised (or None)."""
    now = datetime.now(UTC)
    writes = [
        store.start_run(run_id, PLAN, now, budget_usd=Decimal(9), lease=owner),
        store.start_planning(run_id, "replanned", now, lease=owner),
        store.revise_plan(run_id, PLAN, lease=owner),
        store.record_attempt(run_id, "a", attempt(7, in_flight="0.5"), lease=owner),
        store.record_node(run_id, node("a", NodeStatus.FAILED), lease=owner),
        store.record_many(run_id, [("b", attempt(8, cost="1"))], [node("b")], lease=owner),
        store.finish_run(result_of(run_id, RunStatus.CANCELLED), lease=owner),
    ]
    outcomes: list[Any] = []
    for write in writes:
        try:
            await write
            outcomes.append(None)
        except RunLeased as exc:
            outcomes.append(exc)
    return outcomes


async def test_a_fenced_write_is_made_only_while_its_owner_holds_the_lease(
    store: RunStore, clock: Clock
) -> None:
    first, thief = LeaseOwner.current(), LeaseOwner("another-host", 7, "t-thief")
    await store.acquire_lease("r", first, 30)
    await store.start_run("r", PLAN, datetime.now(UTC), lease=first)
    await store.record_attempt("r", "a", attempt(1, cost="0.25"), lease=first)
    await store.record_node("r", node("a"), lease=first)
    clock.now += timedelta(seconds=31)  # expired, nobody took it: still the holder's
    await store.record_many("r", [("b", attempt(1, cost="0.5"))], lease=first)
    await store.acquire_lease("r", thief, 30)  # taken over
    before = await store.load_run("r")

    refused = await fenced_writes(store, "r", first)
    assert all(isinstance(exc, RunLeased) and exc.run_id == "r" for exc in refused), refused
    assert await store.load_run("r") == before  # nothing of them written

    await store.record_attempt("r", "a", attempt(9, cost="0.125"))  # unfenced: as before
    assert len((await store.load_run("r")).attempts["a"]) == 2
    assert await fenced_writes(store, "r", thief) == [None] * 7  # the new holder's are made
    await store.release_lease("r", thief)
    assert all(isinstance(exc, RunLeased) for exc in await fenced_writes(store, "r", thief))
    with pytest.raises(RunLeased):  # a run nobody ever leased: a fenced write is refused
        await store.record_attempt("never leased", "a", attempt(1), lease=first)


async def test_in_one_group_commit_only_the_calls_whose_lease_is_gone_fail(
    store: RunStore, clock: Clock
) -> None:
    holder, lost = LeaseOwner.current(), LeaseOwner.current()
    for run_id in ("kept", "taken"):
        await store.start_run(run_id, PLAN, datetime.now(UTC))
    await store.acquire_lease("kept", holder, 30)
    await store.acquire_lease("taken", lost, 30)
    clock.now += timedelta(seconds=31)
    await store.acquire_lease("taken", holder, 30)
    outcomes: dict[str, list[BaseException | None]] = {"kept": [], "taken": [], "free": []}

    async def write(kind: str, number: int) -> None:
        run_id, owner = {"kept": ("kept", holder), "taken": ("taken", lost)}.get(
            kind, ("taken", None)
        )
        try:
            if number % 2:
                await store.record_attempt(run_id, f"n{number}", attempt(1), lease=owner)
            else:
                await store.record_node(run_id, node(f"n{number}"), lease=owner)
            outcomes[kind].append(None)
        except RunLeased as exc:
            outcomes[kind].append(exc)

    async with anyio.create_task_group() as tg:  # queued together: batches of all three kinds
        for number in range(24):
            tg.start_soon(write, ("kept", "taken", "free")[number % 3], number)
    assert outcomes["kept"] == [None] * 8
    assert outcomes["free"] == [None] * 8
    assert len(outcomes["taken"]) == 8
    assert all(isinstance(exc, RunLeased) for exc in outcomes["taken"])
    kept, taken = await store.load_run("kept"), await store.load_run("taken")
    assert len(kept.attempts) + len(kept.nodes) == 8
    written = {*taken.attempts, *taken.nodes}
    assert written == {f"n{n}" for n in range(24) if n % 3 == 2}  # only the unfenced ones


async def test_on_postgresql_a_fenced_write_waits_for_a_takeover_and_then_is_refused(
    postgres_url: str,
) -> None:
    """A takeover in progress (its lease row updated, not committed) holds the row: a fenced
    write waits for it rather than reading the old holder, then finds the new one."""
    store = await PostgresStore.open(postgres_url)
    owner = LeaseOwner.current()
    try:
        await store.start_run("r", PLAN, datetime.now(UTC))
        await store.acquire_lease("r", owner, 30)
        refused: list[BaseException] = []

        async def write() -> None:
            try:
                await store.record_attempt("r", "a", attempt(1, in_flight="0.5"), lease=owner)
            except RunLeased as exc:
                refused.append(exc)

        async with await psycopg.AsyncConnection.connect(postgres_url) as takeover:
            await takeover.execute(
                "UPDATE orchestrator.leases SET token = 't-new' WHERE run_id = 'r'"
            )  # a transaction is open: the row is locked until it commits
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(write)
                    await _until_a_backend_waits_for_a_lock(postgres_url)
                    assert refused == []  # waiting, not written from the old holder
                    await takeover.commit()
        assert len(refused) == 1
        assert (await store.load_run("r")).attempts == {}
    finally:
        await store.aclose()


async def _until_a_backend_waits_for_a_lock(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watcher:
        while True:  # each look is a query: the fenced write's backend shows up waiting
            cursor = await watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                return
            await anyio.lowlevel.checkpoint()


# -- through the listener: a driver whose lease was taken over -----------------------------


def answering() -> tuple[FunctionModel, list[str | None]]:
    """A model, and the tasks it answered (``FunctionModel.requests`` also holds the calls
    refused before they were sent)."""
    answered: list[str | None] = []

    def answer(request: Any) -> str:
        answered.append(request.task_id)
        return f"answer to {request.task_id}"

    return FunctionModel(answer), answered


class TakeOver:
    """A listener after the store's: once node ``after`` is written, a thief takes the
    run's lease (the holder paused past its ttl, say)."""

    def __init__(self, store: RunStore, clock: Clock, after: str) -> None:
        self.store, self.clock, self.after = store, clock, after
        self.thief = LeaseOwner("another-host", 7, "t-thief")

    async def __call__(self, event: Event) -> None:
        if isinstance(event, NodeFinished) and event.result.id == self.after:
            self.clock.now += timedelta(seconds=31)
            await self.store.acquire_lease(event.run_id, self.thief, 30)


async def test_a_driver_whose_lease_was_taken_sends_no_more_calls_and_writes_no_result(
    store: RunStore, clock: Clock
) -> None:
    plan = Plan(goal="a chain", tasks=[
        Task(id="first", instruction="one"),
        Task(id="second", instruction="two", depends_on=["first"]),
        Task(id="third", instruction="three", depends_on=["second"]),
    ])  # fmt: skip
    model, answered = answering()
    takeover = TakeOver(store, clock, after="first")
    runs: list[Any] = []
    reasons: list[RunLeased] = []

    def lost(reason: RunLeased) -> None:
        reasons.append(reason)
        for run in runs:
            run.cancel()

    with anyio.fail_after(30):
        async with hold_lease(store, "r", on_lost=lost) as lease:
            engine = Engine(model, listeners=[StoreListener(store, lease=lease), takeover])
            run = engine.prepare(plan, run_id="r", budget_usd=1)
            runs.append(run)
            result = await run.execute()
    assert answered == ["first"]  # second's call was refused before it was sent
    assert lease.lost.is_set()
    assert reasons == [lease.lost_to]  # reported once, at the refused write
    assert result.status == RunStatus.CANCELLED
    stored = await store.load_run("r")
    assert set(stored.nodes) == {"first"}  # not second's or third's (cancelled) results
    assert stored.summary.status == "running"  # nor the run's status: the thief's to write
    assert stored.result is None
    # second's attempt may be recorded as started (a record of what was tried, never
    # refused), with nothing spent or in flight: its call was never sent
    second = stored.attempts.get("second", [])
    assert all(a.cost_usd == a.in_flight_usd == 0 for a in second), second
    assert stored.summary.cost_usd == sum(a.cost_usd for a in stored.attempts["first"])
    with pytest.raises(RunLeased):  # the thief's lease was left alone on exit
        await store.acquire_lease("r", LeaseOwner.current(), 30)


async def test_a_driver_that_lost_its_lease_before_the_run_started_sends_nothing(
    clock: Clock,
) -> None:
    store = MemoryStore()
    model, answered = answering()
    runs: list[Any] = []
    async with hold_lease(store, "r", on_lost=lambda _: [run.cancel() for run in runs]) as lease:
        clock.now += timedelta(seconds=31)
        await store.acquire_lease("r", LeaseOwner("another-host", 7, "t-thief"), 30)
        run = Engine(model, listeners=[StoreListener(store, lease=lease)]).prepare(PLAN, run_id="r")
        runs.append(run)
        result = await run.execute()  # its start is refused: the lease is lost, it stops
    assert lease.lost.is_set()
    assert answered == []
    assert result.status == RunStatus.CANCELLED
    with pytest.raises(KeyError):  # nothing of it was written
        await store.load_run("r")


async def test_after_the_lease_is_lost_what_was_spent_is_still_written(clock: Clock) -> None:
    """A call sent before the loss and answered after it: its attempt (its cost) is
    recorded, its node's result is not."""
    store = MemoryStore()
    await store.start_run("r", PLAN, datetime.now(UTC))
    async with hold_lease(store, "r") as lease:
        listener = StoreListener(store, lease=lease)
        clock.now += timedelta(seconds=31)
        await store.acquire_lease("r", LeaseOwner("another-host", 7, "t-thief"), 30)
        answered = attempt(1, cost="0.25").model_copy(update={"finished_at": datetime.now(UTC)})
        answered.verdict = Verdict(passed=True, reason="ok", verifier="test")
        await listener(AttemptFinished("r", "a", answered))
        await listener(NodeFinished("r", node("a").model_copy(update={"attempts": [answered]})))
        assert lease.lost.is_set()
        stored = await store.load_run("r")
        assert stored.attempts["a"][0].cost_usd == Decimal("0.25")
        assert stored.nodes == {}
        with pytest.raises(RunLeased):  # and any call after it is refused at once
            await listener(AttemptSpending("r", "b", attempt(1, in_flight="0.5")))
        assert "b" not in (await store.load_run("r")).attempts


# -- an answer is durable only with its node's result ---------------------------------------


class Snapshots(MemoryStore):
    """A memory store that keeps the run as it stood after each write: what a process
    killed right after that write would leave."""

    def __init__(self) -> None:
        super().__init__()
        self.after: list[StoredRun] = []

    async def _snap(self, run_id: str) -> None:
        self.after.append(await self.load_run(run_id))

    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        await super().record_attempt(run_id, node_id, attempt, lease=lease)
        await self._snap(run_id)

    async def record_node(
        self, run_id: str, result: NodeResult, *, lease: LeaseOwner | None = None
    ) -> None:
        await super().record_node(run_id, result, lease=lease)
        await self._snap(run_id)

    async def record_many(
        self,
        run_id: str,
        attempts: Sequence[tuple[str, Attempt]] = (),
        nodes: Sequence[NodeResult] = (),
        *,
        lease: LeaseOwner | None = None,
    ) -> None:
        for node_id, one in attempts:  # in one step (no snapshot between): one transaction
            await MemoryStore.record_attempt(self, run_id, node_id, one, lease=lease)
        for result in nodes:
            await MemoryStore.record_node(self, run_id, result, lease=lease)
        await self._snap(run_id)


@pytest.mark.parametrize("durability", ["async", "sync"])
async def test_an_accepted_answer_is_never_stored_without_its_nodes_result(
    durability: Any,
) -> None:
    plan = Plan(goal="a chain", tasks=[
        Task(id="first", instruction="one"),
        Task(id="second", instruction="two", depends_on=["first"]),
    ])  # fmt: skip
    store = Snapshots()
    engine = Engine(answering()[0], listeners=[StoreListener(store, durability=durability)])
    result = await engine.run(plan, run_id="r")
    assert result.status == RunStatus.SUCCEEDED
    for stored in store.after:  # a kill after any write: every answer has its node
        answered = {n for n, attempts in stored.attempts.items() if any(a.passed for a in attempts)}
        assert answered <= set(stored.nodes), (answered, set(stored.nodes))
    # resumed from each of those, nothing recorded as answered is asked for again
    for stored in store.after:
        model, asked = answering()
        resumed = await Engine(model).run(plan, resume=stored)
        assert resumed.status == RunStatus.SUCCEEDED
        assert set(asked).isdisjoint(stored.nodes), (asked, set(stored.nodes))
