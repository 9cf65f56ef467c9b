"""The tier ladder: built-in tiers and prices, TOML overrides, and errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import (
    Capabilities,
    PriceBand,
    Tier,
    TierConfigError,
    TierLadder,
    Usage,
    UserError,
    default_ladder,
    load_ladder,
)
from orchestrator.tiers import DEFAULT_TIERS

MTOK = 1_000_000


def write(tmp_path: Path, text: str, name: str = "tiers.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> TierConfigError:
    with pytest.raises(TierConfigError) as info:
        load_ladder(path)
    error = info.value
    assert isinstance(error, UserError)
    assert error.source == str(path)
    assert str(path) in str(error)
    assert error.issues
    for issue in error.issues:
        assert issue.fix, issue
        assert str(issue) in str(error)
    return error


def keys(error: TierConfigError) -> list[str]:
    return [issue.key for issue in error.issues]


def simple_tier(name: str, rank: int, **fields: object) -> Tier:
    values: dict[str, object] = {
        "name": name,
        "model": f"model-{name}",
        "rank": rank,
        "capabilities": Capabilities(),
        "prices": (PriceBand(input=1.0, output=2.0),),
        "context_window": 1000,
        **fields,
    }
    return Tier.model_validate(values)


# --- the built-in ladder ---------------------------------------------------------------------


def test_default_ladder_is_haiku_sonnet_opus() -> None:
    ladder = default_ladder()
    assert ladder.names == ["haiku", "sonnet", "opus"]
    assert len(ladder) == 3
    assert [tier.model for tier in ladder.tiers] == [
        "claude-haiku-5-5",
        "claude-sonnet-5-5",
        "claude-opus-5-5",
    ]
    ranks = [tier.rank for tier in ladder.tiers]
    assert ranks == sorted(ranks)
    assert ladder[0].name == "haiku"
    assert ladder[-1].name == "opus"


def test_load_ladder_without_path_is_the_default() -> None:
    assert load_ladder() == default_ladder()
    assert load_ladder(None).names == ["haiku", "sonnet", "opus"]


def test_default_capabilities_and_windows() -> None:
    ladder = default_ladder()
    haiku, sonnet, opus = ladder.tiers
    assert haiku.capabilities.levels() == {
        "reasoning": 1,
        "long_context": 1,
        "coding": 1,
        "tool_use": 2,
    }
    assert sonnet.capabilities.levels() == {
        "reasoning": 2,
        "long_context": 2,
        "coding": 2,
        "tool_use": 3,
    }
    assert opus.capabilities.levels() == dict.fromkeys(
        ["reasoning", "long_context", "coding", "tool_use"], 3
    )
    assert haiku.context_window == 200_000
    assert sonnet.context_window == opus.context_window == 1_000_000
    # Each tier is at least as capable as the one below it.
    for lower, upper in zip(ladder.tiers, ladder.tiers[1:], strict=False):
        for name, level in lower.capabilities.levels().items():
            assert upper.capabilities.levels()[name] >= level


@pytest.mark.parametrize(
    ("prompt", "input_price", "output_price"),
    [
        (1, 0.10, 0.50),
        (99_999, 0.10, 0.50),
        (100_000, 0.10, 0.50),
        (100_001, 0.50, 2.50),
        (150_000, 0.50, 2.50),
    ],
)
def test_haiku_prices_by_prompt_band(prompt: int, input_price: float, output_price: float) -> None:
    haiku = default_ladder().get("haiku")
    usage = Usage(input_tokens=prompt, output_tokens=1000)
    expected = (prompt * input_price + 1000 * output_price) / MTOK
    assert float(haiku.cost(usage)) == pytest.approx(expected)


def test_haiku_band_counts_cache_reads_and_writes_as_prompt() -> None:
    haiku = default_ladder().get("haiku")
    # 99_000 uncached + 500 read + 500 written = 100_000 prompt tokens: the cheap band.
    under = Usage(
        input_tokens=99_000, cache_read_tokens=500, cache_write_tokens=500, output_tokens=10_000
    )
    assert under.prompt_tokens == 100_000
    assert float(haiku.cost(under)) == pytest.approx(
        (99_000 * 0.10 + 500 * 0.01 + 500 * 0.125 + 10_000 * 0.50) / MTOK
    )
    # Only 99_000 uncached, but one more cache-read token makes it 100_001: the dear band.
    over = Usage(
        input_tokens=99_000, cache_read_tokens=501, cache_write_tokens=500, output_tokens=10_000
    )
    assert over.prompt_tokens == 100_001
    assert float(haiku.cost(over)) == pytest.approx(
        (99_000 * 0.50 + 501 * 0.05 + 500 * 0.625 + 10_000 * 2.50) / MTOK
    )
    assert haiku.cost(over) > 4 * haiku.cost(under)


@pytest.mark.parametrize(
    ("name", "input_price", "output_price", "write_price", "read_price"),
    [("sonnet", 2.0, 10.0, 2.50, 0.20), ("opus", 4.0, 20.0, 5.0, 0.40)],
)
@pytest.mark.parametrize("prompt", [1_000, 500_000])
def test_sonnet_and_opus_prices(
    name: str,
    input_price: float,
    output_price: float,
    write_price: float,
    read_price: float,
    prompt: int,
) -> None:
    tier = default_ladder().get(name)
    assert float(tier.cost(Usage(input_tokens=MTOK))) == pytest.approx(input_price)
    assert float(tier.cost(Usage(output_tokens=MTOK))) == pytest.approx(output_price)
    assert float(tier.cost(Usage(cache_write_tokens=MTOK))) == pytest.approx(write_price)
    assert float(tier.cost(Usage(cache_read_tokens=MTOK))) == pytest.approx(read_price)
    # One flat band: the price per token does not depend on the prompt size.
    usage = Usage(input_tokens=prompt, output_tokens=2_000)
    assert float(tier.cost(usage)) == pytest.approx(
        (prompt * input_price + 2_000 * output_price) / MTOK
    )


def test_haiku_cache_prices() -> None:
    haiku = default_ladder().get("haiku")
    assert float(haiku.cost(Usage(cache_write_tokens=50_000))) == pytest.approx(
        50_000 * 0.125 / MTOK
    )
    assert float(haiku.cost(Usage(cache_read_tokens=50_000))) == pytest.approx(50_000 * 0.01 / MTOK)
    assert float(haiku.cost(Usage(cache_write_tokens=200_000))) == pytest.approx(
        200_000 * 0.625 / MTOK
    )
    assert float(haiku.cost(Usage(cache_read_tokens=200_000))) == pytest.approx(
        200_000 * 0.05 / MTOK
    )


def test_zero_usage_costs_nothing() -> None:
    for tier in default_ladder().tiers:
        assert tier.cost(Usage()) == 0.0


@pytest.mark.parametrize("name", ["haiku", "sonnet", "opus"])
def test_worst_case_prices_every_prompt_token_at_the_dearest_input_rate(name: str) -> None:
    tier = default_ladder().get(name)
    worst = tier.worst_case_cost(120_000, 4096)
    # Cache writes cost more than uncached input on every default tier.
    assert worst == tier.cost(Usage(cache_write_tokens=120_000, output_tokens=4096))
    assert worst > tier.cost(Usage(input_tokens=120_000, output_tokens=4096))


def test_default_concurrency_and_output_caps() -> None:
    haiku, sonnet, opus = default_ladder().tiers
    assert (haiku.max_concurrency, sonnet.max_concurrency, opus.max_concurrency) == (32, 16, 8)
    assert (haiku.max_output_tokens, sonnet.max_output_tokens, opus.max_output_tokens) == (
        4096,
        8192,
        8192,
    )


# --- ladder lookups ----------------------------------------------------------------------------


def test_index_and_get() -> None:
    ladder = default_ladder()
    assert [ladder.index(name) for name in ("haiku", "sonnet", "opus")] == [0, 1, 2]
    assert ladder.get("sonnet").model == "claude-sonnet-5-5"


@pytest.mark.parametrize("method", ["index", "get"])
def test_unknown_tier_name_raises_key_error_naming_known_tiers(method: str) -> None:
    ladder = default_ladder()
    with pytest.raises(KeyError, match="gpt") as info:
        getattr(ladder, method)("gpt")
    for name in ladder.names:
        assert name in str(info.value)


def test_ladder_sorts_by_rank_and_rejects_duplicates() -> None:
    ladder = TierLadder(tiers=(simple_tier("top", 30), simple_tier("low", 1), simple_tier("m", 7)))
    assert ladder.names == ["low", "m", "top"]
    with pytest.raises(ValueError, match="ranks must be unique"):
        TierLadder(tiers=(simple_tier("a", 1), simple_tier("b", 1)))
    with pytest.raises(ValueError, match="repeated: a"):
        TierLadder(tiers=(simple_tier("a", 1), simple_tier("a", 2)))


def test_price_bands_must_ascend_with_open_band_last() -> None:
    open_band = PriceBand(input=1.0, output=1.0)
    with pytest.raises(ValueError, match="open-ended"):
        simple_tier("t", 1, prices=(PriceBand(up_to_prompt_tokens=10, input=1.0, output=1.0),))
    with pytest.raises(ValueError, match="strictly increase"):
        simple_tier(
            "t",
            1,
            prices=(
                PriceBand(up_to_prompt_tokens=20, input=1.0, output=1.0),
                PriceBand(up_to_prompt_tokens=10, input=1.0, output=1.0),
                open_band,
            ),
        )
    with pytest.raises(ValueError, match="strictly increase"):
        simple_tier("t", 1, prices=(open_band, open_band))


# --- TOML overrides ----------------------------------------------------------------------------


def test_override_one_field_keeps_the_rest(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, "[tiers.haiku]\nmax_concurrency = 4\n"))
    default = default_ladder()
    haiku = ladder.get("haiku")
    assert haiku.max_concurrency == 4
    assert haiku.model_dump(exclude={"max_concurrency"}) == default.get("haiku").model_dump(
        exclude={"max_concurrency"}
    )
    assert ladder.get("sonnet") == default.get("sonnet")
    assert ladder.get("opus") == default.get("opus")


def test_override_accepts_a_path_string(tmp_path: Path) -> None:
    path = write(tmp_path, '[tiers.opus]\nmodel = "claude-opus-6"\n')
    assert load_ladder(str(path)).get("opus").model == "claude-opus-6"


@pytest.mark.parametrize(
    "text",
    [
        "[tiers.sonnet.capabilities]\ncoding = 3\n",
        "[tiers.sonnet]\ncapabilities = { coding = 3 }\n",
    ],
    ids=["sub-table", "inline-table"],
)
def test_capabilities_merge_key_by_key(tmp_path: Path, text: str) -> None:
    sonnet = load_ladder(write(tmp_path, text)).get("sonnet")
    assert sonnet.capabilities.levels() == {
        "reasoning": 2,
        "long_context": 2,
        "coding": 3,
        "tool_use": 3,
    }


def test_prices_list_replaces_the_default_bands(tmp_path: Path) -> None:
    text = "[tiers.haiku]\nprices = [{ input = 1.0, output = 5.0 }]\n"
    haiku = load_ladder(write(tmp_path, text)).get("haiku")
    assert haiku.prices == (PriceBand(input=1.0, output=5.0),)
    assert float(haiku.cost(Usage(input_tokens=150_000))) == pytest.approx(0.15)


def test_loading_overrides_leaves_the_builtin_ladder_alone(tmp_path: Path) -> None:
    before = default_ladder()
    text = (
        "[tiers.haiku]\nmax_concurrency = 1\ncapabilities = { coding = 3 }\n"
        "prices = [{ input = 9.0, output = 9.0 }]\n[tiers.opus]\nenabled = false\n"
    )
    load_ladder(write(tmp_path, text))
    assert default_ladder() == before
    assert DEFAULT_TIERS["haiku"]["capabilities"]["coding"] == 1
    assert "opus" in DEFAULT_TIERS


FABLE = """
[tiers.fable]
model = "claude-fable-1"
rank = 40
context_window = 1000000
capabilities = { reasoning = 3, long_context = 3, coding = 3, tool_use = 3 }
prices = [{ input = 15.0, output = 75.0 }]
"""

LOCAL = """
[tiers.local]
model = "llama-3.3-70b-instruct"
rank = 5
base_url = "http://127.0.0.1:8080"
api_key_env = "LOCAL_LLM_KEY"
context_window = 131072
capabilities = { reasoning = 1, coding = 1 }
prices = [{ input = 0.0, output = 0.0 }]
"""


def test_new_tier_above_opus_sorts_last(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, FABLE))
    assert ladder.names == ["haiku", "sonnet", "opus", "fable"]
    fable = ladder[-1]
    assert fable.model == "claude-fable-1"
    assert fable.max_output_tokens == 4096  # the field default
    assert fable.max_concurrency == 16
    assert float(fable.cost(Usage(input_tokens=MTOK, output_tokens=MTOK))) == pytest.approx(90.0)
    # Cache prices default to 1.25x and 0.1x input.
    assert float(fable.cost(Usage(cache_write_tokens=MTOK))) == pytest.approx(18.75)
    assert float(fable.cost(Usage(cache_read_tokens=MTOK))) == pytest.approx(1.5)


def test_new_local_tier_below_haiku_sorts_first_and_is_free(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, LOCAL))
    assert ladder.names == ["local", "haiku", "sonnet", "opus"]
    local = ladder[0]
    assert local.rank == 5
    assert local.base_url == "http://127.0.0.1:8080"
    assert local.api_key_env == "LOCAL_LLM_KEY"
    assert local.capabilities.levels() == {
        "reasoning": 1,
        "long_context": 0,
        "coding": 1,
        "tool_use": 0,
    }
    usage = Usage(
        input_tokens=100_000, output_tokens=4000, cache_write_tokens=10, cache_read_tokens=9
    )
    assert local.cost(usage) == 0.0
    assert local.worst_case_cost(100_000, 4096) == 0.0


def test_the_documented_example_file_loads(tmp_path: Path) -> None:
    text = (
        "[tiers.haiku]\nmax_concurrency = 4\n\n[tiers.sonnet.capabilities]\ncoding = 3\n"
        + LOCAL
        + FABLE
    )
    ladder = load_ladder(write(tmp_path, text))
    assert ladder.names == ["local", "haiku", "sonnet", "opus", "fable"]
    assert ladder.get("haiku").max_concurrency == 4
    assert ladder.get("sonnet").capabilities.coding == 3


def test_enabled_false_removes_a_tier(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, "[tiers.sonnet]\nenabled = false\n"))
    assert ladder.names == ["haiku", "opus"]
    with pytest.raises(KeyError):
        ladder.get("sonnet")


def test_enabled_true_keeps_a_tier(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, "[tiers.sonnet]\nenabled = true\nmax_concurrency = 2\n"))
    assert ladder.names == ["haiku", "sonnet", "opus"]
    assert ladder.get("sonnet").max_concurrency == 2


def test_replace_defaults_starts_from_an_empty_ladder(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, "replace_defaults = true\n" + LOCAL + FABLE))
    assert ladder.names == ["local", "fable"]


def test_replace_defaults_false_keeps_the_defaults(tmp_path: Path) -> None:
    ladder = load_ladder(write(tmp_path, "replace_defaults = false\n" + FABLE))
    assert ladder.names == ["haiku", "sonnet", "opus", "fable"]


def test_empty_file_is_the_default_ladder(tmp_path: Path) -> None:
    assert load_ladder(write(tmp_path, "")) == default_ladder()


# --- TOML errors: the file, the dotted key, a fix ---------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = config_error(tmp_path / "nope.toml")
    assert "no such file" in str(error)


def test_toml_syntax_error(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[tiers.haiku\nmax_concurrency = 4\n"))
    assert keys(error) == ["(syntax)"]
    assert "line 1" in str(error)


def test_unknown_key_in_a_tier(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, '[tiers.haiku]\ncolour = "red"\n'))
    assert keys(error) == ["tiers.haiku.colour"]
    assert "tiers.haiku.colour" in str(error)
    assert "spelling" in error.issues[0].fix


def test_unknown_capability_in_a_tier(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[tiers.opus.capabilities]\nspeed = 3\n"))
    assert keys(error) == ["tiers.opus.capabilities.speed"]
    assert "tiers.opus.capabilities.speed" in str(error)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "default_tier = 'haiku'\n"))
    assert keys(error) == ["default_tier"]


@pytest.mark.parametrize(
    ("text", "key", "fix_words"),
    [
        ('[tiers.haiku]\nmax_concurrency = "many"\n', "tiers.haiku.max_concurrency", "whole"),
        ("[tiers.haiku]\nmax_concurrency = 0\n", "tiers.haiku.max_concurrency", "larger"),
        ("[tiers.sonnet]\nmodel = 5\n", "tiers.sonnet.model", "quoted string"),
        ("[tiers.opus.capabilities]\ncoding = 4\n", "tiers.opus.capabilities.coding", "smaller"),
        (
            '[tiers.haiku]\nprices = [{ input = "cheap", output = 1.0 }]\n',
            "tiers.haiku.prices.0.input",
            "number",
        ),
    ],
)
def test_wrong_type_or_value(tmp_path: Path, text: str, key: str, fix_words: str) -> None:
    error = config_error(write(tmp_path, text))
    assert key in keys(error)
    assert key in str(error)
    assert fix_words in str(error)


def test_a_tier_that_is_not_a_table(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[tiers]\nhaiku = 3\n"))
    assert keys(error) == ["tiers.haiku"]


def test_price_bands_in_wrong_order(tmp_path: Path) -> None:
    text = """
[tiers.haiku]
prices = [
  { up_to_prompt_tokens = 200000, input = 0.2, output = 1.0 },
  { up_to_prompt_tokens = 100000, input = 0.1, output = 0.5 },
  { input = 0.5, output = 2.5 },
]
"""
    error = config_error(write(tmp_path, text))
    assert keys(error) == ["tiers.haiku.prices"]
    assert "strictly increase" in str(error)


def test_open_ended_band_not_last(tmp_path: Path) -> None:
    text = """
[tiers.haiku]
prices = [
  { input = 0.5, output = 2.5 },
  { up_to_prompt_tokens = 100000, input = 0.1, output = 0.5 },
]
"""
    error = config_error(write(tmp_path, text))
    assert keys(error) == ["tiers.haiku.prices"]
    assert "open-ended" in str(error)


def test_duplicate_rank(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, FABLE.replace("rank = 40", "rank = 30")))
    assert "rank" in str(error)
    assert "unique" in str(error)


def test_duplicate_rank_names_the_tiers_and_key(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, FABLE.replace("rank = 40", "rank = 30")))
    text = str(error)
    assert "tiers.tiers" not in keys(error)
    assert "tiers.fable.rank" in text or "tiers.opus.rank" in text
    assert "fable" in text
    assert "opus" in text


def test_new_tier_missing_required_fields(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "[tiers.fable]\ncapabilities = { coding = 3 }\n"))
    assert sorted(keys(error)) == sorted(
        [
            "tiers.fable.model",
            "tiers.fable.rank",
            "tiers.fable.prices",
            "tiers.fable.context_window",
        ]
    )
    for issue in error.issues:
        assert issue.key in str(error)
        assert issue.fix == "add this key"


def test_replace_defaults_requires_full_tables(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "replace_defaults = true\n[tiers.haiku]\nrank = 1\n"))
    assert "tiers.haiku.model" in keys(error)


def test_every_issue_in_every_tier_is_reported_at_once(tmp_path: Path) -> None:
    text = '[tiers.haiku]\nmax_concurrency = "many"\n\n[tiers.fable]\nrank = 40\n' + (
        "context_window = 1000\ncapabilities = {}\nprices = [{ input = 1.0, output = 1.0 }]\n"
    )
    error = config_error(write(tmp_path, text))
    assert keys(error) == ["tiers.haiku.max_concurrency", "tiers.fable.model"]
    assert "2 problems" in str(error)


def test_disabling_every_tier_is_an_error(tmp_path: Path) -> None:
    text = "".join(f"[tiers.{name}]\nenabled = false\n" for name in ("haiku", "sonnet", "opus"))
    error = config_error(write(tmp_path, text))
    assert keys(error) == ["tiers"]
    assert "no tier" in str(error)


@pytest.mark.parametrize("value", ['"false"', "0"])
def test_non_boolean_enabled_is_reported(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[tiers.opus]\nenabled = {value}\n")
    with pytest.raises(TierConfigError, match=r"tiers\.opus\.enabled"):
        load_ladder(path)


def test_non_boolean_replace_defaults_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, 'replace_defaults = "no"\n' + FABLE)
    with pytest.raises(TierConfigError, match="replace_defaults"):
        load_ladder(path)


def test_one_bad_price_is_one_issue(tmp_path: Path) -> None:
    error = config_error(
        write(tmp_path, "[tiers.haiku]\nprices = [{ input = -1.0, output = 1.0 }]\n")
    )
    assert keys(error) == ["tiers.haiku.prices.0.input"]


def test_negative_price_is_reported(tmp_path: Path) -> None:
    error = config_error(
        write(tmp_path, "[tiers.haiku]\nprices = [{ input = -1.0, output = 1.0 }]\n")
    )
    assert "tiers.haiku.prices.0.input" in keys(error)
    assert "greater than or equal to 0" in str(error)
