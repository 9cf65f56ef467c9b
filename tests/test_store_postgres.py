"""The PostgreSQL store's own cases, on a real server (tests/pg_server.py): its schema in the
database, what it refuses (naming the server, never the password), reads during writes,
back-pressure, cancellation and exact spend. The contract it shares with the other stores
is tests/test_store.py, parametrised over all of them."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import psycopg
import pytest
from pg_server import SECRET_PASSWORD, SECRET_USER, PostgresServer

from orchestrator import Attempt, Engine, Plan, Task
from orchestrator.store import PostgresStore, StoreError, StoreListener
from orchestrator.store.postgres_schema import redact
from orchestrator.testing import TestModel

pytestmark = pytest.mark.anyio

PLAN = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_new_database_gets_the_store_and_reopens_with_its_runs(
    postgres: PostgresServer, postgres_url: str
) -> None:
    store = await PostgresStore.open(postgres_url)
    try:
        engine = Engine(TestModel("ok"), listeners=[StoreListener(store)])
        result = await engine.run(PLAN, run_id="kept")
    finally:
        await store.aclose()
    reopened = await PostgresStore.open(postgres_url)
    try:
        stored = await reopened.load_run("kept")
    finally:
        await reopened.aclose()
    assert stored.result == result
    dbname = postgres_url.rpartition("/")[2]
    tables = postgres.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
        " WHERE schemaname = 'orchestrator'",
        dbname,
    )
    assert tables.strip() == ("attempts,leases,meta,nodes,ratelimit_buckets,ratelimit_pauses,runs")
    meta = postgres.psql("SELECT value FROM orchestrator.meta ORDER BY key", dbname).split()
    assert meta[0:1] == ["tiered-orchestrator"]  # the marker, then the version ("1")
    assert meta[-1] == "1"


async def test_processes_opening_a_new_database_at_once_all_get_one_whole_store(
    postgres: PostgresServer, postgres_url: str
) -> None:
    stores: list[PostgresStore] = []

    async def open_one() -> None:
        stores.append(await PostgresStore.open(postgres_url))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(open_one)
    for store in stores:
        await store.start_run(f"by-{id(store)}", PLAN, STARTED)
        await store.aclose()
    dbname = postgres_url.rpartition("/")[2]
    assert postgres.psql("SELECT count(*) FROM orchestrator.meta", dbname).strip() == "2"
    assert postgres.psql("SELECT count(*) FROM orchestrator.runs", dbname).strip() == "4"


async def test_another_applications_schema_is_refused_and_left_as_it_is(
    postgres: PostgresServer, postgres_url: str
) -> None:
    dbname = postgres_url.rpartition("/")[2]
    postgres.psql(
        "CREATE SCHEMA orchestrator; CREATE TABLE orchestrator.runs (payroll int);"
        " INSERT INTO orchestrator.runs VALUES (42)",
        dbname,
    )
    with pytest.raises(StoreError, match="belongs to another application"):
        await PostgresStore.open(postgres_url)
    assert postgres.psql("SELECT payroll FROM orchestrator.runs", dbname).strip() == "42"
    elsewhere = await PostgresStore.open(postgres_url, schema="runs_of_team_b")  # beside it
    await elsewhere.aclose()


async def test_a_store_from_a_newer_version_is_refused(
    postgres: PostgresServer, postgres_url: str
) -> None:
    await (await PostgresStore.open(postgres_url)).aclose()
    dbname = postgres_url.rpartition("/")[2]
    postgres.psql("UPDATE orchestrator.meta SET value = '99' WHERE key = 'schema_version'", dbname)
    with pytest.raises(StoreError, match="written by a newer version"):
        await PostgresStore.open(postgres_url)
    postgres.psql("UPDATE orchestrator.meta SET value = 'x' WHERE key = 'schema_version'", dbname)
    with pytest.raises(StoreError, match="no valid store schema version"):
        await PostgresStore.open(postgres_url)


async def test_what_cannot_be_opened_is_named_without_its_password(
    postgres: PostgresServer, postgres_url: str
) -> None:
    secret = SECRET_PASSWORD
    refused = f"postgresql://someone:{secret}@127.0.0.1:{closed_port()}/runs"
    with pytest.raises(StoreError) as error:
        await PostgresStore.open(refused)
    assert "someone:***@127.0.0.1" in str(error.value)
    assert "refused" in str(error.value).lower()

    with pytest.raises(StoreError, match="not a PostgreSQL URL") as error:
        await PostgresStore.open(f"postgresql://someone:{secret}@127.0.0.1/runs?bogus=1")
    with pytest.raises(StoreError, match="not a PostgreSQL URL") as quoted:
        await PostgresStore.open(f"host=127.0.0.1 password=left {secret} dbname=runs")
    assert secret not in str(quoted.value)  # libpq quotes the word it could not parse

    wrong = postgres.url(user=SECRET_USER, password=f"not-{secret}")
    with pytest.raises(StoreError, match="password authentication failed") as wrong_error:
        await PostgresStore.open(wrong)

    with pytest.raises(StoreError, match="does not exist") as missing:
        await PostgresStore.open(postgres.url("no_such_database"))

    dbname = postgres_url.rpartition("/")[2]
    right = postgres.url(dbname, user=SECRET_USER, password=secret)
    with pytest.raises(StoreError, match="CREATE SCHEMA orchestrator AUTHORIZATION") as denied:
        await PostgresStore.open(right)  # let in, but may not create the store's schema
    for message in (str(error.value), str(wrong_error.value), str(missing.value)):
        assert secret not in message
    assert secret not in str(denied.value)
    postgres.psql(f"GRANT CREATE ON DATABASE {dbname} TO {SECRET_USER}")
    store = await PostgresStore.open(right)
    assert store.url == f"postgresql://{SECRET_USER}:***@127.0.0.1:{postgres.port}/{dbname}"
    await store.aclose()


def test_passwords_are_redacted_from_urls_and_connection_strings() -> None:
    assert redact("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgres://h/db?user=u&password=pw") == "postgres://h/db?user=u&password=***"
    assert redact("host=h password='a b' dbname=d") == "host=h password=*** dbname=d"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://u:pw@[::1/db") == "postgresql://u:***@[::1/db"  # unparsable
    assert redact("postgresql://u:p/a@s?s#@h/db") == "postgresql://u:***@h/db"  # not encoded
    assert redact("postgresql://h/db?password=a&b=c") == "postgresql://h/db?password=***&b=c"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"  # the rest as it was


@pytest.mark.parametrize("schema", ["Runs", "a-b", "x; DROP TABLE runs", ""])
async def test_a_schema_is_a_plain_identifier(schema: str) -> None:
    with pytest.raises(ValueError, match="lower-case identifier"):
        await PostgresStore.open("postgresql://h/db", schema=schema)


async def test_bounds_are_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await PostgresStore.open("postgresql://h/db", max_queued=0)


async def test_without_the_postgres_extra_it_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # as if it were not installed
    with pytest.raises(StoreError, match=r"pip install 'tiered-orchestrator\[postgres\]'"):
        await PostgresStore.open("postgresql://h/db")


async def test_a_run_is_read_while_another_process_writes_it(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url)
    other = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        await Engine(TestModel("ok"), listeners=[StoreListener(store)]).run(PLAN, run_id="done")
        # another process in the middle of writing the run: its row locked, not committed
        await other.execute("UPDATE orchestrator.runs SET status = 'x' WHERE run_id = 'done'")
        with anyio.fail_after(3):  # reads never wait for writers
            stored = await store.load_run("done")
            [summary] = await store.list_runs()
    finally:
        await other.rollback()
        await other.close()
        await store.aclose()
    assert stored.summary.status == summary.status == "succeeded"


async def until_waiting_for_the_lock(blocker: psycopg.AsyncConnection[Any]) -> None:
    """Return once the server has a statement waiting for the lock ``blocker`` holds.

    Asked of the server itself (psycopg's waits wake up every 0.1 s, so
    ``anyio.wait_all_tasks_blocked`` may never see every task blocked at once).
    """
    query = (
        "SELECT count(*) FROM pg_locks"
        " WHERE NOT granted AND relation = 'orchestrator.attempts'::regclass"
    )
    with anyio.fail_after(10):
        while True:
            row = await (await blocker.execute(query)).fetchone()
            if row is not None and row[0] > 0:
                return


async def test_calls_are_bounded_and_a_cancelled_writer_still_writes(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, max_queued=1)
    blocker = await psycopg.AsyncConnection.connect(postgres_url)
    attempt = Attempt(number=1, tier="haiku", model="m", started_at=STARTED)
    outcomes: list[str] = []
    try:
        await store.start_run("r", PLAN, STARTED)
        await blocker.execute("LOCK TABLE orchestrator.attempts IN EXCLUSIVE MODE")
        assert not store.congested
        writer, reader = anyio.CancelScope(), anyio.CancelScope()

        async def write() -> None:
            with writer:
                await store.record_attempt("r", "t", attempt)
                outcomes.append("written")

        async def read() -> None:
            with reader:
                await store.list_runs()
                outcomes.append("read")

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(write)
                await until_waiting_for_the_lock(blocker)
                assert store.congested  # the one call in flight waits on the lock
                group.start_soon(read)  # no room: it waits before anything of it starts
                await anyio.lowlevel.checkpoint()
                assert store._room.statistics().tasks_waiting == 1
                reader.cancel()
                writer.cancel()  # once a write has started, it is made anyway
                await blocker.commit()  # the lock goes: the write goes through
        stored = await store.load_run("r")
    finally:
        await blocker.close()
        await store.aclose()
    assert outcomes == ["written"]
    assert [a.number for a in stored.attempts["t"]] == [1]
    assert not store.congested


async def test_a_failing_write_fails_alone_and_a_closed_store_refuses_calls(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url)
    attempt = Attempt(number=1, tier="haiku", model="m", started_at=STARTED)
    with pytest.raises(StoreError, match="foreign key"):
        await store.record_attempt("no such run", "t", attempt)
    await store.start_run("r", PLAN, STARTED)
    await store.record_attempt("r", "t", attempt)
    await store.aclose()
    with pytest.raises(StoreError, match="is closed"):
        await store.list_runs()


async def test_spend_is_summed_exactly_in_flight_calls_at_their_worst_case(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url)
    try:
        await store.start_run("r", PLAN, STARTED)
        for number in (1, 2):
            done = Attempt(
                number=number, tier="haiku", model="m", started_at=STARTED,
                finished_at=STARTED, cost_usd=Decimal("0.1"),
            )  # fmt: skip
            await store.record_attempt("r", "t", done)
        running = Attempt(
            number=3, tier="haiku", model="m", started_at=STARTED, cost_usd=Decimal("0.1"),
            in_flight_usd=Decimal("0.000000000000000001"),
        )  # fmt: skip
        await store.record_attempt("r", "t", running)
        [summary] = await store.list_runs()
        stored = await store.load_run("r")
    finally:
        await store.aclose()
    expected = Decimal("0.300000000000000001")  # to the last digit: no float in between
    assert summary.cost_usd == stored.summary.cost_usd == expected


def test_orchestrator_imports_without_the_postgres_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
        "import orchestrator, orchestrator.cli, orchestrator.store\n"
        "assert orchestrator.store.PostgresStore.__name__ == 'PostgresStore'"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_a_revised_plan_replaces_the_stored_one(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url)
    revised = Plan(goal="g", tasks=[Task(id="t", instruction="x"), Task(id="u", instruction="y")])
    try:
        await store.start_run("r", PLAN, STARTED)
        await store.revise_plan("r", revised)
        stored = await store.load_run("r")
        await store.start_run("r", PLAN, STARTED)  # resumed: it keeps the revision
        resumed = await store.load_run("r")
    finally:
        await store.aclose()
    assert stored.plan == resumed.plan == revised


@pytest.mark.parametrize("bad", [False, True])
async def test_writes_that_queue_up_are_committed_together_and_a_bad_one_fails_alone(
    postgres_url: str, bad: bool
) -> None:
    store = await PostgresStore.open(postgres_url)
    blocker = await psycopg.AsyncConnection.connect(postgres_url)
    outcomes: dict[int, str] = {}

    def attempt(number: int, model: str = "m") -> Attempt:
        return Attempt(number=number, tier="haiku", model=model, started_at=STARTED)

    async def write(number: int, run_id: str = "r", model: str = "m") -> None:
        try:
            await store.record_attempt(run_id, "t", attempt(number, model))
            outcomes[number] = "written"
        except StoreError as exc:
            outcomes[number] = str(exc)

    try:
        await store.start_run("r", PLAN, STARTED)
        await blocker.execute("LOCK TABLE orchestrator.attempts IN EXCLUSIVE MODE")
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(write, 0)  # in flight, waiting for the lock
                await until_waiting_for_the_lock(blocker)
                for number in range(1, 9):  # these queue up for the next batch
                    group.start_soon(write, number)
                group.start_soon(write, 9, "no such run" if bad else "r")
                group.start_soon(write, 3, "r", "m-again")  # the same attempt, given again
                await anyio.lowlevel.checkpoint()
                await blocker.commit()
        rows = await (
            await blocker.execute("SELECT number, xmin::text, body FROM orchestrator.attempts")
        ).fetchall()
        await blocker.commit()
    finally:
        await blocker.close()
        await store.aclose()
    written = {number: (xmin, body) for number, xmin, body in rows}
    assert sorted(written) == list(range(9 if bad else 10))
    assert written[3][1]["model"] == "m-again"  # written once, as last given
    transactions = {xmin for number, (xmin, _) in written.items() if number}
    if bad:
        assert "foreign key" in outcomes[9]  # it failed alone: the others were written
        assert all(outcomes[n] == "written" for n in range(9))
        assert len(transactions) == 8  # one by one, once their batch had failed
    else:
        assert set(outcomes.values()) == {"written"}
        assert len(transactions) == 1  # the nine that queued up: one transaction
        assert written[0][0] not in transactions
