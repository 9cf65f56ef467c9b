"""``RayRelay``: model calls' HTTP exchanges made by Ray actors (``RayExecutor.relay()``).

An :class:`~orchestrator.models.relay.HTTPRelay` over a few long-lived async Ray actors,
each holding one HTTP connection pool and taking many calls at once (``max_concurrency``).
The driver keeps everything else of a call (metering, the budget, rate limits, retries,
parsing); an actor makes the exchange, adding the API key from its own environment, under a
span whose parent is the driver's ``chat`` span (the trace context travels with the call).

An actor that dies (its process, or its machine) is restarted by Ray (``max_restarts``);
the calls it held fail as dropped connections, which the client retries, on the restarted
actor or another. Actors reserve no CPU: they wait on sockets, and leave the cluster's
CPUs to Python nodes and tools.

This module does not import ``ray``: it is handed the module by the executor that started
it (``orchestrator/executors/ray.py`` is the one module importing it).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx2
from opentelemetry import propagate, trace

from orchestrator.models.relay import KEY_HEADER
from orchestrator.telemetry._semconv import NS


class _Cluster(Protocol):
    """What the relay needs of its executor (a ``RayExecutor``)."""

    @property
    def ray(self) -> Any:
        """The ``ray`` module, once started."""
        ...

    async def start(self) -> Any:
        """Join or start the cluster (once)."""
        ...


__all__ = ["RayRelay", "Relayed"]

_LOST = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError")
"""Ray's errors that mean the actor (not the exchange) failed: the call may be retried."""


_UNSENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
"""The actor's failures that mean the request never left it (never billed)."""


@dataclass(frozen=True, slots=True)
class Relayed:
    """A response an actor fetched (a :class:`~orchestrator.models.relay.RelayedResponse`)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    worker: str


class RayRelay:
    """Model calls' HTTP exchanges made by ``actors`` Ray actors, round robin.

    Args:
        executor: The Ray executor whose cluster the actors join (started on first use).
        actors: How many actors (each takes up to ``max_concurrency`` calls at once).
        max_concurrency: Calls one actor holds at once.
        env: Environment variables of the actors (Ray's ``runtime_env``): never a real key
            (Ray keeps it with the cluster's state); the offline simulator's, say.
    """

    def __init__(
        self,
        executor: _Cluster,
        *,
        actors: int = 2,
        max_concurrency: int = 1000,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if actors < 1:
            raise ValueError(f"actors must be at least 1, not {actors}")
        self._executor, self._count, self._concurrency = executor, actors, max_concurrency
        self._actors: list[Any] = []
        self._next: itertools.cycle[Any] | None = None
        self._lost: tuple[type[Exception], ...] = ()
        self._lock = anyio.Lock()
        self._env = dict(env or {})

    def __repr__(self) -> str:
        return f"RayRelay(actors={self._count})"

    async def _pick(self) -> Any:
        if self._next is None:
            async with self._lock:
                if self._next is None:
                    await self._executor.start()
                    ray = self._executor.ray
                    self._lost = tuple(getattr(ray.exceptions, name) for name in _LOST)
                    actor = ray.remote(_RelayActor).options(
                        num_cpus=0, max_concurrency=self._concurrency, max_restarts=-1,
                        runtime_env={"env_vars": self._env} if self._env else None,
                    )  # fmt: skip
                    self._actors = [actor.remote() for _ in range(self._count)]
                    self._next = itertools.cycle(self._actors)
        return next(self._next)

    async def exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        key_env: str,
        timeout_s: float,
    ) -> Relayed:
        """Have an actor make the exchange (see :class:`~orchestrator.models.relay.HTTPRelay`).

        Raises:
            httpx2.TransportError: The exchange failed in the actor (``ConnectError``: the
                request was not sent), or the actor was lost (``ReadError``: it may have been).
        """
        actor = await self._pick()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the chat span: the actor's span is its child
        ref = actor.exchange.remote(method, url, headers, body, key_env, timeout_s, carrier)
        try:
            outcome = await ref
        except self._lost as exc:  # the call may have been sent: it may be billed
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise httpx2.ReadError(f"the Ray worker relaying the call was lost: {why}") from None
        except BaseException:  # cancelled: stop the actor's call too
            self._executor.ray.cancel(ref)
            raise
        if isinstance(outcome[0], str):  # the exchange failed over there, as it says
            kind, message = outcome
            raise (httpx2.ConnectError if kind in _UNSENT else httpx2.ReadError)(message)
        status, returned, content, worker = outcome
        return Relayed(status, returned, content, worker)


# -- in the actor -------------------------------------------------------------------------


class _RelayActor:
    """A Ray actor making HTTP exchanges for the driver (one connection pool)."""

    def __init__(self) -> None:
        self._client: httpx2.AsyncClient | None = None
        self._worker = f"{socket.gethostname()}:{os.getpid()}"

    async def exchange(  # noqa: PLR0917  (the call's parts, as Ray passes them)
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        key_env: str,
        timeout_s: float,
        carrier: dict[str, str],
    ) -> tuple[int, list[tuple[str, str]], bytes, str] | tuple[str, str]:
        """The response (status, headers, body, this worker), or how the exchange failed."""
        key = os.environ.get(key_env)
        if not key:
            return (401, [("content-type", "application/json")], _no_key(key_env, self._worker),
                    self._worker)  # fmt: skip
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=timeout_s)
        tracer = trace.get_tracer("orchestrator.executors.ray")
        with tracer.start_as_current_span(
            f"relay {method} {httpx2.URL(url).path}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.CLIENT,
            attributes={NS.WORKER: self._worker},
        ):
            try:
                response = await self._client.request(
                    method, url, headers=[*headers, (KEY_HEADER, key)], content=body
                )
            except httpx2.TransportError as exc:
                kind = type(exc).__name__
                return kind, f"{kind} in the Ray worker {self._worker}: {exc}"
        return response.status_code, list(response.headers.items()), response.content, self._worker


def _no_key(key_env: str, worker: str) -> bytes:
    message = (
        f"the Ray worker {worker} has no {key_env} in its environment: set it on every "
        "machine of the cluster before `ray start` (docs/scaling.md)"
    )
    return (
        b'{"type":"error","error":{"type":"authentication_error","message":"'
        + message.encode()
        + b'"}}'
    )
