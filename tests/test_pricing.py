"""Usage arithmetic, price bands and the worst-case cost the budget reserves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import Capabilities, PriceBand, Tier, Usage, default_ladder
from orchestrator.pricing import price_for

FAST = settings(max_examples=100, deadline=None)
MTOK = 1_000_000


def test_usage_defaults_to_zero() -> None:
    usage = Usage()
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (0, 0)
    assert usage.prompt_tokens == 0


def test_prompt_tokens_include_cache_reads_and_writes_but_not_output() -> None:
    usage = Usage(input_tokens=100, output_tokens=7, cache_write_tokens=20, cache_read_tokens=3)
    assert usage.prompt_tokens == 123


def test_usage_addition_sums_every_field() -> None:
    a = Usage(input_tokens=1, output_tokens=2, cache_write_tokens=3, cache_read_tokens=4)
    b = Usage(input_tokens=10, output_tokens=20, cache_write_tokens=30, cache_read_tokens=40)
    total = a + b
    assert total == Usage(
        input_tokens=11, output_tokens=22, cache_write_tokens=33, cache_read_tokens=44
    )
    assert total.prompt_tokens == a.prompt_tokens + b.prompt_tokens
    assert a + Usage() == a
    # Operands are left untouched.
    assert a == Usage(input_tokens=1, output_tokens=2, cache_write_tokens=3, cache_read_tokens=4)


usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 10**7),
    output_tokens=st.integers(0, 10**6),
    cache_write_tokens=st.integers(0, 10**7),
    cache_read_tokens=st.integers(0, 10**7),
)


@FAST
@given(a=usages, b=usages, c=usages)
def test_usage_addition_is_associative_and_commutative(a: Usage, b: Usage, c: Usage) -> None:
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b).prompt_tokens == a.prompt_tokens + b.prompt_tokens


@FAST
@given(a=usages, b=usages)
def test_cost_is_additive(a: Usage, b: Usage) -> None:
    band = PriceBand(input=3.0, output=15.0)
    assert band.cost(a + b) == band.cost(a) + band.cost(b)  # exact: money is Decimal


@pytest.mark.parametrize(
    "field", ["input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"]
)
def test_negative_token_counts_are_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Usage(**{field: -1})


def test_price_band_default_cache_prices() -> None:
    band = PriceBand(input=4.0, output=20.0)
    assert float(band.cost(Usage(cache_write_tokens=MTOK))) == pytest.approx(5.0)  # 1.25 x input
    assert float(band.cost(Usage(cache_read_tokens=MTOK))) == pytest.approx(0.4)  # 0.1 x input
    assert float(band.cost(Usage(input_tokens=MTOK))) == pytest.approx(4.0)
    assert float(band.cost(Usage(output_tokens=MTOK))) == pytest.approx(20.0)


def test_price_band_explicit_cache_prices_win() -> None:
    band = PriceBand(input=4.0, output=20.0, cache_write=1.0, cache_read=0.0)
    assert float(band.cost(Usage(cache_write_tokens=MTOK))) == pytest.approx(1.0)
    assert band.cost(Usage(cache_read_tokens=MTOK)) == 0.0


def test_price_band_cost_sums_every_kind_of_token() -> None:
    band = PriceBand(input=1.0, output=2.0, cache_write=3.0, cache_read=4.0)
    usage = Usage(input_tokens=1000, output_tokens=100, cache_write_tokens=10, cache_read_tokens=1)
    assert float(band.cost(usage)) == pytest.approx((1000 * 1 + 100 * 2 + 10 * 3 + 1 * 4) / MTOK)


@pytest.mark.parametrize("field", ["input", "output", "cache_write", "cache_read"])
def test_negative_prices_are_rejected(field: str) -> None:
    values = {"input": 1.0, "output": 1.0, field: -0.01}
    with pytest.raises(ValueError, match=field):
        PriceBand(**values)


def test_price_for_picks_the_band_by_prompt_length() -> None:
    small = PriceBand(up_to_prompt_tokens=1000, input=1.0, output=1.0)
    medium = PriceBand(up_to_prompt_tokens=5000, input=2.0, output=2.0)
    large = PriceBand(input=3.0, output=3.0)
    bands = (small, medium, large)
    assert price_for(bands, 0) is small
    assert price_for(bands, 1000) is small
    assert price_for(bands, 1001) is medium
    assert price_for(bands, 5000) is medium
    assert price_for(bands, 5001) is large
    assert price_for(bands, 10**9) is large
    assert price_for([large], 1) is large


# --- the worst case the budget reserves ---------------------------------------------------


prices = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False)


@st.composite
def bands(draw: st.DrawFn, up_to: int | None) -> PriceBand:
    band_input = draw(prices)
    # Reading from the cache never costs more than sending the tokens uncached.
    read = draw(st.none() | st.floats(min_value=0.0, max_value=band_input))
    return PriceBand(
        up_to_prompt_tokens=up_to,
        input=band_input,
        output=draw(prices),
        cache_write=draw(st.none() | prices),  # may be cheaper than input
        cache_write_1h=draw(st.none() | prices),  # may be cheaper than either
        cache_read=read,
    )


@st.composite
def tiers(draw: st.DrawFn) -> Tier:
    if draw(st.booleans()):
        return draw(st.sampled_from(default_ladder().tiers))
    limits = sorted(draw(st.sets(st.integers(1, 2_000_000), max_size=3)))
    tier_bands = [draw(bands(limit)) for limit in limits] + [draw(bands(None))]
    return Tier(
        name="t",
        model="m",
        rank=1,
        capabilities=Capabilities(),
        prices=tuple(tier_bands),
        context_window=10_000_000,
    )


@FAST
@given(tier=tiers(), data=st.data())
def test_worst_case_covers_any_usage_with_that_prompt_and_output_cap(
    tier: Tier, data: st.DataObject
) -> None:
    prompt = data.draw(st.integers(0, 3_000_000), label="prompt")
    max_output = data.draw(st.integers(1, 64_000), label="max_output")
    cached = data.draw(st.integers(0, prompt), label="cached")
    written = data.draw(st.integers(0, cached), label="written")
    one_hour = data.draw(st.booleans(), label="marks a 1-hour breakpoint")
    usage = Usage(
        input_tokens=prompt - cached,
        cache_write_tokens=written,
        cache_write_1h_tokens=data.draw(st.integers(0, written if one_hour else 0), label="1h"),
        cache_read_tokens=cached - written,
        output_tokens=data.draw(st.integers(0, max_output), label="output"),
    )
    assert usage.prompt_tokens == prompt
    worst = tier.worst_case_cost(prompt, max_output, one_hour=one_hour)
    assert worst >= tier.cost(usage)  # exact: no tolerance needed
    assert worst <= tier.worst_case_cost(prompt, max_output, one_hour=True)


@pytest.mark.parametrize("name", ["haiku", "sonnet", "opus"])
def test_worst_case_is_reached_by_an_all_cache_write_call(name: str) -> None:
    tier = default_ladder().get(name)
    for prompt in (0, 50_000, 100_000, 100_001, 900_000):
        worst = tier.worst_case_cost(prompt, 4096)
        all_written = Usage(cache_write_tokens=prompt, output_tokens=4096)
        assert worst == tier.cost(all_written)
        # A call that marks a 1-hour breakpoint may write everything for an hour, at 2x input.
        worst_1h = tier.worst_case_cost(prompt, 4096, one_hour=True)
        all_1h = all_written.model_copy(update={"cache_write_1h_tokens": prompt})
        assert worst_1h == tier.cost(all_1h)
        assert worst_1h - worst == prompt * (price_for(tier.prices, prompt).input * 3 / 4) / MTOK


def test_worst_case_uses_input_price_when_cache_writes_are_cheaper() -> None:
    tier = Tier(
        name="t",
        model="m",
        rank=1,
        capabilities=Capabilities(),
        prices=(PriceBand(input=2.0, output=8.0, cache_write=1.0),),
        context_window=1000,
    )
    assert float(tier.worst_case_cost(MTOK, MTOK)) == pytest.approx(10.0)


def test_worst_case_prices_prompt_as_cache_writes_at_the_default_rate() -> None:
    tier = Tier(
        name="t",
        model="m",
        rank=1,
        capabilities=Capabilities(),
        prices=(PriceBand(input=2.0, output=8.0),),  # cache write defaults to 1.25 x input
        context_window=1000,
    )
    worst = tier.worst_case_cost(MTOK, MTOK)
    assert float(worst) == pytest.approx(2.5 + 8.0)
    assert worst >= tier.cost(Usage(cache_write_tokens=MTOK, output_tokens=MTOK))
