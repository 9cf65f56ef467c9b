"""The 1-hour prompt-cache TTL: its usage, its exact price, tiers files, and the breakpoints.

Anthropic's published rules: a 5-minute cache write costs 1.25x base input, a 1-hour
write 2x, a read 0.1x; the response's ``cache_creation_input_tokens`` is every write and
``cache_creation`` splits it by TTL; a 1-hour breakpoint may not follow a 5-minute one.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator import PriceBand, TierConfigError, Usage, default_ladder, load_ladder
from orchestrator.models.anthropic_request import (
    EPHEMERAL,
    cache_control,
    cache_write_split,
    mark_conversation,
    marks_one_hour,
    message_param,
    order_ttls,
    tool_specs,
)
from orchestrator.models.base import Message, TextBlock

PER_TOKEN = Decimal("1e-6")
HOUR = {"type": "ephemeral", "ttl": "1h"}

# --- usage ---------------------------------------------------------------------------


def test_one_hour_writes_are_part_of_the_cache_writes() -> None:
    usage = Usage(input_tokens=5, cache_write_tokens=100, cache_write_1h_tokens=30)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (70, 30)
    assert usage.prompt_tokens == 105  # the split does not add tokens
    with pytest.raises(ValueError, match="cannot exceed"):
        Usage(cache_write_tokens=10, cache_write_1h_tokens=11)
    with pytest.raises(ValueError, match="cache_write_1h_tokens"):
        Usage(cache_write_1h_tokens=-1)


def test_sums_and_the_uncached_call_keep_the_split_right() -> None:
    a = Usage(input_tokens=1, cache_write_tokens=10, cache_write_1h_tokens=4, cache_read_tokens=2)
    b = Usage(cache_write_tokens=5, cache_write_1h_tokens=5, output_tokens=3)
    total = a + b
    assert (total.cache_write_tokens, total.cache_write_1h_tokens) == (15, 9)
    assert total.cache_write_5m_tokens == a.cache_write_5m_tokens + b.cache_write_5m_tokens
    uncached = a.uncached()
    assert (uncached.input_tokens, uncached.cache_write_tokens) == (a.prompt_tokens, 0)
    assert uncached.cache_write_1h_tokens == 0
    assert Usage.model_validate(total.model_dump()) == total  # a valid Usage, stored or not


# --- prices --------------------------------------------------------------------------


def test_one_hour_writes_cost_twice_the_input_price_by_default_exactly() -> None:
    band = PriceBand(input=3.0, output=15.0)
    assert band.cache_write_1h_price == Decimal(6)
    assert band.cache_write_price == Decimal("3.75")
    usage = Usage(
        input_tokens=1_234, output_tokens=56, cache_write_tokens=7_000,
        cache_write_1h_tokens=2_500, cache_read_tokens=9_999,
    )  # fmt: skip
    expected = PER_TOKEN * (
        1_234 * Decimal(3) + 56 * Decimal(15) + 4_500 * Decimal("3.75")
        + 2_500 * Decimal(6) + 9_999 * Decimal("0.3")
    )  # fmt: skip
    assert band.cost(usage) == expected  # exact: Decimal, no tolerance
    five = Usage(cache_write_tokens=1_000_000)
    hour = Usage(cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000)
    assert (band.cost(five), band.cost(hour)) == (Decimal("3.75"), Decimal(6))


def test_an_explicit_one_hour_price_wins_and_leaves_the_5m_price_alone() -> None:
    band = PriceBand(input=1.0, output=1.0, cache_write=1.1, cache_write_1h=1.7)
    usage = Usage(cache_write_tokens=300, cache_write_1h_tokens=100)
    assert band.cost(usage) == PER_TOKEN * (200 * Decimal("1.1") + 100 * Decimal("1.7"))
    assert PriceBand(input=1.0, output=1.0, cache_write_1h=0).cost(usage) == PER_TOKEN * 250
    with pytest.raises(ValueError, match="cache_write_1h"):
        PriceBand(input=1.0, output=1.0, cache_write_1h=-0.5)


def test_the_built_in_ladder_lists_both_write_prices_at_anthropics_rates() -> None:
    for tier in default_ladder().tiers:
        for band in tier.prices:
            assert band.cache_write_1h is not None, tier.name  # explicit, next to the 5m one
            assert band.cache_write_1h == band.input * 2, tier.name
            assert band.cache_write == band.input * Decimal("1.25"), tier.name
            assert band.cache_read == band.input * Decimal("0.1"), tier.name
    haiku = default_ladder().get("haiku")
    long_prompt = Usage(input_tokens=150_000, cache_write_tokens=1_000, cache_write_1h_tokens=1_000)
    assert haiku.cost(long_prompt) == PER_TOKEN * (150_000 * Decimal("0.5") + 1_000 * Decimal(1))


def test_the_worst_case_includes_one_hour_writes_when_the_call_marks_one() -> None:
    opus = default_ladder().get("opus")
    five = opus.worst_case_cost(10_000, 1_000)
    hour = opus.worst_case_cost(10_000, 1_000, one_hour=True)
    assert five == PER_TOKEN * (10_000 * 5 + 1_000 * 20)
    assert hour == PER_TOKEN * (10_000 * 8 + 1_000 * 20)
    every_write_1h = Usage(
        cache_write_tokens=10_000, cache_write_1h_tokens=10_000, output_tokens=1_000
    )
    assert opus.cost(every_write_1h) == hour > five


def test_a_tiers_file_sets_the_one_hour_price(tmp_path: Path) -> None:
    path = tmp_path / "tiers.toml"
    path.write_text(
        "[tiers.sonnet]\n"
        "prices = [{ input = 3.0, output = 15.0, cache_write = 3.75, cache_write_1h = 6.5 }]\n"
        "[tiers.local]\n"
        'model = "m"\nrank = 5\ncontext_window = 1000\n'
        "capabilities = { reasoning = 1 }\n"
        "prices = [{ input = 1.0, output = 1.0 }]\n",
        encoding="utf-8",
    )
    ladder = load_ladder(path)
    written = Usage(cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000)
    assert ladder.get("sonnet").cost(written) == Decimal("6.5")
    assert ladder.get("local").cost(written) == Decimal(2)  # unset: 2x input
    path.write_text(
        '[tiers.haiku]\nprices = [{ input = 1.0, output = 1.0, cache_write_1h = "x" }]\n'
    )
    with pytest.raises(TierConfigError) as info:
        load_ladder(path)
    assert [issue.key for issue in info.value.issues] == ["tiers.haiku.prices.0.cache_write_1h"]


# --- breakpoints ---------------------------------------------------------------------


class _Search:
    name = "search"
    description = "Search."
    input_schema: dict[str, Any] = {"type": "object", "properties": {}}  # noqa: RUF012


def test_breakpoints_carry_the_ttl_asked_for() -> None:
    assert cache_control() == EPHEMERAL == {"type": "ephemeral"}  # 5m: the API's default
    assert cache_control("1h") == HOUR
    mark = cache_control()
    mark["ttl"] = "1h"
    assert EPHEMERAL == {"type": "ephemeral"}  # every mark is a fresh dict
    tool = _Search()  # what tool_specs reads of a Tool
    assert tool_specs([tool], cache=True, ttl="1h")[-1]["cache_control"] == HOUR
    assert tool_specs([tool], cache=True)[-1]["cache_control"] == EPHEMERAL
    turn = Message(role="user", content=(TextBlock(text="shared", cache=True), TextBlock(text="q")))
    blocks = message_param(turn, cache=True, ttl="1h")["content"]
    assert [block.get("cache_control") for block in blocks] == [HOUR, None]
    assert "cache_control" not in message_param(turn, cache=False, ttl="1h")["content"][0]


def test_no_one_hour_breakpoint_is_left_after_a_five_minute_one() -> None:
    params: dict[str, Any] = {
        "tools": [{"name": "t", "cache_control": cache_control("1h")}],
        "system": [{"type": "text", "text": "s", "cache_control": cache_control("5m")}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": HOUR}]},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    assert marks_one_hour(params)
    mark_conversation(params, ttl="1h")  # the tail, after the 5m system prompt: shortened
    ttls = [
        params["tools"][0]["cache_control"].get("ttl"),
        params["system"][0]["cache_control"].get("ttl"),
        params["messages"][0]["content"][0]["cache_control"].get("ttl"),
        params["messages"][2]["content"][0]["cache_control"].get("ttl"),
    ]
    assert ttls == ["1h", None, None, None]  # the tools' hour, before any 5m one, is kept
    top = {"messages": [{"role": "user", "content": "x"}], "cache_control": HOUR}
    top["system"] = [{"type": "text", "text": "s", "cache_control": EPHEMERAL}]
    order_ttls(top)
    assert top["cache_control"] == EPHEMERAL
    assert not marks_one_hour(top)
    hours = {"system": [{"type": "text", "text": "s", "cache_control": HOUR}], "messages": []}
    order_ttls(hours)
    assert hours["system"][0]["cache_control"] == HOUR  # nothing to shorten


def test_the_response_split_of_cache_writes_is_read_by_attribute_or_key() -> None:
    sdk_like = SimpleNamespace(ephemeral_5m_input_tokens=300, ephemeral_1h_input_tokens=1_200)
    assert cache_write_split(sdk_like, 1_500) == (300, 1_200)
    as_json = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40}
    assert cache_write_split(as_json, 40) == (0, 40)
    assert cache_write_split(None, 700) == (700, 0)  # no split sent: all 5-minute writes
    assert cache_write_split(SimpleNamespace(ephemeral_1h_input_tokens=None), 9) == (9, 0)
    assert cache_write_split(sdk_like, 1_000) == (0, 1_000)  # never more than the total
    assert cache_write_split(SimpleNamespace(ephemeral_1h_input_tokens=-3), 5) == (5, 0)


def test_the_tiers_doc_example_of_cache_prices_is_the_built_in_sonnet(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "tiers.md").read_text(encoding="utf-8")
    example = doc.split("every cache price", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "tiers.toml"
    path.write_text(example, encoding="utf-8")
    assert load_ladder(path).get("sonnet").prices == default_ladder().get("sonnet").prices
