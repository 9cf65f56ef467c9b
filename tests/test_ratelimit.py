"""Per-tier rate limits, on a fake clock (no real waiting)."""

from __future__ import annotations

import pytest

from orchestrator.models.ratelimit import Limiter, RateLimiter

pytestmark = pytest.mark.anyio


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(time: FakeTime, **limits: int) -> RateLimiter:
    return RateLimiter(clock=time.clock, sleep=time.sleep, **limits)  # type: ignore[arg-type]


async def test_requests_per_minute_spaces_calls_after_the_burst() -> None:
    time = FakeTime()
    limit = limiter(time, requests_per_minute=60)  # one a second, burst of 60
    for _ in range(60):
        await limit.acquire(10)
    assert time.sleeps == []
    await limit.acquire(10)
    assert time.sleeps == [pytest.approx(1.0)]
    assert limit.waits == 1


async def test_tokens_per_minute_waits_for_the_bucket_to_refill() -> None:
    time = FakeTime()
    limit = limiter(time, tokens_per_minute=6000)  # 100 tokens a second
    await limit.acquire(6000)
    await limit.acquire(500)
    assert sum(time.sleeps) == pytest.approx(5.0)


async def test_a_call_larger_than_the_limit_still_runs() -> None:
    time = FakeTime()
    limit = limiter(time, tokens_per_minute=1000)
    await limit.acquire(50_000)
    assert time.sleeps == []


async def test_retry_after_pauses_the_whole_tier() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.pause(7.5)
    await limit.acquire(1)
    assert time.sleeps == [pytest.approx(7.5)]
    limit.pause(2)
    limit.pause(1)  # a shorter pause never shortens a longer one
    await limit.acquire(1)
    assert time.sleeps[-1] == pytest.approx(2)


async def test_no_limits_never_wait() -> None:
    time = FakeTime()
    limit = limiter(time)
    for _ in range(1000):
        await limit.acquire(100_000)
    assert time.sleeps == []


async def test_hold_is_the_protocols_name_for_a_pause() -> None:
    time = FakeTime()
    limit: Limiter = limiter(time)
    await limit.hold(3)
    await limit.acquire(1)
    assert time.sleeps == [pytest.approx(3)]
