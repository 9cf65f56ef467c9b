"""Token estimates and prompt caching, reported in the real API's usage fields.

Tokens are estimated as one per four characters (of text; of JSON for tools, tool calls
and other blocks), at least one per non-empty part. The prompt is the sequence
tools -> system -> messages, as the real API caches it. A ``cache_control`` breakpoint on
a tool, a system block or a message block (or a top-level ``cache_control``, which marks
the last block) ends a cacheable prefix. Per model, the server remembers prefix hashes in
a small LRU with the breakpoint's TTL (300 simulated seconds, or 3,600 for
``"ttl": "1h"``; simulated seconds are ``time_scale`` seconds of the server's clock, and
with ``time_scale=0`` none pass, so nothing expires); a read refreshes an entry for its
own TTL, at no cost, as the API does:

* the longest remembered prefix ending at a breakpoint, or at any of the 20 blocks
  before one, is *read* (``cache_read_input_tokens``): the API's position ``A``;
* the tokens from there to the last breakpoint (``C``) are *written*
  (``cache_creation_input_tokens``) and those prefixes remembered; those up to the last
  1-hour breakpoint after ``A`` (``B``) are 1-hour writes, the rest 5-minute ones
  (``cache_creation.ephemeral_1h_input_tokens`` = B - A, ``ephemeral_5m`` = C - B);
* ``input_tokens`` is the rest, as in the real API (it excludes both).

A prefix shorter than the model's ``cache_min_tokens`` is not cached, silently, as in the
real API.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_sim.api import CountTokensParams, output_schema
from orchestrator_sim.seeding import digest

__all__ = [
    "CacheUsage",
    "PromptCache",
    "Segment",
    "block_tokens",
    "estimate_tokens",
    "prompt_segments",
    "prompt_tokens",
]

_TTL_S = {"5m": 300.0, "1h": 3600.0}  # simulated seconds
_LOOKBACK = 20


def estimate_tokens(text: str) -> int:
    """Return the estimated tokens of ``text``: ``ceil(len / 4)``, 0 only for empty text."""
    return math.ceil(len(text) / 4)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def block_tokens(block: Mapping[str, Any]) -> int:
    """Return the estimated tokens of one content block."""
    kind = block.get("type")
    if kind == "text":
        return estimate_tokens(str(block.get("text", "")))
    if kind == "tool_use":
        return estimate_tokens(str(block.get("name", "")) + _json(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content", "")
        text = content if isinstance(content, str) else _json(content)
        return max(1, estimate_tokens(text))
    return estimate_tokens(_json(_without_cache_control(block)))


@dataclass(frozen=True, slots=True)
class Segment:
    """One cacheable unit of the prompt.

    Attributes:
        key: Canonical text of the unit (what the prefix hash covers).
        tokens: Its estimated tokens.
        ttl: ``"5m"`` or ``"1h"`` when a breakpoint ends here, else ``None``.
    """

    key: str
    tokens: int
    ttl: str | None


def _ttl(cache_control: object) -> str | None:
    if not isinstance(cache_control, dict):
        return None
    return "1h" if cache_control.get("ttl") == "1h" else "5m"


def _block_segment(block: Mapping[str, Any]) -> Segment:
    return Segment(
        _json(_without_cache_control(block)), block_tokens(block), _ttl(block.get("cache_control"))
    )


def prompt_segments(params: CountTokensParams) -> list[Segment]:
    """Return the prompt as segments in cache order: tools, system, messages."""
    segments = [
        Segment(
            _json(tool.model_dump(exclude={"cache_control"}, exclude_none=True)),
            estimate_tokens(_json(tool.model_dump(exclude={"cache_control"}, exclude_none=True))),
            _ttl(tool.cache_control),
        )
        for tool in params.tools or []
    ]
    if isinstance(params.system, str) and params.system:
        segments.append(Segment(_json(params.system), estimate_tokens(params.system), None))
    elif isinstance(params.system, list):
        segments += [_block_segment(block) for block in params.system]
    for message in params.messages:
        content = message.content
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        segments += [_block_segment({**block, "role": message.role}) for block in blocks]
    top = _ttl(params.cache_control)
    if top is not None and segments:
        last = segments[-1]
        segments[-1] = Segment(last.key, last.tokens, last.ttl or top)
    return segments


def prompt_tokens(params: CountTokensParams, segments: Sequence[Segment]) -> int:
    """Return all input tokens: the segments plus the structured-output schema."""
    schema = output_schema(params)
    extra = estimate_tokens(_json(schema)) if schema is not None else 0
    return sum(segment.tokens for segment in segments) + extra


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """Cache effect of one request, in tokens."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def written(self) -> int:
        """Tokens written to the cache (both TTLs)."""
        return self.write_5m + self.write_1h


@dataclass(slots=True)
class _Entry:
    expiry: float  # on the clock
    lifetime: float  # on the clock: the TTL it was written with, scaled


class PromptCache:
    """An LRU of cached prompt prefixes per model.

    Args:
        entries: Most prefixes remembered.
        clock: Returns the current time in seconds (monotonic).
        time_scale: Seconds of ``clock`` per simulated second (an entry lives 300 or
            3,600 of these); ``0``: simulated time does not pass, nothing expires.
    """

    def __init__(self, entries: int, clock: Callable[[], float], time_scale: float = 1.0) -> None:
        self._entries = entries
        self._clock = clock
        self._scale = time_scale
        self._cached: OrderedDict[str, _Entry] = OrderedDict()
        self._ready: dict[str, float] = {}  # written prefixes not yet readable: until when

    def time(self) -> float:
        """The cache's clock now."""
        return self._clock()

    def account(
        self,
        model: str,
        segments: Sequence[Segment],
        min_tokens: int,
        *,
        ready_in: float = 0.0,
        at: float | None = None,
    ) -> CacheUsage:
        """Read and write the cache for one request; return what was read and written.

        What it writes can be read ``ready_in`` seconds later: as in the real API, a cache
        entry is available once the response that wrote it begins, so requests sent at
        the same time all write it. ``at``: the clock time the request is sent at (default
        now).
        """
        hashes, totals = self._prefixes(model, segments)
        marks = [i for i, s in enumerate(segments) if s.ttl is not None and totals[i] >= min_tokens]
        if not marks:
            return CacheUsage()
        now = self._clock() if at is None else at
        window = sorted({i for m in marks for i in range(max(0, m - _LOOKBACK), m + 1)})
        hit = next((i for i in reversed(window) if self._alive(hashes[i], now)), None)
        read = 0
        if hit is not None:
            read = totals[hit]
            self._refresh(hashes[hit], now)
        writes = [i for i in marks if hit is None or i > hit]
        if not writes:
            return CacheUsage(read=read)
        for i in writes:
            self._store(hashes[i], segments[i].ttl, now)
            if ready_in > 0:  # an earlier write of it still being made is ready first
                self._ready[hashes[i]] = min(
                    self._ready.get(hashes[i], now + ready_in), now + ready_in
                )
        one_hour = [i for i in writes if segments[i].ttl == "1h"]
        hour_end = totals[one_hour[-1]] if one_hour else read  # the API's position B
        return CacheUsage(
            read=read, write_1h=hour_end - read, write_5m=totals[writes[-1]] - hour_end
        )

    @staticmethod
    def _prefixes(model: str, segments: Sequence[Segment]) -> tuple[list[str], list[int]]:
        hashes, totals = [], []
        running, total = digest("prefix", model), 0
        for segment in segments:
            running = digest(running, segment.key)
            total += segment.tokens
            hashes.append(running)
            totals.append(total)
        return hashes, totals

    def _alive(self, key: str, now: float) -> bool:
        entry = self._cached.get(key)
        if entry is None:
            return False
        if self._ready.get(key, now) > now:  # still being written
            return False
        self._ready.pop(key, None)
        if entry.expiry < now:
            del self._cached[key]
            return False
        return True

    def _refresh(self, key: str, now: float) -> None:
        """A read: the entry lives its own TTL again from now (free, as in the API)."""
        entry = self._cached[key]
        entry.expiry = now + entry.lifetime
        self._cached.move_to_end(key)

    def _store(self, key: str, ttl: str | None, now: float) -> None:
        lifetime = _TTL_S[ttl or "5m"] * self._scale if self._scale > 0 else math.inf
        self._cached.pop(key, None)
        self._cached[key] = _Entry(now + lifetime, lifetime)
        while len(self._cached) > self._entries:
            gone, _ = self._cached.popitem(last=False)
            self._ready.pop(gone, None)
