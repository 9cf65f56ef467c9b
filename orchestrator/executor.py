"""Where node work runs: the executor seam between the scheduler and a unit of work.

The scheduler, the budget, routing and every model call stay in the driver, the process
that runs the :class:`~orchestrator.run.Run`. An :class:`Executor` runs the units of work
that need a CPU: the function of a plain (sync) Python node, and each call of a sync
Python tool (:class:`~orchestrator.tools.FunctionTool`). Async functions, of nodes and of
tools, stay on the driver's event loop: a coroutine is bound to the loop that runs it and
cannot be shipped to another process.

:class:`LocalExecutor` (the default) runs them in a worker thread of this process, as the
engine always has; :class:`~orchestrator.executors.ray.RayExecutor` (the ``ray`` extra)
runs each as a Ray task, on any machine of a Ray cluster ([scaling.md](docs/scaling.md)).

A remote executor reports the worker that ran each unit (:attr:`Ran.worker`, recorded as
:attr:`Attempt.worker <orchestrator.results.Attempt.worker>`), and raises
:class:`WorkerLost` when the worker died before answering: the engine then records that
attempt (``error_type`` ``worker_lost``) and runs the node again, on another worker, at
most :attr:`Executor.max_lost` times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread

__all__ = ["Executor", "LocalExecutor", "Ran", "WorkerLost"]


@dataclass(frozen=True, slots=True)
class Ran:
    """What a unit of work returned, and where it ran."""

    value: Any
    """The function's return value."""
    worker: str | None = None
    """The worker that ran it (``host:pid``); ``None`` for this process."""
    error: Exception | None = None
    """What the function raised, if it did (a remote executor returns it with the worker,
    and the caller raises it); ``value`` is ``None`` then."""

    def result(self) -> Any:
        """The value, or what the function raised, raised here."""
        if self.error is not None:
            raise self.error
        return self.value


class WorkerLost(Exception):
    """The worker running a unit of work died (or its machine left) before answering.

    Args:
        name: What ran (the task id, or the tool's name).
        why: The executor's own account of it.
    """

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"the worker running {name!r} was lost: {why}")
        self.name = name
        self.why = why


@runtime_checkable
class Executor(Protocol):
    """Runs a sync function with its arguments, somewhere, and returns what it returned.

    Attributes:
        remote: Whether work leaves this process (the engine records the worker of each
            attempt, and retries a node whose worker was lost).
        max_lost: How many lost workers a node may see before it fails (remote only).
    """

    remote: bool
    max_lost: int

    async def run(
        self,
        name: str,
        function: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Ran:
        """Run ``function(*args, **kwargs)`` and return its value and worker.

        Args:
            name: What runs, for spans and errors (the task id, or the tool's name).
            function: A sync function (a remote executor ships it: it must be picklable).
            args: Positional arguments.
            kwargs: Keyword arguments.

        Returns:
            Its value, or what it raised (:attr:`Ran.error`), and the worker that ran it.

        Raises:
            WorkerLost: The worker died before answering (remote executors).
            Exception: What the function raised, when the executor raises it rather than
                returning it (the local one does: there is no worker to report).
        """
        ...


class LocalExecutor:
    """Runs work in a worker thread of this process (the default: what the engine did)."""

    remote = False
    max_lost = 0

    async def run(
        self,
        name: str,
        function: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Ran:
        """Run ``function`` in a worker thread (see :meth:`Executor.run`)."""
        call = functools.partial(function, *args, **(kwargs or {}))
        return Ran(await anyio.to_thread.run_sync(call, abandon_on_cancel=True))

    def __repr__(self) -> str:
        return "LocalExecutor()"
