"""Per-tier rate limits shared by every concurrent call: a wide DAG queues, not 429s.

Each tier may declare ``requests_per_minute`` and ``tokens_per_minute`` (input tokens, as
providers count them). A token bucket per limit is refilled continuously; a call waits until
both buckets hold what it needs. A ``retry-after`` from the server pauses the whole tier,
not just the call that saw it, so concurrent nodes stop hammering an endpoint that said
"slow down".

This module keeps the buckets in memory, for the calls of one process;
:mod:`orchestrator.models.shared_ratelimit` keeps them in a file that every process using
the same directory shares. Both satisfy :class:`Limiter`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

__all__ = ["Limiter", "RateLimiter"]


class Limiter(Protocol):
    """What the model client asks of a tier's rate limiter."""

    waits: int
    """How many times a call had to wait."""

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` input tokens may be sent, then take it."""
        ...

    async def hold(self, seconds: float) -> None:
        """Hold every call on this tier for ``seconds`` (a server's ``retry-after``)."""
        ...


@dataclass
class _Bucket:
    per_minute: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.per_minute, self.level + (now - self.updated) * self.per_minute / 60)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now)."""
        amount = min(amount, self.per_minute)  # a call larger than a minute's worth still runs
        if self.level >= amount:
            return 0.0
        return (amount - self.level) * 60 / self.per_minute


@dataclass
class RateLimiter:
    """Request and token buckets for one tier, plus a tier-wide pause.

    Args:
        requests_per_minute: Most requests per minute; ``None`` for no limit.
        tokens_per_minute: Most input tokens per minute; ``None`` for no limit.
        clock: Monotonic time in seconds (``anyio.current_time`` by default).
        sleep: How to wait (``anyio.sleep`` by default).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    clock: Callable[[], float] = anyio.current_time
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    paused_until: float = 0.0
    waits: int = 0
    """How many times a call had to wait (for reports)."""
    _buckets: list[tuple[str, _Bucket]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        now = self.clock()
        if self.requests_per_minute:
            self._buckets.append(
                ("requests", _Bucket(self.requests_per_minute, self.requests_per_minute, now))
            )
        if self.tokens_per_minute:
            self._buckets.append(
                ("tokens", _Bucket(self.tokens_per_minute, self.tokens_per_minute, now))
            )

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` input tokens may be sent, then take it."""
        waited = False
        while True:
            now = self.clock()
            delay = max(0.0, self.paused_until - now)
            needs = {"requests": 1.0, "tokens": float(tokens)}
            for name, bucket in self._buckets:
                bucket.refill(now)
                delay = max(delay, bucket.wait_for(needs[name]))
            if delay <= 0:
                for name, bucket in self._buckets:
                    bucket.level -= min(needs[name], bucket.per_minute)
                self.waits += waited
                return
            waited = True
            await self.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Hold every call on this tier for ``seconds`` (a server's ``retry-after``)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    async def hold(self, seconds: float) -> None:
        """:meth:`pause`, as the :class:`Limiter` protocol spells it."""
        self.pause(seconds)
