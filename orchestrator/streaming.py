"""A run's events as an async iterator: ``async for event in run.events()``.

:meth:`Run.events() <orchestrator.run.Run.events>` (and :meth:`Engine.stream
<orchestrator.engine.Engine.stream>`) return a :class:`RunEvents`. Iterating it executes
the run and yields every :mod:`~orchestrator.events` event in the order the engine emitted
it, :class:`~orchestrator.events.RunFinished` last; text deltas are included unless
``text=False``.

No event is lost and memory stays bounded: the events wait for the reader in a bounded
buffer (an anyio memory object stream of ``buffer`` events). While it is full, each task
of the run that emits an event waits until the reader takes one, so a slow reader slows
the run down rather than the buffer growing or events being dropped; at most ``buffer``
events wait, plus one per task that emits (one per running node).

Stopping early stops the run. Leaving ``async for event in run.events()`` (``break``, an
exception, the reading task cancelled) drops the iterator, which closes the buffer and
cancels the run: running attempts are cancelled, finished nodes keep their results (and the
store its records), the result is ``cancelled``, and the events after the reader left are
dropped; the run ends by itself, within moments. An iterator kept in a variable only
pauses the run until it is read again, dropped or closed. ``async with run.events() as
events:`` (or :meth:`RunEvents.aclose`) stops the run on the way out and waits until it
has ended.

The run executes in a task of its own (so that a bare ``async for`` can be left at any
point without a task group of the reader's): on asyncio, anyio's default backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from types import TracebackType
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.events import Event, EventBus, RunFinished
from orchestrator.results import RunResult

__all__ = ["DEFAULT_BUFFER", "RunEvents"]

DEFAULT_BUFFER = 256
"""Events that may wait for the reader before the run waits for it."""

_RUNNING: set[asyncio.Task[None]] = set()
"""The runs being read: a task the event loop only knows weakly must not be collected."""


class Executable(Protocol):
    """What :class:`RunEvents` needs of a :class:`~orchestrator.run.Run`."""

    async def execute(self) -> RunResult:
        """Run to the end; the result."""
        ...

    def cancel(self) -> None:
        """Stop the run."""
        ...


class _Forward:
    """The listener that puts the run's events in the buffer (waiting while it is full)."""

    __slots__ = ("_send", "wants_text")

    def __init__(self, send: MemoryObjectSendStream[Event], *, text: bool) -> None:
        self._send = send
        self.wants_text = text
        """Whether text deltas are wanted (false once the reader has left)."""

    async def __call__(self, event: Event) -> None:
        try:
            await self._send.send(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.wants_text = False  # the reader left: the rest is dropped


class RunEvents:
    """The events of one run as it executes (see the module's docs).

    Iterate it (``async for event in events``) once, or enter it (``async with``) and
    iterate it inside. :attr:`result` is the run's result once
    :class:`~orchestrator.events.RunFinished` has been read.

    Raises:
        ValueError: If ``buffer`` is below 1.
    """

    def __init__(
        self, run: Executable, bus: EventBus, *, buffer: int = DEFAULT_BUFFER, text: bool = True
    ) -> None:
        if buffer < 1:
            raise ValueError(f"the event buffer holds at least 1 event, not {buffer}")
        self._run, self._bus, self._buffer, self._text = run, bus, buffer, text
        self._receive: MemoryObjectReceiveStream[Event] | None = None
        self._done = anyio.Event()
        self._failure: list[BaseException] = []
        self._closed = False
        self.result: RunResult | None = None
        """The run's result, once its :class:`~orchestrator.events.RunFinished` was read."""

    def _start(self) -> MemoryObjectReceiveStream[Event]:
        """The buffer; on the first call, the run starts executing into it."""
        if self._receive is not None:
            return self._receive
        if self._closed:
            raise RuntimeError("these run events were closed; prepare a new run")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover  (trio: not installed here)
            raise RuntimeError("Run.events() runs on asyncio (anyio's default backend)") from None
        send, receive = anyio.create_memory_object_stream[Event](self._buffer)
        self._receive = receive
        self._bus.subscribe(_Forward(send, text=self._text))  # after the engine's listeners
        task = loop.create_task(_execute(self._run, send, self._done, self._failure))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        # Dropped without aclose (a bare ``async for`` left early): stop the run.
        self._finalizer = weakref.finalize(self, _abandon, receive, self._run, self._done)
        return receive

    def __aiter__(self) -> RunEvents:
        return self

    async def __anext__(self) -> Event:
        receive = self._start()
        try:
            event = await receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            receive.close()
            await self._done.wait()
            self._raise_failure()
            raise StopAsyncIteration from None
        if isinstance(event, RunFinished):
            self.result = event.result
        return event

    async def __aenter__(self) -> RunEvents:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading: the run is cancelled if it has not ended; returns once it has.

        Raises:
            Exception: What the run raised, if it failed (a bug: a run that fails ends
                with a result saying so, it does not raise).
        """
        self._closed = True
        receive = self._receive
        if receive is None:
            return  # never started: nothing runs
        self._finalizer.detach()
        receive.close()
        if not self._done.is_set():
            self._run.cancel()
            with anyio.CancelScope(shield=True):
                await self._done.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure:
            raise self._failure.pop()


async def _execute(
    run: Executable,
    send: MemoryObjectSendStream[Event],
    done: anyio.Event,
    failure: list[BaseException],
) -> None:
    """Execute the run, then close the buffer (the reader sees its end after the last event)."""
    try:
        async with send:
            await run.execute()
    except anyio.get_cancelled_exc_class():
        pass  # the event loop is closing: the run has recorded that it was cancelled
    except Exception as exc:  # noqa: BLE001  (handed to the reader, raised there)
        failure.append(exc)
    finally:
        done.set()


def _abandon(receive: MemoryObjectReceiveStream[Event], run: Executable, done: anyio.Event) -> None:
    """The reader dropped the iterator without closing it: drop the rest, stop the run."""
    receive.close()
    if not done.is_set():
        with contextlib.suppress(RuntimeError):  # collected after its event loop closed
            run.cancel()
