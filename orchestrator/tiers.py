"""Model tiers: what each costs, what it can do, and the ladder they form.

A :class:`Tier` is configuration: a model id, where to reach it, its prices (in bands by
prompt length), the capability level it covers per dimension, and its own concurrency limit.
A :class:`TierLadder` orders tiers from cheapest to strongest; routing climbs it.

The built-in ladder is :func:`default_ladder`. A TOML file overrides any field of it or adds
a tier with one table (see :func:`load_ladder` and ``docs/tiers.md``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.capabilities import Capabilities
from orchestrator.exceptions import ConfigIssue, TierConfigError
from orchestrator.pricing import NonNegative, PriceBand, Usage, price_for

__all__ = ["DEFAULT_TIERS", "Tier", "TierLadder", "default_ladder", "load_ladder"]


class Tier(BaseModel):
    """One rung of the ladder: a model, how to reach it, what it costs and covers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    """Short name used in plans, logs and traces, e.g. ``haiku``."""
    model: Annotated[str, Field(min_length=1)]
    """Model id sent to the API, e.g. ``claude-haiku-5-5``."""
    rank: int
    """Position on the ladder: lower is cheaper and weaker."""
    capabilities: Capabilities
    """Level covered in each capability dimension."""
    prices: Annotated[tuple[PriceBand, ...], Field(min_length=1)]
    """USD per million tokens, in bands by prompt length, the open-ended band last."""
    context_window: Annotated[int, Field(gt=0)]
    """Largest prompt plus output, in tokens."""
    max_output_tokens: Annotated[int, Field(gt=0)] = 4096
    """Default cap on output tokens per call (and the worst case the budget reserves)."""
    max_concurrency: Annotated[int, Field(gt=0)] = 16
    """Most attempts running on this tier at once."""
    cache_min_tokens: Annotated[int, Field(ge=0)] = 1024
    """Shortest prefix the model's prompt cache keeps (the API caches nothing shorter)."""
    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    """Rate limit shared by every call to this tier; ``None`` for none."""
    tokens_per_minute: Annotated[int, Field(gt=0)] | None = None
    """Input-token rate limit shared by every call to this tier; ``None`` for none."""
    base_url: str | None = None
    """Messages-API endpoint; ``None`` uses ``ANTHROPIC_BASE_URL`` or the SDK default."""
    api_key_env: str | None = None
    """Environment variable holding this tier's API key; ``None``: ``ANTHROPIC_API_KEY``."""

    web_search_usd: NonNegative = Decimal("0.01")
    """USD per server-side web search (Anthropic's public price: $10 per 1,000)."""
    batch_price: Annotated[NonNegative, Field(le=1)] = Decimal("0.5")
    """The fraction of its token prices a call sent in a Message Batch pays (the Batches
    API's published discount: half price, input, output and cache alike)."""

    @field_validator("prices")
    @classmethod
    def _bands_ascend(cls, bands: tuple[PriceBand, ...]) -> tuple[PriceBand, ...]:
        limits = [band.up_to_prompt_tokens for band in bands]
        if limits[-1] is not None:
            raise ValueError("the last price band must be open-ended (no up_to_prompt_tokens)")
        bounded = [limit for limit in limits[:-1] if limit is not None]
        if len(bounded) != len(limits) - 1 or bounded != sorted(set(bounded)):
            raise ValueError("up_to_prompt_tokens must strictly increase, open-ended band last")
        return bands

    def cost(self, usage: Usage) -> Decimal:
        """Return the exact USD cost of ``usage`` on this tier (band chosen by prompt length)."""
        searches = usage.web_search_requests * self.web_search_usd
        return price_for(self.prices, usage.prompt_tokens).cost(usage) + searches

    def batch_cost(self, usage: Usage) -> Decimal:
        """Return the exact USD cost of ``usage`` in a Message Batch (searches at full price)."""
        searches = usage.web_search_requests * self.web_search_usd
        return (self.cost(usage) - searches) * self.batch_price + searches

    def worst_case_cost(
        self, prompt_tokens: int, max_output_tokens: int, *, one_hour: bool = False
    ) -> Decimal:
        """Return the most a call with this prompt size and output cap can cost.

        Every prompt token is priced as uncached input or a 5-minute cache write, whichever
        is dearer; with ``one_hour`` (the call marks a 1-hour breakpoint, so its writes may
        be 1-hour ones) also as a 1-hour write, if that is dearer still. A call without a
        1-hour breakpoint is never billed a 1-hour write, so reserving for one would only
        hold money back from calls that fit.
        """
        band = price_for(self.prices, prompt_tokens)
        as_input = Usage(input_tokens=prompt_tokens, output_tokens=max_output_tokens)
        as_5m = Usage(cache_write_tokens=prompt_tokens, output_tokens=max_output_tokens)
        worst = max(band.cost(as_input), band.cost(as_5m))
        if one_hour:
            as_1h = as_5m.model_copy(update={"cache_write_1h_tokens": prompt_tokens})
            worst = max(worst, band.cost(as_1h))
        return worst


class TierLadder(BaseModel):
    """Tiers ordered from cheapest to strongest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: Annotated[tuple[Tier, ...], Field(min_length=1)]
    """The tiers, sorted by rank on construction."""

    @field_validator("tiers")
    @classmethod
    def _sorted_unique(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        names = [tier.name for tier in tiers]
        dupes = sorted({name for name in names if names.count(name) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        ranks = [tier.rank for tier in tiers]
        if len(set(ranks)) != len(ranks):
            raise ValueError("tier ranks must be unique (they order the ladder)")
        return tuple(sorted(tiers, key=lambda tier: tier.rank))

    def __len__(self) -> int:
        return len(self.tiers)

    def __getitem__(self, index: int) -> Tier:
        return self.tiers[index]

    @property
    def names(self) -> list[str]:
        """Tier names, cheapest first."""
        return [tier.name for tier in self.tiers]

    def index(self, name: str) -> int:
        """Return the position of the tier called ``name``.

        Raises:
            KeyError: Naming the known tiers, if there is no such tier.
        """
        for position, tier in enumerate(self.tiers):
            if tier.name == name:
                return position
        raise KeyError(f"no tier named {name!r}; tiers are {', '.join(self.names)}")

    def get(self, name: str) -> Tier:
        """Return the tier called ``name`` (raises ``KeyError`` naming the known tiers)."""
        return self.tiers[self.index(name)]

    def with_endpoint(self, base_url: str, *, api_key_env: str | None = None) -> TierLadder:
        """The same ladder with every tier sent to one Messages-API endpoint.

        For a proxy, a gateway, a local model server or the bundled simulator
        (``ladder.with_endpoint(sim.base_url)``). ``api_key_env`` names the variable holding
        that endpoint's key; ``None`` uses the client's default key.
        """
        update = {"base_url": base_url, "api_key_env": api_key_env}
        return TierLadder(tiers=tuple(tier.model_copy(update=update) for tier in self.tiers))


DEFAULT_TIERS: dict[str, dict[str, Any]] = {
    "haiku": {
        "model": "claude-haiku-5-5",
        "rank": 10,
        "capabilities": {"reasoning": 1, "long_context": 1, "coding": 1, "tool_use": 2},
        "prices": [
            {"up_to_prompt_tokens": 100_000, "input": 0.10, "output": 0.50,
             "cache_write": 0.125, "cache_write_1h": 0.20, "cache_read": 0.01},
            {"input": 0.50, "output": 2.50, "cache_write": 0.625, "cache_write_1h": 1.00,
             "cache_read": 0.05},
        ],
        "context_window": 200_000,
        "max_output_tokens": 4096,
        "max_concurrency": 32,
    },
    "sonnet": {
        "model": "claude-sonnet-5-5",
        "rank": 20,
        "capabilities": {"reasoning": 2, "long_context": 2, "coding": 2, "tool_use": 3},
        "prices": [{"input": 2.0, "output": 10.0, "cache_write": 2.50, "cache_write_1h": 4.0,
                    "cache_read": 0.20}],
        "context_window": 1_000_000,
        "max_output_tokens": 8192,
        "max_concurrency": 16,
    },
    "opus": {
        "model": "claude-opus-5-5",
        "rank": 30,
        "capabilities": {"reasoning": 3, "long_context": 3, "coding": 3, "tool_use": 3},
        "prices": [{"input": 4.0, "output": 20.0, "cache_write": 5.0, "cache_write_1h": 8.0,
                    "cache_read": 0.40}],
        "context_window": 1_000_000,
        "max_output_tokens": 8192,
        "max_concurrency": 8,
    },
}  # fmt: skip
"""The built-in ladder as data: today's Haiku < Sonnet < Opus at public prices."""


def default_ladder() -> TierLadder:
    """Return the built-in ladder: Haiku 5.5 < Sonnet 5.5 < Opus 5.5."""
    return _build(DEFAULT_TIERS, "<default>")


def load_ladder(path: str | Path | None = None) -> TierLadder:
    """Load a ladder from a TOML file layered over the built-in one.

    The file has one table per tier under ``tiers``. A table naming a built-in tier
    overrides only the keys it sets (nested tables such as ``capabilities`` merge key by
    key; lists such as ``prices`` replace). A table with a new name adds a tier, placed by
    its ``rank``. ``enabled = false`` drops a tier; ``replace_defaults = true`` at the top
    starts from an empty ladder.

    Args:
        path: The TOML file; ``None`` returns the built-in ladder.

    Raises:
        TierConfigError: Naming the file, each wrong key and how to fix it.
    """
    if path is None:
        return default_ladder()
    source = str(path)
    data = _read_toml(Path(path))
    unknown = sorted(set(data) - {"tiers", "replace_defaults"})
    issues = [
        ConfigIssue(
            key, "unknown top-level key", "use only [tiers.NAME] tables and replace_defaults"
        )
        for key in unknown
    ]
    replace = data.get("replace_defaults", False)
    if not isinstance(replace, bool):
        issues.append(
            ConfigIssue(
                "replace_defaults", "must be true or false", "write replace_defaults = true"
            )
        )
    tables = data.get("tiers", {})
    if not isinstance(tables, dict):
        issues.append(ConfigIssue("tiers", "must be a table of tiers", "write [tiers.NAME] tables"))
        tables = {}
    if issues:
        raise TierConfigError(source, issues)
    merged = _merge({} if replace else DEFAULT_TIERS, tables, source)
    return _build(merged, source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _file_error(path, "no such file", "check the path given to --tiers") from None
    except IsADirectoryError:
        raise _file_error(path, "is a directory", "give the tiers file (TOML) itself") from None
    except OSError as exc:
        raise _file_error(
            path, f"cannot be read ({exc.strerror})", "check the path given to --tiers"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _file_error(
            path,
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save the tiers file as UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TierConfigError(
            str(path), [ConfigIssue("(syntax)", str(exc), "fix the TOML syntax at that place")]
        ) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise TierConfigError(
            str(path),
            [ConfigIssue("(syntax)", "arrays or inline tables nested too deep", "nest less")],
        ) from None


def _file_error(path: Path, problem: str, fix: str) -> TierConfigError:
    return TierConfigError(str(path), [ConfigIssue("(file)", problem, fix)])


def _merge(
    base: Mapping[str, Mapping[str, Any]], tables: Mapping[str, Any], source: str
) -> dict[str, dict[str, Any]]:
    merged = {name: dict(fields) for name, fields in base.items()}
    issues = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            issues.append(ConfigIssue(f"tiers.{name}", "must be a table", f"write [tiers.{name}]"))
            continue
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            issues.append(
                ConfigIssue(
                    f"tiers.{name}.enabled",
                    f"must be true or false, not {enabled!r}",
                    "write enabled = false (unquoted) to drop the tier",
                )
            )
            continue
        if not enabled:
            merged.pop(name, None)
            continue
        fields = merged.setdefault(name, {})
        for key, value in table.items():
            if key == "enabled":
                continue
            current = fields.get(key)
            if isinstance(current, dict) and isinstance(value, dict):
                fields[key] = {**current, **value}
            else:
                fields[key] = value
    if issues:
        raise TierConfigError(source, issues)
    if not merged:
        raise TierConfigError(
            source, [ConfigIssue("tiers", "no tier is left", "define or enable at least one tier")]
        )
    return merged


def _build(tables: Mapping[str, Mapping[str, Any]], source: str) -> TierLadder:
    tiers = []
    issues = []
    for name, fields in tables.items():
        try:
            tiers.append(Tier.model_validate({**fields, "name": name}))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            # pydantic re-checks a tuple's length after dropping its invalid items, so one
            # bad price band would also report "too short"; the item's own issue says it all.
            deeper = {err["loc"][:1] for err in errors if len(err["loc"]) > 1}
            issues += [
                _issue(f"tiers.{name}", err)
                for err in errors
                if not (err["type"] == "too_short" and err["loc"][:1] in deeper)
            ]
    if issues:
        raise TierConfigError(source, issues)
    ranks: dict[int, list[str]] = {}
    for tier in tiers:
        ranks.setdefault(tier.rank, []).append(tier.name)
    shared = [names for names in ranks.values() if len(names) > 1]
    if shared:
        raise TierConfigError(
            source,
            [
                ConfigIssue(
                    f"tiers.{names[-1]}.rank",
                    f"rank {tables[names[-1]]['rank']} is also the rank of "
                    + ", ".join(names[:-1])
                    + " (ranks order the ladder)",
                    "give each tier a unique rank",
                )
                for names in shared
            ],
        )
    try:
        return TierLadder(tiers=tuple(tiers))
    except ValidationError as exc:
        raise TierConfigError(
            source, [_issue("tiers", err) for err in exc.errors(include_url=False)]
        ) from None


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it, or check its spelling against docs/tiers.md",
    "greater_than": "use a larger number",
    "greater_than_equal": "use a number at least as large as the minimum",
    "less_than_equal": "use a smaller number",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "float_parsing": "use a number",
    "float_type": "use a number",
    "decimal_parsing": "use a number",
    "decimal_type": "use a number",
    "finite_number": "use a finite number",
    "string_type": 'use a quoted string, e.g. "value"',
    "string_pattern_mismatch": "use letters, digits, '_', '.' or '-' only",
    "too_short": "give at least one entry",
}


def _issue(prefix: str, err: Any) -> ConfigIssue:
    loc = ".".join(str(part) for part in err["loc"])
    key = f"{prefix}.{loc}" if loc else prefix
    fix = _FIXES.get(err["type"], "see docs/tiers.md for the expected value")
    return ConfigIssue(key, str(err["msg"]), fix)
