"""The run store contract, for every implementation; SQLite's file safety."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from pg_server import PostgresServer

from orchestrator import (
    Engine,
    ModelRequest,
    NodeStatus,
    Plan,
    RunStatus,
    Task,
    UserError,
    Workflow,
)
from orchestrator.exceptions import RunLeased
from orchestrator.store import (
    MemoryStore,
    PostgresStore,
    RunStore,
    SQLiteStore,
    StoreError,
    StoreListener,
)
from orchestrator.store import lease as lease_module
from orchestrator.store.lease import LeaseOwner, hold_lease, process_started
from orchestrator.store.sqlite import SCHEMA_VERSION
from orchestrator.store.sqlite_queries import read_run
from orchestrator.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


_SCHEMAS = itertools.count()


@pytest.fixture(scope="session")
def contract_database(postgres: PostgresServer) -> str:
    """One database for the PostgreSQL contract runs; each test gets a schema of its own."""
    return postgres.create_database("contract")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """Every store the contract holds for: in memory, one SQLite file, a real PostgreSQL."""
    opened: RunStore
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        opened = await SQLiteStore.open(tmp_path / "runs.db")
    else:
        url = request.getfixturevalue("contract_database")
        opened = await PostgresStore.open(url, schema=f"contract_{next(_SCHEMAS)}")
    yield opened
    await opened.aclose()


def wide_plan(count: int) -> Plan:
    tasks = [Task(id=f"n{i}", instruction=f"task {i}") for i in range(count)]
    tasks.append(Task(id="join", instruction="join", depends_on=[t.id for t in tasks]))
    return Plan(goal="fill the store", tasks=tasks)


async def test_run_round_trips_through_the_store(store: RunStore) -> None:
    engine = Engine(TestModel("", by_tier={"sonnet": "fixed"}), listeners=[StoreListener(store)])
    result = await engine.run(Plan(goal="g", tasks=[Task(id="t", instruction="x")]), run_id="r1")
    stored = await store.load_run("r1")
    assert stored.result == result
    assert stored.summary.status == "succeeded"
    assert stored.summary.cost_usd == pytest.approx(result.cost_usd)
    assert stored.plan.tasks[0].id == "t"
    assert stored.nodes["t"].status is NodeStatus.SUCCEEDED
    assert [a.tier for a in stored.attempts["t"]] == ["haiku", "sonnet"]
    assert all(a.finished_at is not None for a in stored.attempts["t"])


async def test_many_concurrent_nodes_lose_nothing(store: RunStore) -> None:
    engine = Engine(TestModel("ok"), listeners=[StoreListener(store)])
    with anyio.fail_after(30):
        result = await engine.run(wide_plan(150), run_id="wide", max_concurrency=64)
    assert result.status is RunStatus.SUCCEEDED
    stored = await store.load_run("wide")
    assert len(stored.nodes) == 151
    assert sum(len(a) for a in stored.attempts.values()) == 151
    assert {n.status for n in stored.nodes.values()} == {NodeStatus.SUCCEEDED}
    assert stored.summary.cost_usd == pytest.approx(result.cost_usd)


async def test_free_work_written_behind_is_stored_whole_by_the_runs_end(store: RunStore) -> None:
    workflow = Workflow("Python steps, then a model")
    previous: list[object] = []
    for index in range(5):  # plain Python nodes: written behind, several to a call
        previous = [workflow.task(name=f"step{index}", depends_on=previous)(_step)]

    @workflow.llm(depends_on=previous)
    def summarise() -> str:
        return "Summarise the steps."

    listener = StoreListener(store, max_deferred=4, max_delay_s=3600)
    result = await Engine(TestModel("done"), listeners=[listener]).run(workflow)
    stored = await store.load_run(result.run_id)
    assert stored.result == result
    assert sorted(stored.nodes) == sorted([*(f"step{i}" for i in range(5)), "summarise"])
    assert all(len(attempts) == 1 for attempts in stored.attempts.values())


async def _step() -> None:
    return None


async def test_node_is_durable_before_its_dependents_start(store: RunStore) -> None:
    seen: list[tuple[str, bool]] = []

    async def answer(request: ModelRequest) -> str:
        if request.task_id == "b":
            stored = await store.load_run("dur")
            seen.append(("a stored before b ran", "a" in stored.nodes))
        return "ok"

    plan = Plan(
        goal="g",
        tasks=[Task(id="a", instruction="x"), Task(id="b", instruction="y", depends_on=["a"])],
    )
    await Engine(FunctionModel(answer), listeners=[StoreListener(store)]).run(plan, run_id="dur")
    assert seen == [("a stored before b ran", True)]


async def test_list_runs_newest_first_and_unknown_run(store: RunStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    for i in range(3):
        await store.start_run(f"run{i}", plan, base + timedelta(minutes=i))
    assert [r.run_id for r in await store.list_runs()] == ["run2", "run1", "run0"]
    assert [r.status for r in await store.list_runs(limit=1)] == ["running"]
    with pytest.raises(KeyError, match="no run 'nope'"):
        await store.load_run("nope")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    before = digest(path)
    with pytest.raises(StoreError, match="is not an orchestrator run store"):
        await SQLiteStore.open(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


async def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('app', 'somebody else')")
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises(StoreError, match="another application"):
        await SQLiteStore.open(path)
    assert digest(path) == before


async def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    await store.aclose()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="written by a newer version"):
        await SQLiteStore.open(path)


async def test_reopened_store_keeps_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    await Engine(TestModel("ok"), listeners=[StoreListener(store)]).run(wide_plan(3), run_id="keep")
    await store.aclose()
    reopened = await SQLiteStore.open(path)
    try:
        stored = await reopened.load_run("keep")
    finally:
        await reopened.aclose()
    assert stored.summary.status == "succeeded"
    assert len(stored.nodes) == 4


async def test_resume_runs_only_what_did_not_finish(store: RunStore) -> None:
    plan = Plan(
        goal="resume",
        tasks=[
            Task(id="a", instruction="first"),
            Task(id="b", instruction="second"),
            Task(id="c", instruction="third", depends_on=["a", "b"]),
        ],
    )
    b_started = anyio.Event()

    async def first_process(request: ModelRequest) -> str:
        if request.task_id == "b":
            b_started.set()
            await anyio.sleep_forever()
        return f"answer {request.task_id}"

    engine = Engine(FunctionModel(first_process), listeners=[StoreListener(store)])
    run = engine.prepare(plan, run_id="crashy", budget_usd=1.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.execute)
            await b_started.wait()
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    stored = await store.load_run("crashy")
    assert stored.nodes["a"].status is NodeStatus.SUCCEEDED
    spent_before = stored.summary.cost_usd
    assert spent_before > 0

    second = FunctionModel(lambda request: f"answer {request.task_id}")
    resumed = await Engine(second, listeners=[StoreListener(store)]).run(
        stored.plan, resume=stored, budget_usd=1.0
    )
    assert resumed.run_id == "crashy"
    assert resumed.status is RunStatus.SUCCEEDED
    assert sorted(r.task_id or "" for r in second.requests) == ["b", "c"]  # never "a" again
    assert resumed.node("a").output == "answer a"
    b_attempts = resumed.node("b").attempts
    assert b_attempts[0].error_type in {"cancelled", "interrupted"}
    assert [a.number for a in b_attempts] == [1, 2]
    assert resumed.cost_usd == pytest.approx(
        spent_before + sum(a.cost_usd for n in ("b", "c") for a in resumed.node(n).attempts[-1:])
    )
    final = await store.load_run("crashy")
    assert final.summary.status == "succeeded"


async def test_attempt_in_flight_at_a_crash_is_marked_interrupted() -> None:
    store = MemoryStore()
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    await store.start_run("dead", plan, datetime(2026, 1, 1, tzinfo=UTC))
    from orchestrator import Attempt

    in_flight = Attempt(
        number=1, tier="haiku", model="m", started_at=datetime(2026, 1, 1, tzinfo=UTC),
        cost_usd=Decimal("0.001"), in_flight_usd=Decimal("0.002"),
    )  # fmt: skip
    await store.record_attempt("dead", "t", in_flight)  # the process died before it finished
    stored = await store.load_run("dead")
    result = await Engine(TestModel("ok")).run(stored.plan, resume=stored)
    first, second = result.node("t").attempts
    assert first.error_type == "interrupted"
    assert (first.cost_usd, first.cost_unknown) == (Decimal("0.003"), True)  # an upper bound
    assert second.passed


async def test_attempt_that_died_before_sending_anything_cost_what_it_had() -> None:
    store = MemoryStore()
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    await store.start_run("dead", plan, datetime(2026, 1, 1, tzinfo=UTC))
    from orchestrator import Attempt

    waiting = Attempt(
        number=1, tier="haiku", model="m", started_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    await store.record_attempt("dead", "t", waiting)  # started, killed before its first call
    stored = await store.load_run("dead")
    result = await Engine(TestModel("ok")).run(stored.plan, resume=stored)
    first = result.node("t").attempts[0]
    assert first.error_type == "interrupted"
    assert (first.cost_usd, first.cost_unknown) == (0, False)  # nothing sent: known exactly


async def test_resume_does_not_pay_again_for_a_tier_that_already_failed() -> None:
    store = MemoryStore()
    plan = Plan(
        goal="g",
        tasks=[
            Task(id="t", instruction="x", verify=[{"kind": "required_sections", "sections": ["A"]}])
        ],
    )
    await store.start_run("was-escalating", plan, datetime(2026, 1, 1, tzinfo=UTC))
    from orchestrator import Attempt, Verdict

    rejected = Attempt(
        number=1, tier="haiku", model="m", started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, tzinfo=UTC), cost_usd=0.001,
        verdict=Verdict(passed=False, reason="missing required section(s): A"),
    )  # fmt: skip
    await store.record_attempt("was-escalating", "t", rejected)
    stored = await store.load_run("was-escalating")

    model = FunctionModel(lambda request: "## A\nanswer")
    resumed = await Engine(model).run(stored.plan, resume=stored)
    assert resumed.status is RunStatus.SUCCEEDED
    assert [request.tier.name for request in model.requests] == ["sonnet"]  # not haiku again
    attempts = resumed.node("t").attempts
    assert [(a.number, a.tier) for a in attempts] == [(1, "haiku"), (2, "sonnet")]
    assert "already failed verification" in attempts[1].route_reason


def failing_plan() -> Plan:
    return Plan(
        goal="some fail",
        tasks=[
            Task(id="a", instruction="first"),
            Task(id="b", instruction="second"),
            Task(id="c", instruction="third", depends_on=["a", "b"]),
        ],
    )


def answers(*, failing: str | None) -> FunctionModel:
    """Answers every task by its id; ``failing``'s answers are empty (never verified)."""
    return FunctionModel(
        lambda request: "" if request.task_id == failing else f"ans-{request.task_id}"
    )


async def test_a_finished_run_stores_each_node_once_and_loads_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    try:
        engine = Engine(answers(failing="b"), listeners=[StoreListener(store)])
        result = await engine.run(failing_plan(), run_id="once")
        stored = await store.load_run("once")
    finally:
        await store.aclose()
    assert [n.status for n in result.nodes] == [
        NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED,
    ]  # fmt: skip
    assert stored.result == result  # nodes back in plan order, the skipped one included
    assert stored.nodes["c"].reason == "dependency 'b' failed"
    db = sqlite3.connect(path)
    try:
        (raw,) = db.execute("SELECT result FROM runs WHERE run_id='once'").fetchone()
        bodies = db.execute("SELECT count(*) FROM nodes WHERE run_id='once'").fetchone()[0]
    finally:
        db.close()
    assert '"nodes"' not in raw  # not a second copy of any node
    assert "ans-a" not in raw
    assert bodies == 3


async def test_finishing_a_run_while_another_process_writes_waits_for_it(tmp_path: Path) -> None:
    # finish_run reads the node rows, then writes. In a deferred transaction another
    # process's commit between the two made SQLite fail the write at once with "database
    # is locked" (a stale snapshot cannot be upgraded, and busy_timeout does not apply).
    # The other process's write is made at exactly that point, from the statement trace.
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    other = sqlite3.connect(path, timeout=0, check_same_thread=False)
    outcome: list[str] = []

    def between_read_and_write(statement: str) -> None:
        if not statement.startswith("UPDATE runs SET status") or outcome:
            return
        try:
            with other:
                other.execute("INSERT INTO meta VALUES ('probe', 'another process')")
            outcome.append("the other process wrote")
        except sqlite3.OperationalError as exc:
            outcome.append(str(exc))

    store._db.set_trace_callback(between_read_and_write)  # the store's own connection
    try:
        with anyio.fail_after(30):
            engine = Engine(TestModel("ok"), listeners=[StoreListener(store)])
            result = await engine.run(wide_plan(3), run_id="contended")
            stored = await store.load_run("contended")
    finally:
        await store.aclose()
        other.close()
    assert outcome == ["database is locked"]  # the store held the write lock: the other waits
    assert stored.summary.status == "succeeded"
    assert stored.result == result


async def test_a_run_can_be_read_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    # `orchestrator runs` / `show` while an engine writes: reads take no write lock.
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    writer = sqlite3.connect(path, check_same_thread=False)
    try:
        await Engine(TestModel("ok"), listeners=[StoreListener(store)]).run(
            wide_plan(2), run_id="done"
        )
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        with anyio.fail_after(3):  # shorter than busy_timeout: a wait would be a failure
            stored = await store.load_run("done")
            [summary] = await store.list_runs()
    finally:
        writer.rollback()
        writer.close()
        await store.aclose()
    assert stored.summary.status == summary.status == "succeeded"


async def test_a_resumed_run_loads_with_its_latest_nodes(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        first = Engine(answers(failing="b"), listeners=[StoreListener(store)])
        await first.run(failing_plan(), run_id="again")
        stored = await store.load_run("again")
        assert stored.nodes["c"].status is NodeStatus.SKIPPED
        second = Engine(answers(failing=None), listeners=[StoreListener(store)])
        resumed = await second.run(stored.plan, resume=stored)
        final = await store.load_run("again")
    finally:
        await store.aclose()
    assert resumed.status is RunStatus.SUCCEEDED
    assert final.result == resumed
    assert {n.status for n in final.nodes.values()} == {NodeStatus.SUCCEEDED}


async def test_a_schema_1_store_is_read_as_written_and_marked_2(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    result = await Engine(answers(failing="b"), listeners=[StoreListener(store)]).run(
        failing_plan(), run_id="old"
    )
    await store.aclose()
    db = sqlite3.connect(path)  # as version 1 wrote it: the nodes in the result, and only
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")  # those that ran
    db.execute("UPDATE runs SET result=? WHERE run_id='old'", (result.model_dump_json(),))
    db.execute("DELETE FROM nodes WHERE node_id='c'")
    db.commit()
    db.close()
    reopened = await SQLiteStore.open(path)
    try:
        stored = await reopened.load_run("old")
    finally:
        await reopened.aclose()
    assert stored.result == result
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    assert meta["schema_version"] == "2" == str(SCHEMA_VERSION)


# -- leases: one owner of a run at a time --------------------------------------------------


class Clock:
    """The leases' wall clock, moved by hand (no sleeping until a lease expires)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(lease_module, "wall_clock", fake)
    return fake


async def test_a_leased_run_is_refused_to_another_owner_naming_the_holder(
    store: RunStore, clock: Clock
) -> None:
    first, second = LeaseOwner.current(), LeaseOwner.current()
    await store.acquire_lease("r", first, 30)
    with pytest.raises(RunLeased) as refused:
        await store.acquire_lease("r", second, 30)
    error = refused.value
    assert isinstance(error, UserError)  # the CLI exits 2
    assert (error.run_id, error.host, error.pid) == ("r", first.host, first.pid)
    assert error.since == clock.now
    assert error.expires_at == clock.now + timedelta(seconds=30)
    assert f"pid {first.pid} on {first.host}" in str(error)
    with pytest.raises(RunLeased):
        await store.renew_lease("r", second, 30)
    await store.release_lease("r", second)  # not its lease: nothing happens
    with pytest.raises(RunLeased):
        await store.acquire_lease("r", second, 30)
    await store.acquire_lease("r", first, 30)  # its own: renewed
    await store.acquire_lease("other run", second, 30)  # leases are per run
    await store.release_lease("r", first)
    await store.acquire_lease("r", second, 30)
    with pytest.raises(RunLeased) as lost:
        await store.renew_lease("r", first, 30)
    assert lost.value.pid == second.pid


async def test_a_lease_expires_without_renewal_and_is_taken_over(
    store: RunStore, clock: Clock
) -> None:
    away = LeaseOwner("another-host", 1, "t-away")  # its liveness cannot be checked here
    here = LeaseOwner.current()
    await store.acquire_lease("r", away, 30)
    clock.now += timedelta(seconds=20)
    await store.renew_lease("r", away, 30)  # now valid until +50 s
    clock.now += timedelta(seconds=29)
    with pytest.raises(RunLeased):
        await store.acquire_lease("r", here, 30)
    clock.now += timedelta(seconds=2)  # 31 s after the last renewal: expired
    await store.acquire_lease("r", here, 30)
    with pytest.raises(RunLeased) as lost:
        await store.renew_lease("r", away, 30)
    assert (lost.value.host, lost.value.pid) == (here.host, here.pid)


@pytest.mark.skipif(sys.platform == "win32", reason="liveness is not probed on Windows")
async def test_the_lease_of_a_process_gone_from_this_host_is_taken_over_at_once(
    store: RunStore, clock: Clock
) -> None:
    exited = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    dead = LeaseOwner(socket.gethostname(), int(exited.stdout), "t-dead")  # reaped: gone
    await store.acquire_lease("dead", dead, 3600)
    await store.acquire_lease("dead", LeaseOwner.current(), 30)
    if process_started(os.getpid()) is not None:  # Linux: a reused pid is not the holder
        reused = LeaseOwner(socket.gethostname(), os.getpid(), "t-old", "another boot:1")
        await store.acquire_lease("reused", reused, 3600)
        await store.acquire_lease("reused", LeaseOwner.current(), 30)
    elsewhere = LeaseOwner("another-host", int(exited.stdout), "t-far")  # cannot tell
    await store.acquire_lease("far", elsewhere, 3600)
    with pytest.raises(RunLeased):
        await store.acquire_lease("far", LeaseOwner.current(), 30)


@pytest.mark.parametrize("ttl_s", [0, -1, math.inf, math.nan])
async def test_a_lease_needs_a_positive_ttl(store: RunStore, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await store.acquire_lease("r", LeaseOwner.current(), ttl_s)


async def test_hold_lease_holds_it_for_the_body_and_releases_it(store: RunStore) -> None:
    other = LeaseOwner.current()
    with anyio.fail_after(10):
        async with hold_lease(store, "r", ttl_s=30) as lease:
            assert lease.owner.pid == os.getpid()
            with pytest.raises(RunLeased):
                await store.acquire_lease("r", other, 30)
            with pytest.raises(RunLeased):
                async with hold_lease(store, "r"):
                    pytest.fail("a second holder entered")
        assert not lease.lost.is_set()
        await store.acquire_lease("r", other, 30)  # released on exit
        with pytest.raises(RuntimeError, match="boom"):  # released when the body fails too
            async with hold_lease(store, "r2"):
                raise RuntimeError("boom")
        await store.acquire_lease("r2", other, 30)


async def test_hold_lease_reports_a_lease_taken_over_and_can_cancel_the_run(
    store: RunStore, clock: Clock
) -> None:
    # The holder's clock jumps past its ttl (a suspended laptop, say): another process takes
    # the run over, and the holder's next renewal finds it taken and cancels the body.
    thief = LeaseOwner("another-host", 7, "t-thief")
    reasons: list[RunLeased] = []
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:

            def stop(reason: RunLeased) -> None:
                reasons.append(reason)
                scope.cancel()

            async with hold_lease(store, "r", ttl_s=0.3, on_lost=stop) as lease:
                clock.now += timedelta(seconds=1)
                await store.acquire_lease("r", thief, 60)
                await anyio.sleep_forever()  # the run: cancelled once the lease is lost
        assert scope.cancelled_caught
    assert lease.lost.is_set()
    assert reasons == [lease.lost_to]
    assert lease.lost_to is not None
    assert (lease.lost_to.host, lease.lost_to.pid) == ("another-host", 7)
    with pytest.raises(RunLeased):  # the thief's lease was left alone on exit
        await store.acquire_lease("r", LeaseOwner.current(), 30)


async def test_hold_lease_renews_in_the_background(clock: Clock) -> None:
    class Renewals(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.renewed = anyio.Event()
            self.count = 0

        async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
            await super().renew_lease(run_id, owner, ttl_s)
            self.count += 1
            if self.count == 3:
                self.renewed.set()

    store = Renewals()
    started = clock.now
    with anyio.fail_after(10):
        async with hold_lease(store, "r", ttl_s=0.15) as lease:
            clock.now += timedelta(seconds=0.1)  # each renewal dates it from the clock
            await store.renewed.wait()
            expires = store._leases["r"].expires_at
    assert expires == started + timedelta(seconds=0.25)
    assert not lease.lost.is_set()
    assert "r" not in store._leases


async def test_an_older_store_file_gets_the_leases_table_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await (await SQLiteStore.open(path)).aclose()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE leases")  # as a store written before leases existed
    db.commit()
    db.close()
    store = await SQLiteStore.open(path)
    try:
        await store.acquire_lease("r", LeaseOwner.current(), 30)
        with pytest.raises(RunLeased):
            await store.acquire_lease("r", LeaseOwner.current(), 30)
    finally:
        await store.aclose()
    db = sqlite3.connect(path)
    try:
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    finally:
        db.close()
    assert version == (str(SCHEMA_VERSION),)  # unchanged: older versions ignore the table


async def test_a_runs_budget_is_stored_from_its_start_and_replaced_on_resume(
    store: RunStore,
) -> None:
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    started = datetime(2026, 1, 1, tzinfo=UTC)
    await store.start_planning("planned", "g", started, budget_usd=Decimal("0.1"))
    assert (await store.load_run("planned")).budget_usd == Decimal("0.1")  # before any plan
    await store.start_run("planned", plan, started, budget_usd=Decimal("0.1"))
    await store.start_run("none", plan, started)
    assert (await store.load_run("none")).budget_usd is None
    await store.start_run("planned", plan, started, budget_usd=Decimal("0.30000000000000004"))
    assert (await store.load_run("planned")).budget_usd == Decimal("0.30000000000000004")


async def test_an_older_store_file_gets_the_budget_column_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    started = datetime(2026, 1, 1, tzinfo=UTC)
    store = await SQLiteStore.open(path)
    engine = Engine(TestModel("fine"), listeners=[StoreListener(store)])
    await engine.run(plan, run_id="done", budget_usd=Decimal("0.5"))
    await store.start_run("unfinished", plan, started, budget_usd=Decimal("0.5"))
    await store.aclose()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN budget_usd")  # as written before budgets were
    db.commit()
    db.close()
    readonly = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:  # a file that cannot be written is read without the column
        assert read_run(readonly, "done").budget_usd == Decimal("0.5")  # its result's
        assert read_run(readonly, "unfinished").budget_usd is None  # not known
    finally:
        readonly.close()
    store = await SQLiteStore.open(path)
    try:
        await store.start_run("unfinished", plan, started, budget_usd=Decimal("0.2"))
        assert (await store.load_run("unfinished")).budget_usd == Decimal("0.2")
    finally:
        await store.aclose()
