"""Response shapes: the Message object, usage, and the server-sent event stream.

The stream is exactly what the SDK's ``MessageStream`` accumulates: ``message_start``
(the message with empty content and ``stop_reason: null``), ``ping``, then per content
block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or
``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop reason and
cumulative usage) and ``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator_sim.usage import CacheUsage, estimate_tokens

__all__ = ["encode_sse", "message_json", "sse_events", "usage_json"]

_TEXT_CHUNK = 48
_JSON_CHUNK = 32


def usage_json(
    input_tokens: int, output_tokens: int, cache: CacheUsage, service_tier: str = "standard"
) -> dict[str, Any]:
    """Return the ``usage`` object of a response (``service_tier: "batch"`` in a batch)."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.write_5m,
            "ephemeral_1h_input_tokens": cache.write_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": service_tier,
    }


def message_json(
    message_id: str,
    model: str,
    content: Sequence[Mapping[str, Any]],
    stop_reason: str | None,
    usage: Mapping[str, Any],
) -> dict[str, Any]:
    """Return a complete ``Message`` object."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [dict(block) for block in content],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": dict(usage),
    }


def encode_sse(event: str, data: Mapping[str, Any]) -> bytes:
    """Return one server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _chunks(text: str, size: int) -> list[str]:
    """Split ``text`` into pieces of about ``size`` characters, at spaces where possible."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        space = text.rfind(" ", start + 1, end)
        if end < len(text) and space > start:
            end = space
        pieces.append(text[start:end])
        start = end
    return pieces


Event = tuple[str, dict[str, Any], int]
"""(event name, data, output tokens it carries): the tokens pace the stream."""


def _block_events(index: int, block: Mapping[str, Any]) -> list[Event]:
    if block.get("type") == "tool_use":
        start = {**block, "input": {}}
        raw = json.dumps(block.get("input", {}))
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in _chunks(raw, _JSON_CHUNK)
        ]
    else:
        start = {**block, "text": ""}
        deltas = [
            {"type": "text_delta", "text": piece}
            for piece in _chunks(str(block.get("text", "")), _TEXT_CHUNK)
        ]
    events: list[Event] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
            0,
        )
    ]
    for delta in deltas:
        piece = delta.get("text") or delta.get("partial_json") or ""
        data = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(("content_block_delta", data, estimate_tokens(str(piece))))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}, 0))
    return events


def sse_events(message: Mapping[str, Any]) -> list[Event]:
    """Return the events that stream ``message``."""
    usage = dict(message["usage"])
    opening_usage = {**usage, "output_tokens": 1}
    opening = {**message, "content": [], "stop_reason": None, "usage": opening_usage}
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": opening}, 0),
        ("ping", {"type": "ping"}, 0),
    ]
    for index, block in enumerate(message["content"]):
        events += _block_events(index, block)
    final_usage = {
        key: usage[key]
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    }
    final_usage["output_tokens"] = usage["output_tokens"]
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}, 0)
    )
    events.append(("message_stop", {"type": "message_stop"}, 0))
    return events
