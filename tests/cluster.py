"""Several real ``orchestrator`` driver processes against one local Messages-API server.

What the tests of limits and budgets across processes share (tests/test_cluster_limits.py):

- :func:`recording_sim`: the simulator (``orchestrator_sim``) behind a handler that notes,
  as each ``POST /v1/messages`` arrives, when it arrived, which model it asks for, which
  driver sent it (the ``Item <driver>-<task>:`` its instruction starts with), and the
  input tokens the client's rate limiter counted for it (the client's own estimate, bytes
  of the prompt's JSON parts over 4, recomputed from the body the server received);
- :class:`Drivers`: CLI processes that each read their tiers file (``--tiers``) from a
  FIFO, so that all of them have started (Python, the SDK, their modules: seconds each)
  before any of them opens a store or sends anything: :meth:`Drivers.release` opens
  every FIFO for writing, which returns only once that process has opened it for
  reading, then hands each its tiers;
- :func:`over_the_limit`: the stretches of arrivals that let more through than a
  per-minute bucket allows.

Nothing sleeps: the tests wait on FIFOs opening and processes exiting, each bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from orchestrator.models.anthropic_request import prompt_bytes
from orchestrator.wire import SIMULATED_HEADER
from orchestrator_sim import SimConfig
from orchestrator_sim.app import SimApp
from orchestrator_sim.http import HttpRequest, HttpResponse, bound_port, listen, serve_listener
from orchestrator_sim.reqlog import RequestLog

CLI = [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())"]
TASK_MARK = re.compile(r"Item ([a-z0-9]+)-([a-z0-9]+):")
REFILL_SLACK_S = 1.0
"""Arrivals lag the limiter's decisions by a request's trip (and, on a loaded machine, by a
scheduling delay): a stretch of arrivals may hold what a limiter let go up to this much
earlier, so its allowance counts this much more refill."""


@dataclass(frozen=True)
class Arrival:
    """One ``POST /v1/messages`` as the server received it."""

    at: float
    """Wall-clock seconds when the request was read."""
    model: str
    driver: str
    """The driver whose plan the request is for (``Item <driver>-<task>:``)."""
    task: str
    """The task it is for."""
    tokens: int
    """The input tokens the client's limiter counted for it (its estimate)."""


@dataclass
class RecordingSim:
    """A running simulator and what arrived at it."""

    base_url: str
    arrivals: list[Arrival] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    """The simulator's own records (usage answered, per request)."""

    _waiting: list[tuple[int, anyio.Event]] = field(default_factory=list)

    def arrived(self, count: int) -> anyio.Event:
        """Set once ``count`` model calls have arrived in all."""
        event = anyio.Event()
        self._waiting.append((count, event))
        self._note()
        return event

    def arrive(self, arrival: Arrival) -> None:
        """Note one model call (the server's handler calls it as each arrives)."""
        self.arrivals.append(arrival)
        self._note()

    def _note(self) -> None:
        for count, event in self._waiting:
            if len(self.arrivals) >= count:
                event.set()

    def of(self, model: str, drivers: Iterable[str] | None = None) -> list[Arrival]:
        """The arrivals for ``model`` (from ``drivers`` only, if given), oldest first."""
        chosen = None if drivers is None else set(drivers)
        picked = [a for a in self.arrivals if a.model == model]
        if chosen is not None:
            picked = [a for a in picked if a.driver in chosen]
        return sorted(picked, key=lambda a: a.at)


def _arrival(body: bytes) -> Arrival:
    call = json.loads(body)
    text = json.dumps(call["messages"])
    mark = TASK_MARK.search(text)
    return Arrival(
        at=time.time(),
        model=str(call.get("model")),
        driver=mark.group(1) if mark else "?",
        task=mark.group(2) if mark else "?",
        tokens=prompt_bytes(call) // 4,  # what the client's limiter takes (models/anthropic.py)
    )


@asynccontextmanager
async def recording_sim(config: SimConfig) -> AsyncIterator[RecordingSim]:
    """The simulator on a free loopback port, noting every model call as it arrives."""
    log = RequestLog(None)
    await log.open()
    listener = await listen("127.0.0.1", 0)
    app = SimApp(config, log, None, None)
    sim = RecordingSim(f"http://127.0.0.1:{bound_port(listener)}", requests=log.records)

    async def handle(request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path.rstrip("/") == "/v1/messages":
            sim.arrive(_arrival(request.body))
        return await app.handle(request)

    async def serve(*, task_status: Any) -> None:
        await serve_listener(
            listener, handle, max_body_bytes=config.max_body_bytes,
            error_headers=[(SIMULATED_HEADER, "true")], task_status=task_status,
        )  # fmt: skip

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve)
            try:
                yield sim
            finally:
                tg.cancel_scope.cancel()
    finally:
        await log.aclose()


def over_the_limit(
    arrivals: Sequence[Arrival], per_minute: float, amount: str = "requests"
) -> list[tuple[float, float, float]]:
    """Stretches ``[first, last]`` of ``arrivals`` holding more than a bucket lets through.

    A bucket of ``per_minute``, full at the start and refilled at ``per_minute / 60`` a
    second, lets at most ``per_minute + seconds * per_minute / 60`` go in any stretch of
    ``seconds`` (a call larger than the bucket counts as the whole bucket, as the limiter
    takes it); :data:`REFILL_SLACK_S` more refill covers arrivals lagging decisions.
    Returns ``(seconds, held, allowed)`` for every stretch over, worst first.
    """
    times = [a.at for a in arrivals]
    sizes = [1.0 if amount == "requests" else min(float(a.tokens), per_minute) for a in arrivals]
    over = []
    for i in range(len(times)):
        held = 0.0
        for j in range(i, len(times)):
            held += sizes[j]
            seconds = times[j] - times[i]
            allowed = per_minute + (seconds + REFILL_SLACK_S) * per_minute / 60
            if held > allowed:
                over.append((seconds, held, allowed))
    return sorted(over, key=lambda o: o[2] - o[1])


@dataclass
class Driver:
    """One CLI process, the FIFO it reads its tiers file from, and its output."""

    name: str
    argv: list[str]
    tiers: str
    fifo: Path
    process: Any = None
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def result(self) -> Any:
        return json.loads(self.stdout)


class Drivers:
    """CLI driver processes started at once, held at their tiers FIFOs until released.

    ``run`` and ``resume`` read ``--tiers`` first, once every module is imported and
    before they open a store or send anything.
    """

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)
        self.drivers: list[Driver] = []

    def add(self, name: str, command: Sequence[str], tiers: str = "") -> Driver:
        """``orchestrator COMMAND --json --tiers FIFO``; the FIFO hands it ``tiers``."""
        fifo = self.directory / f"tiers-{name}.toml"
        os.mkfifo(fifo)
        driver = Driver(name, [*CLI, *command, "--json", "--tiers", str(fifo)], tiers, fifo)
        self.drivers.append(driver)
        return driver

    async def start(self, *names: str) -> None:
        """Start every driver named (default: all) that has not started yet."""
        for driver in self.drivers:
            if driver.process is not None or (names and driver.name not in names):
                continue
            driver.process = await anyio.open_process(
                driver.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

    async def release(self, *names: str, timeout_s: float = 60.0) -> None:
        """Once every driver named (default: all) reads its FIFO, hand each its tiers."""
        chosen = [d for d in self.drivers if not names or d.name in names]
        handles = []
        try:
            with anyio.fail_after(timeout_s):
                for driver in chosen:  # returns once the driver opens it to read
                    handles.append(
                        await anyio.to_thread.run_sync(
                            _open_for_writing, driver.fifo, abandon_on_cancel=True
                        )
                    )
            for driver, handle in zip(chosen, handles, strict=True):
                await anyio.to_thread.run_sync(handle.write, driver.tiers.encode())
                handle.close()  # the driver reads to the end, then goes
        finally:
            for handle in handles:
                handle.close()

    async def wait(self, *names: str, timeout_s: float = 60.0) -> None:
        """The exit and output of every driver named (default: all), bounded."""
        with anyio.fail_after(timeout_s):
            async with anyio.create_task_group() as tg:
                for driver in self.drivers:
                    if not names or driver.name in names:
                        tg.start_soon(_collect, driver)

    async def aclose(self) -> None:
        """Kill what still runs; unblock a writer stuck on a FIFO nobody opened."""
        for driver in self.drivers:
            with contextlib.suppress(OSError):  # a reader that never came: let open() return
                os.close(os.open(driver.fifo, os.O_RDONLY | os.O_NONBLOCK))
            if driver.process is not None and driver.process.returncode is None:
                driver.process.kill()
            if driver.process is not None:
                with anyio.CancelScope(shield=True):
                    await driver.process.aclose()


def _open_for_writing(path: Path) -> Any:
    return path.open("wb")


async def _collect(driver: Driver) -> None:
    async def read(stream: Any, into: str) -> None:
        data = b""
        async for chunk in stream:
            data += chunk
        setattr(driver, into, data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, driver.process.stdout, "stdout")
        tg.start_soon(read, driver.process.stderr, "stderr")
    await driver.process.wait()


@asynccontextmanager
async def drivers(directory: Path, env: Mapping[str, str]) -> AsyncIterator[Drivers]:
    """:class:`Drivers`, every process killed and reaped on the way out."""
    group = Drivers(directory, env)
    try:
        yield group
    finally:
        await group.aclose()


def driver_env(base_url: str) -> dict[str, str]:
    """The CLI's online path, pointed at the local server; no store URL inherited."""
    env = {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "offline-test"}
    env.pop("ORCHESTRATOR_STORE", None)
    return env
