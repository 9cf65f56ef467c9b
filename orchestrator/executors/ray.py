"""``RayExecutor``: Python nodes and Python tools as Ray tasks, on any machine of a cluster.

The ``ray`` extra (``pip install 'tiered-orchestrator[ray]'``); this is the one module that
imports ``ray`` (ruff TID251), and only when an executor starts, so ``import orchestrator``
works without it. Ray schedules the tasks over the cluster's CPUs, ships functions and
values with its own serialization (cloudpickle) and reports workers that die: a cluster
scheduler we do not write ourselves.

What runs where: the driver (the process running the :class:`~orchestrator.run.Run`)
keeps the scheduler, the budget, routing, every model call and verification; each call of
a sync Python node function or sync Python tool is one Ray task. In the task, the worker
opens a span (``run <task or tool>``) whose parent is the driver's span around the call
(the attempt's, or the tool call's): the W3C trace context travels with the task, so the
run stays one trace. The span records ``orchestrator.worker`` (``host:pid``), which the
attempt records too (``Attempt.worker``).

Ray's own task retries are off (``max_retries=0``): a task whose worker died raises
:class:`~orchestrator.executor.WorkerLost`, and the engine records that attempt and runs
the node again, on another worker, until ``max_lost`` workers were lost running it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio.to_thread
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from orchestrator.exceptions import UserError
from orchestrator.executor import Ran, WorkerLost
from orchestrator.executors.ray_relay import RayRelay
from orchestrator.telemetry._semconv import NS

__all__ = ["RAY_EXTRA_HELP", "RayExecutor"]

RAY_EXTRA_HELP = "the Ray executor needs Ray: pip install 'tiered-orchestrator[ray]'"
"""What to do when ``ray`` is not installed (the CLI prints it, exit 2)."""

_LOST_ERRORS = (
    "WorkerCrashedError",  # the worker process died (os._exit, a signal, a segfault)
    "NodeDiedError",  # its machine left the cluster
    "LocalRayletDiedError",
    "OutOfMemoryError",  # Ray's memory monitor killed it
    "ObjectLostError",
    "OwnerDiedError",
)
"""Ray's errors that mean the worker (not the function) failed: the node may run again."""


class RayExecutor:
    """Runs each unit of Python work as a Ray task.

    Args:
        address: The cluster to join (``ray://...`` or ``host:port``, as ``ray.init``
            takes it); default ``$RAY_ADDRESS``; neither: a local Ray is started on this
            machine (no dashboard), and shut down by :meth:`aclose`.
        num_cpus: CPUs of a local Ray started here (default: every CPU of the machine).
        cpus_per_task: CPUs Ray reserves for each task (1: one task per CPU at once).
        max_lost: Most lost workers per node: the node fails after that many.
        worker_setup: Ray's ``worker_process_setup_hook``, run in each worker process as
            it starts (the CLI's sets up the worker's span exporter); a function or its
            dotted name.
        worker_env: Environment variables of the workers.
        log_to_driver: Whether the workers' output is printed here (Ray's option).

    A Ray already initialised in this process (``ray.init`` called by the application) is
    used as it is, and left running.
    """

    remote = True

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        max_lost: int = 2,
        worker_setup: Callable[[], None] | str | None = None,
        worker_env: Mapping[str, str] | None = None,
        log_to_driver: bool = True,
    ) -> None:
        if max_lost < 1:
            raise UserError(f"max_lost must be at least 1, not {max_lost}")
        if num_cpus is not None and num_cpus < 1:
            raise UserError(f"num_cpus must be at least 1, not {num_cpus}")
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.max_lost = max_lost
        self.worker_setup = worker_setup
        self.worker_env = dict(worker_env or {})
        self.log_to_driver = log_to_driver
        self._ray: Any = None
        self._task: Any = None  # the remote function, once started
        self._lost: tuple[type[Exception], ...] = ()
        self._started_ray = False
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._failure: UserError | None = None
        self._shipped: dict[int, tuple[Callable[..., Any], str, list[Any]]] = {}

    def __repr__(self) -> str:
        where = self.address or f"local, num_cpus={self.num_cpus}"
        return f"RayExecutor({where})"

    @property
    def started(self) -> bool:
        """Whether this executor has joined (or started) Ray."""
        return self._task is not None

    async def start(self) -> RayExecutor:
        """Join the cluster, or start a local Ray (it takes seconds), in a thread of its own.

        Called by the first :meth:`run` when not called before. Ray ties the processes of a
        local Ray to the thread that started it (they are killed when it ends), so that
        thread lives until :meth:`aclose`: a pool's thread would end when idle.

        Raises:
            UserError: Ray is not installed, or the cluster cannot be joined.
        """
        with self._lock:
            if self._owner is None:
                self._owner = threading.Thread(target=self._own, name="ray-owner", daemon=True)
                self._owner.start()
        await anyio.to_thread.run_sync(self._ready.wait)
        if self._failure is not None:
            raise self._failure
        return self

    def _own(self) -> None:
        """The owner thread: start (or join) Ray, then hold it until :meth:`aclose`."""
        try:
            import ray  # noqa: PLC0415  (the optional extra, imported when started)
        except ImportError:
            self._failure = UserError(RAY_EXTRA_HELP)
            self._ready.set()
            return
        try:
            if not ray.is_initialized():
                self._init(ray)
        except Exception as exc:  # noqa: BLE001  (raised by start(), in the caller's task)
            where = self.address or "a local Ray"
            why = f"{type(exc).__name__}: {exc}"
            self._failure = UserError(f"cannot start the Ray executor on {where}: {why}")
            self._ready.set()
            return
        self._ray = ray
        self._lost = tuple(getattr(ray.exceptions, name) for name in _LOST_ERRORS)
        self._task = ray.remote(max_retries=0, num_cpus=self.cpus_per_task)(_in_worker)
        self._ready.set()
        self._stop.wait()
        if self._started_ray:
            self._started_ray = False
            ray.shutdown()

    def _init(self, ray: Any) -> None:
        """``ray.init``: join ``address``, or start a local Ray."""
        runtime_env: dict[str, Any] = {}
        if self.worker_setup is not None:
            runtime_env["worker_process_setup_hook"] = self.worker_setup
        if self.worker_env:
            runtime_env["env_vars"] = self.worker_env
        options: dict[str, Any] = {
            "runtime_env": runtime_env or None,
            "log_to_driver": self.log_to_driver,
            "include_dashboard": False,
        }
        if self.address is None:  # a new local Ray (not one `ray start` left running)
            options["num_cpus"] = self.num_cpus
        ray.init(address=self.address or "local", **options)
        self._started_ray = True

    @property
    def ray(self) -> Any:
        """The ``ray`` module, once started.

        Raises:
            RuntimeError: Not started yet.
        """
        if self._ray is None:
            raise RuntimeError("the Ray executor has not started")
        return self._ray

    def relay(self, *, actors: int = 2, env: Mapping[str, str] | None = None) -> RayRelay:
        """Model calls' HTTP exchanges made by Ray actors of this cluster (``env``: theirs).

        For ``AnthropicClient(relay=...)``: see :mod:`orchestrator.models.relay` (what moves,
        what stays) and :mod:`orchestrator.executors.ray_relay`.
        """
        return RayRelay(self, actors=actors, env=env)

    async def aclose(self) -> None:
        """Shut down the local Ray this executor started (a joined cluster stays up)."""
        owner = self._owner
        if owner is None:
            return
        self._stop.set()
        await anyio.to_thread.run_sync(owner.join)
        self._owner, self._task, self._failure = None, None, None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._shipped.clear()

    async def __aenter__(self) -> RayExecutor:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def run(
        self,
        name: str,
        function: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Ran:
        """Run ``function(*args, **kwargs)`` as a Ray task (see :meth:`Executor.run`).

        What the function raised comes back as :attr:`Ran.error`, with its worker.

        Raises:
            WorkerLost: The worker died (or its machine left) before answering.
        """
        if self._task is None:
            await self.start()
        key, box = self._ship(function)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the current span (the attempt's): the worker's parent
        ref = self._task.remote(key, box, name, tuple(args), dict(kwargs or {}), carrier)
        errors = self._ray.exceptions
        try:
            ok, value, worker = await _result(self._ray, ref)
        except errors.RayTaskError as exc:  # raised outside the function: (un)pickling, say
            raise _cause(exc) from None
        except self._lost as exc:
            raise WorkerLost(name, str(exc).strip().splitlines()[0]) from None
        except BaseException:  # cancelled (a timeout, the run): stop the task too
            self._ray.cancel(ref)
            raise
        return Ran(value, worker) if ok else Ran(None, worker, value)

    def _ship(self, function: Callable[..., Any]) -> tuple[str, list[Any]]:
        """The function's key and its object in Ray's store (put there once).

        A worker keeps each function it has loaded by key, so a function (and whatever
        its closure holds: a corpus, say) crosses to each worker once, not once a call.
        """
        shipped = self._shipped.get(id(function))
        if shipped is None or shipped[0] is not function:
            shipped = (function, uuid.uuid4().hex, [self._ray.put(function)])
            self._shipped[id(function)] = shipped
        return shipped[1], shipped[2]


async def _result(ray: Any, ref: Any) -> Any:
    """Await a task's result without blocking the event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover  (trio: a thread waits for it)
        return await anyio.to_thread.run_sync(ray.get, ref, abandon_on_cancel=True)
    return await ref  # an ObjectRef is awaitable under asyncio


def _cause(exc: Any) -> Exception:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else RuntimeError(str(exc))


# -- in the worker ------------------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[..., Any]] = {}
"""The functions this worker has loaded, by key."""


def _in_worker(  # noqa: PLR0917  (the task's arguments, as Ray passes them)
    key: str,
    box: list[Any],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carrier: dict[str, str],
) -> tuple[bool, Any, str]:
    """A Ray task: run the function under a span whose parent is the driver's.

    Returns whether it returned, its value or the exception it raised, and this worker.
    The exception is returned, not raised, so the attempt still knows its worker.
    """
    function = _FUNCTIONS.get(key)
    if function is None:
        import ray  # noqa: PLC0415

        function = _FUNCTIONS[key] = ray.get(box[0])
    worker = f"{socket.gethostname()}:{os.getpid()}"
    tracer = trace.get_tracer("orchestrator.executors.ray")  # the worker's (worker_setup)
    with tracer.start_as_current_span(
        f"run {name}",
        context=propagate.extract(carrier),
        attributes={NS.WORKER: worker},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            return True, function(*args, **kwargs), worker
        except Exception as exc:  # noqa: BLE001  (returned to the driver, which raises it)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            return False, exc, worker
