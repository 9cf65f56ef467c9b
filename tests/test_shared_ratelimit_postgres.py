"""Rate limits shared through PostgreSQL (``PostgresRateLimits``), on a real server: the
rules of tests/test_shared_ratelimit.py on a fake clock, then two real processes keeping
to one tier's rate together, and the CLI keeping its limits in the ``--store`` database."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import psycopg
import pytest
from pg_server import PostgresServer
from test_shared_ratelimit import SCOPE, FakeTime, two_processes

from orchestrator.cli import main
from orchestrator.exceptions import UserError
from orchestrator.models.shared_ratelimit import SharedRateLimiter, scope_key
from orchestrator.store.postgres_ratelimit import PostgresRateLimits

pytestmark = pytest.mark.anyio

_SCHEMAS = itertools.count()
Processes = Callable[..., Awaitable[list[SharedRateLimiter]]]


@pytest.fixture(scope="session")
def limits_database(postgres: PostgresServer) -> str:
    return postgres.create_database("ratelimits")


@pytest.fixture
async def processes(limits_database: str) -> AsyncIterator[Processes]:
    """Limiters of separate handles ("processes") on one schema of the test server."""
    schema = f"limits_{next(_SCHEMAS)}"
    async with AsyncExitStack() as stack:

        async def make(
            count: int, time: FakeTime, rpm: int | None = None, *, where: str | None = None
        ) -> list[SharedRateLimiter]:
            made = []
            for _ in range(count):
                state = PostgresRateLimits(
                    limits_database, schema=where or schema, clock=time.clock, sleep=time.sleep
                )
                await state.open()
                stack.push_async_callback(state.aclose)
                made.append(state.limiter(SCOPE, rpm, None))
            return made

        yield make


async def test_processes_on_one_database_share_the_requests_budget(processes: Processes) -> None:
    time = FakeTime()
    first, second = await processes(2, time, rpm=6)
    for _ in range(3):
        await first.acquire(10)
        await second.acquire(10)
    assert time.sleeps == []  # six together: the full bucket
    await second.acquire(10)
    assert time.sleeps == [pytest.approx(10.0)]  # the seventh waits for one request's refill
    other_schema = await processes(1, time, rpm=6, where=f"limits_other_{next(_SCHEMAS)}")
    await other_schema[0].acquire(1)  # another store: its own buckets
    assert len(time.sleeps) == 1


async def test_waiters_queue_in_order_and_each_sleeps_once(processes: Processes) -> None:
    time = FakeTime(moves=False)
    a, b = await processes(2, time, rpm=6)
    for _ in range(6):
        await a.acquire(1)
    await a.acquire(1)
    await b.acquire(1)
    await a.acquire(1)
    assert time.sleeps == [pytest.approx(10.0), pytest.approx(20.0), pytest.approx(30.0)]


async def test_a_retry_after_holds_every_process(processes: Processes) -> None:
    time = FakeTime()
    a, b = await processes(2, time)
    await a.hold(7.5)
    await b.acquire(1)
    assert time.sleeps == [pytest.approx(7.5)]
    await a.hold(2)
    await b.hold(1)  # a shorter pause never shortens a longer one
    await a.acquire(1)
    assert time.sleeps[-1] == pytest.approx(2)


async def test_a_call_cancelled_while_waiting_gives_its_turn_back(processes: Processes) -> None:
    time = FakeTime(moves=False)
    a, b = await processes(2, time, rpm=6)
    for _ in range(6):
        await a.acquire(1)
    asleep = anyio.Event()

    async def sleep_until_cancelled(seconds: float) -> None:
        time.sleeps.append(seconds)
        asleep.set()
        await anyio.sleep_forever()

    a.file.sleep = sleep_until_cancelled
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.acquire, 1)
        await asleep.wait()
        tg.cancel_scope.cancel()
    await b.acquire(1)
    assert time.sleeps == [pytest.approx(10.0), pytest.approx(10.0)]  # not 20: a gave it back


async def test_an_unreachable_database_or_an_unopened_state_is_a_user_error() -> None:
    state = PostgresRateLimits("postgresql://me:hunter2@127.0.0.1:1/db")
    with pytest.raises(UserError, match=r"me:\*\*\*@127.0.0.1") as error:
        await state.open()
    assert "hunter2" not in str(error.value)
    with pytest.raises(UserError, match="not open"):
        await state.pause_left(SCOPE)
    await state.aclose()  # nothing to close


async def test_two_processes_together_keep_to_the_tiers_rate(limits_database: str) -> None:
    """As tests/test_shared_ratelimit.py's, through one database instead of one home: 60
    requests a minute; 31 and 30 at once: 60 go at once, the 61st waits for the refill."""
    state = "PostgresRateLimits(where, schema='two_processes', clock=clock, sleep=sleep)"
    records, slept, waits = await two_processes(state, limits_database)
    assert len(records) == 61
    assert waits == 1  # one call waited: the 61st
    assert slept == [pytest.approx(1.0)]


def test_the_cli_keeps_its_rate_limits_in_the_store_database(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text("[tiers.haiku]\nrequests_per_minute = 600\n")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "tasks": [{"id": "t", "instruction": "Say hi."}]}))
    home = tmp_path / "home"
    args = ["--offline", "--plan", str(plan), "--tiers", str(tiers), "--home", str(home)]
    assert main(["run", *args, "--store", postgres_url, "--json"]) == 0
    capsys.readouterr()
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT scope, name FROM orchestrator.ratelimit_buckets").fetchall()
    assert (scope_key("haiku", "claude-haiku-5-5", "offline-simulator"), "requests") in rows
    assert not (home / "ratelimits.db").exists()  # not in the home
