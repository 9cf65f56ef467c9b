"""Model calls relayed through workers: the HTTP exchange of a call made in another process.

With ``AnthropicClient(relay=...)`` the SDK's requests go through a :class:`RelayTransport`
(an ``httpx`` transport): each request, as bytes, is handed to an :class:`HTTPRelay`, which
makes the exchange elsewhere (a Ray actor on any machine of the cluster:
:meth:`orchestrator.executors.ray.RayExecutor.relay`) and returns the response, as bytes.
Everything else stays in the driver, as without a relay: the request is built and metered
here, the budget reserves it before it is sent, the tier's rate limits are taken here, and
the response is parsed, retried and settled here. What moves is the connection: sockets,
TLS and the wait, spread over workers (a driver with thousands of calls in flight holds
none of their connections).

The API key never travels: the relayed request carries no ``x-api-key``, only the *name*
of the variable that holds it (the tier's ``api_key_env``, else ``ANTHROPIC_API_KEY``),
which each worker reads from its own environment. A worker lost mid-call surfaces as a
dropped connection (``httpx`` ``ConnectError``): the client retries it as one, and counts
it at its worst case, as a call that may have been billed. A streamed call's text arrives
in one piece when the call ends (the relay returns whole bodies).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

import httpx2

__all__ = [
    "KEY_HEADER",
    "WORKER_HEADER",
    "HTTPRelay",
    "RelayTransport",
    "RelayedResponse",
    "relayed_worker",
]

KEY_HEADER = "x-api-key"
"""The header a relayed request leaves out; the worker sets it from its environment."""
WORKER_HEADER = "x-orchestrator-worker"
"""The header a relay adds to a response: the worker (``host:pid``) that made the call."""

_WORKER: ContextVar[str | None] = ContextVar("orchestrator_relayed_worker", default=None)


def relayed_worker() -> str | None:
    """The worker that made this task's last relayed call (``None``: not relayed)."""
    return _WORKER.get()


class RelayedResponse(Protocol):
    """What a relay returns: the response as it came, and who fetched it."""

    @property
    def status(self) -> int:
        """The HTTP status."""
        ...

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The response's headers."""
        ...

    @property
    def body(self) -> bytes:
        """The body, whole and decoded."""
        ...

    @property
    def worker(self) -> str:
        """Who made the exchange (``host:pid``)."""
        ...


class HTTPRelay(Protocol):
    """Makes one HTTP exchange somewhere else."""

    async def exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        key_env: str,
        timeout_s: float,
    ) -> RelayedResponse:
        """Send the request (adding the key named ``key_env``) and return its response.

        Raises:
            httpx2.TransportError: The exchange failed (a connection, or the worker, lost).
        """
        ...


class RelayTransport(httpx2.AsyncBaseTransport):
    """An ``httpx`` transport whose exchanges a :class:`HTTPRelay` makes.

    Args:
        relay: Who makes them.
        key_env: The environment variable holding the API key, on the workers.
        timeout_s: Each exchange's limit.
    """

    def __init__(self, relay: HTTPRelay, *, key_env: str, timeout_s: float) -> None:
        self._relay, self._key_env, self._timeout_s = relay, key_env, timeout_s

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Relay ``request``; the response is read whole."""
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != KEY_HEADER]
        relayed = await self._relay.exchange(
            request.method, str(request.url), headers, body,
            key_env=self._key_env, timeout_s=self._timeout_s,
        )  # fmt: skip
        _WORKER.set(relayed.worker)
        # The body is whole and decoded: the relay's client undid any content-encoding.
        kept = [(k, v) for k, v in relayed.headers if k.lower() not in _HOP]
        return httpx2.Response(
            relayed.status, headers=[*kept, (WORKER_HEADER, relayed.worker)],
            content=relayed.body, request=request,
        )  # fmt: skip


_HOP = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection"})
"""Headers that described the body as it travelled, not as it is now."""
