"""Public entry points: serve in-process (async), in a background thread (sync), or forever.

>>> async with serve(SimConfig(time_scale=0)) as server:          # doctest: +SKIP
...     client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="anything")
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from orchestrator.wire import SIMULATED_HEADER
from orchestrator_sim.app import SimApp
from orchestrator_sim.batches import BATCHES_PATH
from orchestrator_sim.brain import Brain
from orchestrator_sim.config import SimConfig
from orchestrator_sim.http import bound_port, listen, serve_listener
from orchestrator_sim.reqlog import RequestLog, RequestRecord

__all__ = ["SimServer", "ThreadedSimServer", "run_forever", "serve", "start_in_thread"]

_START_TIMEOUT_S = 10.0


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass(frozen=True)
class SimServer:
    """A running simulated server.

    Attributes:
        config: Its configuration.
        host: Address it listens on.
        port: Port it listens on.
        requests: Every request's record, in arrival order (live list).
    """

    config: SimConfig
    host: str
    port: int
    requests: list[RequestRecord] = field(repr=False)

    @property
    def base_url(self) -> str:
        """Base URL for the SDK, e.g. ``http://127.0.0.1:54321``."""
        return _url(self.host, self.port)


@asynccontextmanager
async def serve(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    brain: Brain | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[SimServer]:
    """Serve the simulated Messages API while the context is open.

    Args:
        config: Configuration (default: ``SimConfig()``).
        host: Address to listen on (keep it on loopback).
        port: Port; ``0`` picks a free one (see ``SimServer.port``).
        brain: What answers (default: the documented ``DefaultBrain``).
        clock: Seconds that Message Batches (wall clock since the epoch) and prompt-cache
            TTLs are timed by (default ``time.time`` for batches and ``time.monotonic``
            for the cache; tests pass one they advance by hand).

    Yields:
        The running server's handle.
    """
    config = config or SimConfig()
    log = RequestLog(config.request_log)
    await log.open()
    try:
        listener = await listen(host, port)
        app = SimApp(config, log, brain, clock)
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: _serve(listener, app, task_status))
            try:
                yield SimServer(config, host, bound_port(listener), log.records)
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller's own exception, raised in the ``async with`` body, comes back wrapped
        # by the server's task group: hand it back as it was raised.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await log.aclose()


async def _serve(listener: Any, app: SimApp, task_status: Any) -> None:
    await serve_listener(
        listener,
        app.handle,
        max_body_bytes=lambda path: _body_limit(app.config, path),
        error_headers=[(SIMULATED_HEADER, "true")],
        task_status=task_status,
    )


def _body_limit(config: SimConfig, path: str) -> int:
    """The Messages API's limit, or the Message Batches API's on ``POST`` to create one."""
    if path.rstrip("/") == BATCHES_PATH:
        return config.batch_max_bytes
    return config.max_body_bytes


class ThreadedSimServer:
    """A simulated server running its own event loop in a daemon thread.

    Use :func:`start_in_thread` to make one; call :meth:`stop` when done.
    """

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._server: SimServer | None = None
        self._error: BaseException | None = None
        self._token: Any = None
        self._stop: anyio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Base URL for the SDK."""
        return self.server.base_url

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request's record (read it after :meth:`stop`, or accept a live view)."""
        return self.server.requests

    @property
    def server(self) -> SimServer:
        """The running server's handle."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server

    def _start(self, config: SimConfig, host: str, port: int, brain: Brain | None) -> None:
        async def main() -> None:
            try:
                async with serve(config, host, port, brain=brain) as server:
                    self._stop = anyio.Event()
                    self._token = anyio.lowlevel.current_token()
                    self._server = server
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                raise
            finally:
                self._ready.set()

        def run() -> None:
            with contextlib.suppress(BaseException):  # already stored in self._error
                anyio.run(main)

        self._thread = threading.Thread(target=run, name="orchestrator-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S) or self._server is None:
            raise RuntimeError(f"the simulated server did not start: {self._error!r}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server and wait for its thread to end."""
        if self._stop is not None and self._thread is not None and self._thread.is_alive():
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> ThreadedSimServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    brain: Brain | None = None,
) -> ThreadedSimServer:
    """Start a server in a daemon thread (for sync callers); returns once it listens.

    Raises:
        RuntimeError: If the server could not start (e.g. the port is taken).
    """
    handle = ThreadedSimServer()
    handle._start(config or SimConfig(), host, port, brain)
    return handle


def run_forever(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted (Ctrl-C); for ``orchestrator sim serve``."""

    async def main() -> None:
        async with serve(config, host, port):
            await anyio.sleep_forever()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return
