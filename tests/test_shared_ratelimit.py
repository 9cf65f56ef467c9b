"""Rate limits shared through a file: on a fake clock, then by two real processes."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from time import time as wall_clock
from typing import Any

import anyio
import pytest

from orchestrator import (
    Budget,
    Message,
    ModelAPIError,
    ModelRequest,
    UserError,
    default_ladder,
)
from orchestrator.budget import Meter
from orchestrator.cli import main
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.retry import RetryPolicy
from orchestrator.models.shared_ratelimit import (
    FILE_NAME,
    RateLimitFile,
    SharedRateLimiter,
    scope_key,
)
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

SCOPE = scope_key("haiku", "claude-haiku-5-5", "http://127.0.0.1:1")


class FakeTime:
    """A wall clock that moves only when told; sleeps are noted, and move it if ``moves``."""

    def __init__(self, *, moves: bool = True) -> None:
        self.now = 1_000_000.0
        self.moves = moves
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.moves:
            self.now += seconds


def process(home: Path, time: FakeTime) -> RateLimitFile:
    """What one process sees: its own handle on the home's file."""
    return RateLimitFile(home, clock=time.clock, sleep=time.sleep)


def limiter(
    file: RateLimitFile, scope: str = SCOPE, rpm: int | None = None, tpm: int | None = None
) -> SharedRateLimiter:
    return file.limiter(scope, rpm, tpm)


async def test_two_processes_on_one_home_share_the_requests_budget(tmp_path: Path) -> None:
    time = FakeTime()
    first, second = (limiter(process(tmp_path, time), rpm=6) for _ in range(2))
    for _ in range(3):
        await first.acquire(10)
        await second.acquire(10)
    assert time.sleeps == []  # six together: the full bucket
    await second.acquire(10)
    assert time.sleeps == [pytest.approx(10.0)]  # the seventh waits for one request's refill
    assert (first.waits, second.waits) == (0, 1)


async def test_waiters_queue_in_order_and_each_sleeps_once(tmp_path: Path) -> None:
    time = FakeTime(moves=False)  # nobody else takes a turn while they sleep
    a, b = (limiter(process(tmp_path, time), rpm=6) for _ in range(2))
    for _ in range(6):
        await a.acquire(1)
    await a.acquire(1)
    await b.acquire(1)
    await a.acquire(1)
    # each asked once and slept once, exactly until its turn: 10 s, 20 s, 30 s
    assert time.sleeps == [pytest.approx(10.0), pytest.approx(20.0), pytest.approx(30.0)]


async def test_tokens_are_shared_and_a_huge_call_still_runs(tmp_path: Path) -> None:
    time = FakeTime()
    a, b = (limiter(process(tmp_path, time), tpm=6000) for _ in range(2))
    await a.acquire(6000)
    await b.acquire(500)
    assert sum(time.sleeps) == pytest.approx(5.0)  # 100 tokens a second
    await b.acquire(50_000)  # more than a minute's worth: waits one full minute, then runs
    assert time.sleeps[-1] == pytest.approx(60.0)


async def test_other_endpoints_models_and_homes_do_not_share(tmp_path: Path) -> None:
    time = FakeTime()
    home = process(tmp_path / "home", time)
    scopes = [
        SCOPE,
        scope_key("haiku", "claude-haiku-5-5", "http://127.0.0.1:2"),
        scope_key("haiku", "claude-haiku-6", "http://127.0.0.1:1"),
        scope_key("fast", "claude-haiku-5-5", "http://127.0.0.1:1"),
    ]
    for scope in scopes:
        for _ in range(6):
            await limiter(home, scope, rpm=6).acquire(1)
    for _ in range(6):
        await limiter(process(tmp_path / "other-home", time), rpm=6).acquire(1)
    assert time.sleeps == []


async def test_a_retry_after_holds_every_process(tmp_path: Path) -> None:
    time = FakeTime()
    a, b = (limiter(process(tmp_path, time)) for _ in range(2))  # no limits: the pause holds
    await a.hold(7.5)
    await b.acquire(1)
    assert time.sleeps == [pytest.approx(7.5)]
    await a.hold(2)
    await b.hold(1)  # a shorter pause never shortens a longer one
    await a.acquire(1)
    assert time.sleeps[-1] == pytest.approx(2)


async def test_a_pause_that_arrives_during_a_wait_extends_it(tmp_path: Path) -> None:
    time = FakeTime()
    other = process(tmp_path, time)
    waiting = limiter(process(tmp_path, time), rpm=6)
    for _ in range(6):
        await waiting.acquire(1)

    async def sleep_then_429(seconds: float) -> None:
        await time.sleep(seconds)
        if len(time.sleeps) == 1:  # while the first sleep lasts, another process gets a 429
            other.pause(SCOPE, 30)

    waiting.file.sleep = sleep_then_429
    await waiting.acquire(1)
    assert time.sleeps == [pytest.approx(10.0), pytest.approx(30.0)]


async def test_a_call_cancelled_while_waiting_gives_its_turn_back(tmp_path: Path) -> None:
    time = FakeTime(moves=False)
    a, b = (limiter(process(tmp_path, time), rpm=6) for _ in range(2))
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


async def test_a_clock_that_steps_back_refills_nothing(tmp_path: Path) -> None:
    time = FakeTime()
    shared = limiter(process(tmp_path, time), rpm=6)
    for _ in range(6):
        await shared.acquire(1)
    time.now -= 3600
    await shared.acquire(1)
    assert time.sleeps == [pytest.approx(10.0)]


async def test_the_state_is_in_the_home_in_wall_clock_time(tmp_path: Path) -> None:
    time = FakeTime()
    shared = limiter(process(tmp_path, time), rpm=6)
    await shared.acquire(1)
    await shared.hold(5)
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        buckets = db.execute("SELECT scope, name, level, updated FROM buckets").fetchall()
        pauses = db.execute("SELECT scope, paused_until FROM pauses").fetchall()
    assert buckets == [(SCOPE, "requests", 5.0, time.now)]
    assert pauses == [(SCOPE, time.now + 5)]


async def test_an_unusable_home_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(UserError, match=r"cannot use the shared rate-limit file .*file"):
        await RateLimitFile(not_a_dir).open()
    garbage = tmp_path / "home"
    garbage.mkdir()
    (garbage / FILE_NAME).write_bytes(b"not a database" * 100)
    with pytest.raises(UserError, match="may be deleted"):
        await RateLimitFile(garbage).open()


async def test_a_home_another_process_is_creating_is_opened_once_it_is_made(
    tmp_path: Path,
) -> None:
    """Another process is creating the file (its first transaction is open): switching the
    file to WAL then fails at once, without waiting ("database is locked"), which made one of
    two processes starting on a new home fail. It now waits for the other to finish."""
    other = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE IF NOT EXISTS pauses (scope TEXT PRIMARY KEY, paused_until REAL)")

    committed = []

    class OpenedMeanwhile(RateLimitFile):
        def _transaction(self, *, write: bool = True) -> Any:
            if other.in_transaction:  # after the switch to WAL was tried: the other commits
                other.execute("COMMIT")
                committed.append(True)
            return super()._transaction(write=write)

    time = FakeTime()
    opened = OpenedMeanwhile(tmp_path, clock=time.clock, sleep=time.sleep)
    try:
        await opened.limiter(SCOPE, 6, None).acquire(1)
    finally:
        other.close()
    assert committed == [True]
    assert time.sleeps == []
    await process(tmp_path, time).limiter(SCOPE, 6, None).acquire(1)  # and a later process


# -- two real processes -------------------------------------------------------------------

# Runs the real client against the simulator. Once warmed up (one call on an unlimited copy
# of the tier: the SDK's connection is open, the shared state is ready) it says "ready",
# sends its requests when the test writes a line, then prints how long each of its calls
# that waited for the limit slept, and how many waited. Every process reads the same
# instant from its clock, the one the test passes: the bucket refills nothing while the
# two fill it, however slowly a loaded machine lets them (on the wall clock, a burst that
# took more than one request's refill, 1 s, let the 61st go at once: the test flaked).
CLIENT = """
import sys, anyio
from pathlib import Path
from orchestrator import Budget, Message, ModelRequest, default_ladder
from orchestrator.budget import Meter
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.shared_ratelimit import RateLimitFile
from orchestrator.store.postgres_ratelimit import PostgresRateLimits

base_url, where, count, rpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
now, slept = float(sys.argv[5]), []
warm = default_ladder().get("haiku").model_copy(update={"name": "warm-up"})
tier = default_ladder().get("haiku").model_copy(update={"requests_per_minute": rpm})

def clock():
    return now

async def sleep(seconds):
    slept.append(seconds)
    await anyio.sleep(seconds)

async def one(client, tier, i):
    request = ModelRequest(tier=tier, messages=[Message(role="user", content=f"Item {i}?")],
                           max_output_tokens=64)
    await client.complete(request, Meter(tier, Budget()))

async def main():
    state = STATE
    async with AnthropicClient(base_url=base_url, api_key="t", shared_rate_limits=state) as client:
        await one(client, warm, -1)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, client, tier, i)
        print("slept", *slept)
        print("waits", client.rate_limit_waits, flush=True)

anyio.run(main)
"""
HOME_STATE = "RateLimitFile(Path(where), clock=clock, sleep=sleep)"


async def _lines(process: Any) -> list[str]:
    text = b""
    async for chunk in process.stdout:
        text += chunk
        if b"ready" in text:
            break
    return text.decode().split()


async def two_processes(state: str, where: str) -> tuple[list[Any], list[float], int]:
    """Two clients on the shared ``state`` (Python, over ``where``) ask for 31 and 30 calls
    at once, at 60 a minute: the simulator's records, what the waiters slept, waits."""
    client = CLIENT.replace("STATE", state)
    with anyio.fail_after(60):
        async with serve(SimConfig(time_scale=0)) as sim:
            now = str(wall_clock())
            argv = [sys.executable, "-c", client, sim.base_url, where]
            processes = [await anyio.open_process([*argv, str(n), "60", now]) for n in (31, 30)]
            try:
                for p in processes:  # both set up before either sends: a fair start
                    assert await _lines(p) == ["ready"]
                warm_ups = len(sim.requests)
                for p in processes:
                    assert p.stdin is not None
                    await p.stdin.send(b"go\n")
                outputs = [await _rest(p) for p in processes]
            finally:
                for p in processes:
                    await p.aclose()
            records = sim.requests[warm_ups:]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert warm_ups == 2
    slept = [float(word) for out in outputs for word in out.split("waits")[0].split()[1:]]
    return records, slept, sum(int(out.split()[-1]) for out in outputs)


async def test_two_processes_together_keep_to_the_tiers_rate(tmp_path: Path) -> None:
    """60 requests a minute, a full bucket of 60; two processes ask for 31 and 30 at once:
    together they send 60 at once, and the 61st only after one request's refill (1 s)."""
    records, slept, waits = await two_processes(HOME_STATE, str(tmp_path / "home"))
    assert len(records) == 61  # counted by the simulator
    assert waits == 1  # exactly one call, in either process, waited: the 61st
    assert slept == [pytest.approx(1.0)]


async def _rest(process: Any) -> str:
    text = b""
    async for chunk in process.stdout:
        text += chunk
    await process.wait()
    return text.decode()


def test_the_cli_keeps_its_rate_limits_in_the_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text("[tiers.haiku]\nrequests_per_minute = 600\n")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "tasks": [{"id": "t", "instruction": "Say hi."}]}))
    home = tmp_path / "home"
    args = ["--offline", "--plan", str(plan), "--tiers", str(tiers), "--home", str(home)]
    assert main(["run", *args, "--json"]) == 0
    capsys.readouterr()
    rows = list(_bucket_rows(home / FILE_NAME))
    # keyed by the tier, its model and one label for every offline run's simulator
    assert (scope_key("haiku", "claude-haiku-5-5", "offline-simulator"), "requests") in rows


def _bucket_rows(path: Path) -> Iterator[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        yield from db.execute("SELECT scope, name FROM buckets")


async def test_a_429_pauses_the_tier_for_every_client_on_the_home(tmp_path: Path) -> None:
    config = SimConfig(time_scale=1, fault_rate=1.0, fault_kinds={"rate_limit": 1.0})
    policy = RetryPolicy(max_retries=0)
    tier = default_ladder().get("haiku")
    request = ModelRequest(
        tier=tier, messages=[Message(role="user", content="hi")], max_output_tokens=64
    )
    with anyio.fail_after(10):
        async with (
            serve(config) as sim,
            AnthropicClient(
                base_url=sim.base_url, api_key="sk-test", retry=policy, shared_rate_limits=tmp_path
            ) as client,
        ):
            with pytest.raises(ModelAPIError, match="rate_limit_error"):
                await client.complete(request, Meter(tier, Budget()))
            scope = scope_key("haiku", tier.model, sim.base_url)
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        pauses = dict(db.execute("SELECT scope, paused_until FROM pauses").fetchall())
    assert list(pauses) == [scope]
    assert 0 < pauses[scope] - wall_clock() <= 1.0  # retry-after: 1 s, in wall-clock time
