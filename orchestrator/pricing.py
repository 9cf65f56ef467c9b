"""Token usage and what it costs: price bands by prompt length, USD per million tokens.

Money is exact: every amount is a :class:`~decimal.Decimal` (:data:`USD`), never a float,
so that what is reserved and then released sums back to exactly nothing and a budget's
remainder is never off by 1e-19. A price written ``0.8`` in a tiers file is ``0.8``
exactly. In JSON (``--json``, the store's records) amounts are written as numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

__all__ = ["USD", "ZERO_USD", "PriceBand", "Usage", "price_for", "to_usd"]

USD = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""An amount of US dollars, exact; a number in JSON."""

ZERO_USD = Decimal(0)
"""No money."""

_PER_TOKEN = Decimal("1e-6")  # prices are quoted per million tokens
_CACHE_WRITE = Decimal("1.25")  # Anthropic's 5-minute cache write, x input
_CACHE_WRITE_1H = Decimal(2)  # Anthropic's 1-hour cache write, x input
_CACHE_READ = Decimal("0.1")  # a cache read, x input

NonNegative = Annotated[
    Decimal,
    Field(ge=0, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]


def to_usd(value: Decimal | float | int | str) -> Decimal:
    """``value`` as an exact amount: a float is taken as its shortest repr (``0.1`` is 0.1).

    Raises:
        ValueError: If ``value`` is not a finite number.
    """
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"an amount of USD must be a finite number, not {value!r}")
    return amount


class Usage(BaseModel):
    """Tokens used by one model call (or a sum of calls).

    ``input_tokens`` excludes cached tokens, as in Anthropic's usage shape; the prompt's
    full size is :attr:`prompt_tokens`. ``cache_write_tokens`` counts every cache write, as
    the API's ``cache_creation_input_tokens`` does; ``cache_write_1h_tokens`` says how many
    of them were 1-hour writes (the API's ``cache_creation.ephemeral_1h_input_tokens``),
    priced apart; the rest, :attr:`cache_write_5m_tokens`, were 5-minute writes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    """Uncached input tokens."""
    output_tokens: int = Field(default=0, ge=0)
    """Generated tokens."""
    cache_write_tokens: int = Field(default=0, ge=0)
    """Input tokens written to the prompt cache (5-minute and 1-hour writes together)."""
    cache_write_1h_tokens: int = Field(default=0, ge=0)
    """Of ``cache_write_tokens``, those written with the 1-hour TTL."""
    cache_read_tokens: int = Field(default=0, ge=0)
    """Input tokens read from the prompt cache."""
    web_search_requests: int = Field(default=0, ge=0)
    """Searches made by the API's server-side web search tool (billed per search)."""

    @model_validator(mode="after")
    def _one_hour_writes_are_writes(self) -> Usage:
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                f"cache_write_1h_tokens ({self.cache_write_1h_tokens}) counts part of "
                f"cache_write_tokens ({self.cache_write_tokens}) and cannot exceed it"
            )
        return self

    @property
    def cache_write_5m_tokens(self) -> int:
        """Of ``cache_write_tokens``, those written with the 5-minute TTL."""
        return self.cache_write_tokens - self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every input token: uncached, cache-written and cache-read."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def uncached(self) -> Usage:
        """The same call had nothing been cached: every prompt token uncached input."""
        return Usage.model_construct(
            input_tokens=self.prompt_tokens, output_tokens=self.output_tokens,
            cache_write_tokens=0, cache_write_1h_tokens=0, cache_read_tokens=0,
            web_search_requests=self.web_search_requests,
        )  # fmt: skip

    def __add__(self, other: Usage) -> Usage:
        return Usage.model_construct(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
        )


class PriceBand(BaseModel):
    """Prices, in USD per million tokens, for prompts up to a length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to_prompt_tokens: int | None = Field(default=None, gt=0)
    """This band applies to prompts of at most this many tokens; ``None``: any length."""
    input: NonNegative
    """Uncached input tokens."""
    output: NonNegative
    """Output tokens."""
    cache_write: NonNegative | None = None
    """Tokens written to the cache for 5 minutes; ``None`` means 1.25 x input (Anthropic's)."""
    cache_write_1h: NonNegative | None = None
    """Tokens written to the cache for 1 hour; ``None`` means 2 x input (Anthropic's rate)."""
    cache_read: NonNegative | None = None
    """Tokens read from the cache; ``None`` means 0.1 x input."""

    @property
    def cache_write_price(self) -> Decimal:
        """USD per million tokens written to the cache for 5 minutes."""
        return self.input * _CACHE_WRITE if self.cache_write is None else self.cache_write

    @property
    def cache_write_1h_price(self) -> Decimal:
        """USD per million tokens written to the cache for 1 hour."""
        return self.input * _CACHE_WRITE_1H if self.cache_write_1h is None else self.cache_write_1h

    @property
    def cache_read_price(self) -> Decimal:
        """USD per million tokens read from the cache."""
        return self.input * _CACHE_READ if self.cache_read is None else self.cache_read

    def cost(self, usage: Usage) -> Decimal:
        """Return the exact cost of ``usage`` in USD at this band's prices."""
        return _PER_TOKEN * (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_write_5m_tokens * self.cache_write_price
            + usage.cache_write_1h_tokens * self.cache_write_1h_price
            + usage.cache_read_tokens * self.cache_read_price
        )


def price_for(bands: tuple[PriceBand, ...] | list[PriceBand], prompt_tokens: int) -> PriceBand:
    """Return the band that applies to a prompt of ``prompt_tokens`` tokens.

    Bands are ordered by ``up_to_prompt_tokens`` with the open-ended band last.
    """
    for band in bands:
        if band.up_to_prompt_tokens is None or prompt_tokens <= band.up_to_prompt_tokens:
            return band
    return bands[-1]
