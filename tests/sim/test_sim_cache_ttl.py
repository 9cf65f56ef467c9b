"""The 1-hour and 5-minute prompt-cache TTLs, in simulated time, as the real API keeps them.

Time never passes by sleeping: the server's clock is the test's, moved by hand. With
``time_scale=0.01`` a simulated second is 0.01 s of that clock, so a 5-minute entry lives
3 clock-seconds and a 1-hour entry 36 (and latency stays a few milliseconds).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import anyio
import pytest

from orchestrator import Usage, default_ladder
from orchestrator.models.anthropic_request import cache_write_split
from orchestrator_sim import SimConfig, serve
from orchestrator_sim.usage import PromptCache, Segment

pytestmark = pytest.mark.anyio

SCALE = 0.01
FIVE_MINUTES = 300 * SCALE  # on the clock
ONE_HOUR = 3600 * SCALE
SONNET = "claude-sonnet-5-5"
LONG_SYSTEM = "You are a careful analyst who writes plainly. " * 120  # ~1,400 tokens
SYSTEM_TOKENS = len(LONG_SYSTEM) // 4


class FakeClock:
    """Seconds, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def control(ttl: str | None) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


def tools(ttl: str | None) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {
            "name": f"tool_{i}",
            "description": f"Tool {i} does one thing well and says so at length. " * 50,
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
        for i in range(3)
    ]
    specs[-1]["cache_control"] = control(ttl)
    return specs


def system(ttl: str | None, text: str = LONG_SYSTEM) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": control(ttl)}]


async def ask(client: anthropic.AsyncAnthropic, **params: Any) -> Any:
    params.setdefault("messages", [{"role": "user", "content": "What is a delta?"}])
    message = await client.messages.create(model=SONNET, max_tokens=200, **params)
    return message.usage


def written(usage: Any) -> tuple[int, int]:
    split = usage.cache_creation
    return split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens


async def test_a_one_hour_entry_outlives_a_five_minute_one(make_client) -> None:
    clock = FakeClock()
    async with (
        serve(SimConfig(time_scale=SCALE), clock=clock) as server,
        make_client(server) as client,
    ):
        with anyio.fail_after(10):
            short = await ask(client, system=system(None))
            long = await ask(client, system=system("1h", LONG_SYSTEM + " Also."))
            clock.now += FIVE_MINUTES + 0.1  # five simulated minutes and a bit later
            short_later = await ask(client, system=system(None))
            long_later = await ask(client, system=system("1h", LONG_SYSTEM + " Also."))
            clock.now += ONE_HOUR + 0.1  # an hour after the last read
            long_gone = await ask(client, system=system("1h", LONG_SYSTEM + " Also."))
    assert written(short) == (SYSTEM_TOKENS, 0)
    assert written(long)[1] == long.cache_creation_input_tokens > SYSTEM_TOKENS
    assert (short_later.cache_read_input_tokens, written(short_later)) == (0, (SYSTEM_TOKENS, 0))
    assert long_later.cache_read_input_tokens == long.cache_creation_input_tokens
    assert long_later.cache_creation_input_tokens == 0
    assert long_gone.cache_read_input_tokens == 0
    assert written(long_gone) == written(long)


async def test_each_read_refreshes_a_five_minute_entry(make_client) -> None:
    clock = FakeClock()
    async with (
        serve(SimConfig(time_scale=SCALE), clock=clock) as server,
        make_client(server) as client,
    ):
        with anyio.fail_after(10):
            await ask(client, system=system("5m"))  # "5m" spelled out is the default
            reads = []
            for _ in range(3):  # each 4 simulated minutes after the one before: 12 in all
                clock.now += FIVE_MINUTES * 0.8
                reads.append(await ask(client, system=system("5m")))
            clock.now += FIVE_MINUTES + 0.1  # idle for more than 5 minutes
            expired = await ask(client, system=system("5m"))
    assert [usage.cache_read_input_tokens for usage in reads] == [SYSTEM_TOKENS] * 3
    assert expired.cache_read_input_tokens == 0
    assert written(expired) == (SYSTEM_TOKENS, 0)


async def test_mixed_ttls_are_billed_at_the_apis_three_positions(make_client) -> None:
    # Tools marked 1h, then the system prompt 5m: A = the cache hit, B = the last 1-hour
    # breakpoint after it, C = the last breakpoint; 1h writes B - A, 5m writes C - B.
    clock = FakeClock()
    params = {"tools": tools("1h"), "system": system(None), "tool_choice": {"type": "none"}}
    async with (
        serve(SimConfig(time_scale=SCALE), clock=clock) as server,
        make_client(server) as client,
    ):
        with anyio.fail_after(10):
            first = await ask(client, **params)
            clock.now += FIVE_MINUTES + 0.1  # the system prompt's entry expired
            later = await ask(client, **params)
            counted = await client.messages.count_tokens(
                model=SONNET,
                messages=[{"role": "user", "content": "What is a delta?"}],
                **params,
            )
    five, hour = written(first)
    assert (five, first.cache_read_input_tokens) == (SYSTEM_TOKENS, 0)
    assert hour > 1024  # the tool catalogue
    assert first.cache_creation_input_tokens == five + hour
    assert later.cache_read_input_tokens == hour  # A: the catalogue, still cached
    assert written(later) == (SYSTEM_TOKENS, 0)  # C - B: only the system prompt again
    prompt = first.input_tokens + first.cache_creation_input_tokens
    assert counted.input_tokens == prompt == later.input_tokens + hour + SYSTEM_TOKENS

    # The split reaches a Usage, and the tier prices each write at its own rate, exactly.
    sonnet = default_ladder().get("sonnet")
    to_5m, to_1h = cache_write_split(first.cache_creation, first.cache_creation_input_tokens)
    assert (to_5m, to_1h) == (five, hour)
    usage = Usage(
        input_tokens=first.input_tokens,
        output_tokens=first.output_tokens,
        cache_write_tokens=first.cache_creation_input_tokens,
        cache_write_1h_tokens=to_1h,
    )
    per_token = Decimal("1e-6")
    assert sonnet.cost(usage) == per_token * (
        first.input_tokens * Decimal(2)
        + first.output_tokens * Decimal(10)
        + five * Decimal("2.5")
        + hour * Decimal(4)
    )


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"system": system(None), "cache_control": control("1h")}, "cache_control.ttl"),
        ({"tools": tools("5m"), "system": system("1h")}, "system.0.cache_control.ttl"),
        (
            {
                "system": system(None),
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Hi.", "cache_control": control("1h")}
                        ],
                    }
                ],
            },
            "messages.0.content.0.cache_control.ttl",
        ),
    ],
    ids=["top-level", "system after tools", "message after system"],
)
async def test_a_one_hour_breakpoint_after_a_five_minute_one_is_refused(
    params: dict[str, Any], where: str, make_client
) -> None:
    async with serve(SimConfig(time_scale=0)) as server, make_client(server) as client:
        with anyio.fail_after(10), pytest.raises(anthropic.BadRequestError) as caught:
            await ask(client, **params)
        # The other order is accepted: 1-hour breakpoints first.
        accepted = await ask(
            client, tools=tools("1h"), system=system("1h"), cache_control=control(None)
        )
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == (
        f"{where}: a ttl='1h' cache_control block must not come after a ttl='5m' "
        "cache_control block. Note that blocks are processed in the following order: "
        "`tools`, `system`, `messages`."
    )
    assert accepted.cache_creation.ephemeral_1h_input_tokens > 0
    assert server.requests[0].status == 400


async def test_an_unknown_ttl_is_refused(make_client) -> None:
    async with serve(SimConfig(time_scale=0)) as server, make_client(server) as client:
        with anyio.fail_after(10), pytest.raises(anthropic.BadRequestError) as caught:
            await ask(client, system=system("10m"))
    assert "system.0.cache_control.ttl: Input should be '5m' or '1h'" in str(caught.value)


async def test_with_time_scale_zero_entries_never_expire(make_client) -> None:
    clock = FakeClock()
    async with serve(SimConfig(time_scale=0), clock=clock) as server, make_client(server) as client:
        with anyio.fail_after(10):
            await ask(client, system=system(None))
            clock.now += 10 * 3600.0  # no simulated time passes at time_scale 0
            again = await ask(client, system=system(None))
    assert again.cache_read_input_tokens == SYSTEM_TOKENS


def test_a_read_keeps_the_ttl_an_entry_was_written_with() -> None:
    # Read through the lookback, at a block with no breakpoint of its own: the 1-hour
    # entry is refreshed for an hour, not for the 5 minutes of the request's breakpoint.
    now = [0.0]
    cache = PromptCache(entries=8, clock=lambda: now[0])
    assert cache.account("m", [Segment("a", 2000, "1h")], 1024).write_1h == 2000
    now[0] = 100.0
    other = cache.account("m", [Segment("a", 2000, None), Segment("b", 10, "5m")], 1024)
    assert (other.read, other.write_5m, other.write_1h) == (2000, 10, 0)
    now[0] = 100.0 + 400.0  # past 5 minutes since that read, within the hour
    assert cache.account("m", [Segment("a", 2000, "1h")], 1024).read == 2000
    now[0] += 3601.0
    assert cache.account("m", [Segment("a", 2000, "1h")], 1024).write_1h == 2000
