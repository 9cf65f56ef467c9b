"""One set of per-tier limits for every driver sharing a store: real CLI processes.

Six ``orchestrator run`` processes at once against one local Messages-API server: three
record their runs in one PostgreSQL database (``--store``, each with a home of its own, as
if on three machines) and so share their rate limits there; three share one home (its
``runs.db`` and ``ratelimits.db``). Each driver alone stays within the tiers' limits;
each set of three together asks for more than a minute's worth at once. From the server's
side (when each request arrived, for which model, from which driver, and the input tokens
the client's limiter counted for it), no stretch of time lets more through than the
tier's bucket allows, for each set as a whole; the six together, which share nothing
across the two sets, let through about twice that: the check fails on traffic that is not
limited as one (the control).

The limits are real per-minute buckets on the wall clock, the CLI's own: a bucket of 60
requests refills one a second, so the three requests over it cost about three seconds.
The drivers read their tiers files from FIFOs, so all of them have started before any of them
asks for anything (tests/cluster.py); nothing sleeps.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import anyio
import pytest
from cluster import Arrival, Drivers, driver_env, drivers, over_the_limit, recording_sim

from orchestrator.store.sqlite_schema import APP_MARKER, SCHEMA_VERSION, StoreError, connect
from orchestrator.tiers import default_ladder
from orchestrator_sim import SimConfig

pytestmark = pytest.mark.anyio

RPM = 60
"""The haiku tier's requests per minute: each set's 63 requests are 3 over the bucket."""
TPM = 60_000
"""The sonnet tier's input tokens per minute."""
SMALL_TASKS = 21
"""Haiku tasks per driver: 21 alone fit the bucket of 60, three drivers' 63 do not."""
BIG_TOKENS = 21_000
"""The size of each driver's one sonnet task: 35 % of the bucket, three of them 105 %."""
HAIKU, SONNET = (default_ladder().get(name).model for name in ("haiku", "sonnet"))
TIERS = f"[tiers.haiku]\nrequests_per_minute = {RPM}\n[tiers.sonnet]\ntokens_per_minute = {TPM}\n"


def _plan(directory: Path, driver: str) -> list[str]:
    check = [{"kind": "non_empty"}]
    tasks = [
        {"id": f"t{i:02d}", "instruction": f"Item {driver}-t{i:02d}: [difficulty=1] Name a prime.",
         "max_output_tokens": 16, "verify": check}
        for i in range(SMALL_TASKS)
    ]  # fmt: skip
    filler = "lorem ipsum " * (BIG_TOKENS * 4 // 12)  # ~4 bytes a token, as the limiter counts
    tasks.append(
        {"id": "big", "instruction": f"Item {driver}-big: [difficulty=1] Summarise: {filler}",
         "needs": {"reasoning": 2}, "max_output_tokens": 16, "verify": check}
    )  # fmt: skip
    path = directory / f"plan-{driver}.json"
    path.write_text(json.dumps({"goal": f"limits shared by {driver}", "tasks": tasks}))
    return ["--plan", str(path)]


def _held(arrivals: list[Arrival], per_minute: int, amount: str) -> float:
    """What ``arrivals`` take of a bucket of ``per_minute``, as the limiter counts it."""
    if amount == "requests":
        return float(len(arrivals))
    return float(sum(min(a.tokens, per_minute) for a in arrivals))


async def test_drivers_sharing_a_store_keep_to_each_tiers_limits_together(
    postgres_url: str, tmp_path: Path
) -> None:
    sets = {"postgres": ["p1", "p2", "p3"], "home": ["h1", "h2", "h3"]}
    shared_home = tmp_path / "shared-home"  # new: its three drivers create its store at once
    async with (
        recording_sim(SimConfig(seed=3, time_scale=0)) as sim,
        drivers(tmp_path, driver_env(sim.base_url)) as group,
    ):
        for name in sets["postgres"]:  # a home each: other machines, one database
            home = ["--home", str(tmp_path / f"home-{name}"), "--store", postgres_url]
            group.add(name, ["run", *_plan(tmp_path, name), *home], TIERS)
        for name in sets["home"]:
            group.add(name, ["run", *_plan(tmp_path, name), "--home", str(shared_home)], TIERS)
        await _run(group)
    for driver in group.drivers:
        assert driver.process.returncode == 0, driver.stderr.decode()[-3000:]
        assert driver.result["status"] == "succeeded"
    for name in sets["postgres"]:  # their limits were in the database, not in their homes
        assert not (tmp_path / f"home-{name}" / "ratelimits.db").exists()
    assert (shared_home / "ratelimits.db").exists()

    limits = [(HAIKU, RPM, "requests"), (SONNET, TPM, "tokens")]
    for names in sets.values():
        assert {a.driver for a in sim.of(HAIKU, names)} == set(names)
        assert len(sim.of(HAIKU, names)) == len(names) * SMALL_TASKS
        for model, per_minute, amount in limits:
            arrivals = sim.of(model, names)
            # asked for more than the bucket and a second's refill: the limit had to bind
            assert _held(arrivals, per_minute, amount) > per_minute * 61 / 60, (names, model)
            assert over_the_limit(arrivals, per_minute, amount) == [], (names, model)
            for name in names:  # one driver alone never needed to wait
                assert _held(sim.of(model, [name]), per_minute, amount) <= per_minute
    # The control: the two sets share nothing, and together they break both limits.
    for model, per_minute, amount in limits:
        assert over_the_limit(sim.of(model), per_minute, amount), model


async def _run(group: Drivers) -> None:
    with anyio.fail_after(90):
        await group.start()
        await group.release()
        await group.wait()


def test_drivers_opening_one_new_home_at_once_all_get_its_store(tmp_path: Path) -> None:
    """Openers of one new ``runs.db`` at once (threads: the race is in the file, not the
    process) each get the store, whole and in WAL mode. They used to race (store/
    sqlite_schema.py): the losers failed with 'UNIQUE constraint failed: meta.key' or
    'database is locked' (exit 2 from the CLI). The test above lets its three drivers on
    one home create its store together."""
    for home in range(5):  # five new homes: chance does not hide the race
        path = tmp_path / f"home-{home}" / "runs.db"
        assert _open_at_once(path) == []
        db = connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert dict(db.execute("SELECT key, value FROM meta")) == {
                "app": APP_MARKER, "schema_version": str(SCHEMA_VERSION),
            }  # fmt: skip
        finally:
            db.close()


def _open_at_once(path: Path, openers: int = 3) -> list[str]:
    """Open a new store from ``openers`` threads released together; their errors."""
    barrier = threading.Barrier(openers)
    errors: list[str] = []

    def open_it() -> None:
        barrier.wait()
        try:
            db = connect(path)
            try:  # each gets a store it can write at once
                with db:
                    db.execute("SELECT count(*) FROM runs").fetchone()
            finally:
                db.close()
        except StoreError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=open_it) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors
