"""The Messages API's shapes of what the Anthropic client sends (no SDK needed).

Blocks as the API spells them (a provider block verbatim), tool specs, and the
prompt-cache breakpoints (at most four a request): the system prompt, the tool catalogue,
a text block the engine marked (inputs other tasks read too), and the end of a tool
loop's conversation, so each turn reads what the one before wrote.

A breakpoint lives 5 minutes (``EPHEMERAL``, the API's default) or 1 hour
(``cache_control("1h")``, written at 2x input instead of 1.25x); the API refuses a 1-hour
breakpoint after a 5-minute one (in the order tools, system, messages), so
:func:`order_ttls` shortens any such one to 5 minutes. :func:`cache_write_split` reads
the response's 5-minute / 1-hour split of its cache writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from orchestrator.models.base import (
    Block,
    Message,
    ModelRequest,
    ProviderBlock,
    TextBlock,
    ToolCall,
    ToolResult,
)
from orchestrator.tool import ServerTool, Tool

__all__ = [
    "EPHEMERAL",
    "CacheTTL",
    "cache_control",
    "cache_write_split",
    "mark_conversation",
    "marks_one_hour",
    "message_param",
    "order_ttls",
    "prompt_bytes",
    "request_params",
    "tool_specs",
]

CacheTTL = Literal["5m", "1h"]
"""How long a prompt-cache entry lives: 5 minutes (the API's default) or 1 hour."""

EPHEMERAL = {"type": "ephemeral"}
"""A 5-minute breakpoint, as the API's default spells it (no ``ttl``)."""


def cache_control(ttl: CacheTTL = "5m") -> dict[str, str]:
    """A breakpoint's ``cache_control``: :data:`EPHEMERAL` for 5 minutes, ``"ttl": "1h"`` else."""
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else dict(EPHEMERAL)


_MARKABLE = frozenset({"text", "tool_result", "tool_use", "image", "document"})
_MAX_BREAKPOINTS = 4  # the API's limit per request


def mark_conversation(params: dict[str, Any], ttl: CacheTTL = "5m") -> None:
    """A breakpoint on the last block: the next turn of this loop reads the conversation so far.

    A tool loop re-sends its growing conversation every turn; marking its end lets each turn
    read what the one before wrote (on the same model) instead of paying for it again.
    The breakpoints are then put in an order the API accepts (:func:`order_ttls`).
    """
    marks = len(params.get("system", ())) + bool(params.get("tools"))
    marks += sum(
        "cache_control" in block
        for message in params["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
    )
    if marks >= _MAX_BREAKPOINTS:
        return
    last = params["messages"][-1]
    content = last["content"]
    mark = cache_control(ttl)
    if isinstance(content, str):
        last["content"] = [{"type": "text", "text": content, "cache_control": mark}]
    elif content and content[-1].get("type") in _MARKABLE and "cache_control" not in content[-1]:
        last["content"] = [*content[:-1], {**content[-1], "cache_control": mark}]
    order_ttls(params)


def order_ttls(params: dict[str, Any]) -> None:
    """Shorten to 5 minutes any 1-hour breakpoint that comes after a 5-minute one.

    The API reads breakpoints in the order tools, system, messages, and refuses a 1-hour
    one after a 5-minute one (400 ``invalid_request_error``). A 5-minute breakpoint in
    its place is always accepted and never costs more to write; one placed earlier keeps
    its hour. Call it last, once every breakpoint of ``params`` is placed.
    """
    short = False
    for holder in list(_breakpoints(params)):
        ttl = holder["cache_control"].get("ttl", "5m")
        if ttl == "1h" and short:
            holder["cache_control"] = cache_control("5m")
        short = short or ttl != "1h"


def marks_one_hour(params: dict[str, Any]) -> bool:
    """Whether ``params`` has a 1-hour breakpoint (its cache writes may cost 2x input)."""
    return any(part["cache_control"].get("ttl") == "1h" for part in _breakpoints(params))


def _breakpoints(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The parts of ``params`` carrying a ``cache_control``, in the order the API reads them."""
    system = params.get("system")
    parts = [*params.get("tools", ()), *(system if isinstance(system, list) else ())]
    for message in params.get("messages", ()):
        if isinstance(message.get("content"), list):
            parts += message["content"]
    yield from (part for part in parts if isinstance(part.get("cache_control"), dict))
    if isinstance(params.get("cache_control"), dict):
        yield params  # a top-level breakpoint: it marks the last block


def cache_write_split(cache_creation: object | None, total: int) -> tuple[int, int]:
    """The response's cache writes as (5-minute, 1-hour) tokens; they sum to ``total``.

    ``cache_creation`` is the usage's ``cache_creation`` object (read by attribute, or a
    mapping), ``{"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}``; ``total``
    is ``cache_creation_input_tokens``. Without a split (an endpoint that sends none),
    every write counts as a 5-minute one; a split that disagrees with ``total`` is
    clipped to it.
    """
    if isinstance(cache_creation, Mapping):
        one_hour = cache_creation.get("ephemeral_1h_input_tokens")
    else:
        one_hour = getattr(cache_creation, "ephemeral_1h_input_tokens", None)
    hour = min(max(one_hour, 0), total) if isinstance(one_hour, int) else 0
    return total - hour, hour


def message_param(message: Message, *, cache: bool, ttl: CacheTTL = "5m") -> dict[str, Any]:
    """One turn as the API spells it (a marked text block with its breakpoint if ``cache``)."""
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    blocks = [_block(block, cache=cache, ttl=ttl) for block in message.content]
    return {"role": message.role, "content": blocks}


def _block(block: Block, *, cache: bool, ttl: CacheTTL) -> dict[str, Any]:
    if block.provider_data is not None:  # as the API sent it, within the same conversation
        return block.provider_data
    match block:
        case TextBlock(text=text, cache=True) if cache:
            return {"type": "text", "text": text, "cache_control": cache_control(ttl)}
        case TextBlock(text=text):
            return {"type": "text", "text": text}
        case ToolCall(id=call_id, name=name, arguments=arguments):
            return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
        case ToolResult(tool_call_id=call_id, content=content, is_error=is_error):
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": call_id,
                "content": content,
            }
            return {**result, "is_error": True} if is_error else result
        case ProviderBlock():
            raise ValueError("a provider block without its provider_data cannot be sent")


def tool_specs(tools: Sequence[Tool], *, cache: bool, ttl: CacheTTL = "5m") -> list[dict[str, Any]]:
    """The local tools' specs; with ``cache``, a breakpoint after the last (the catalogue)."""
    specs: list[dict[str, Any]] = [
        {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
        for tool in tools
    ]
    if cache:
        specs[-1] = {**specs[-1], "cache_control": cache_control(ttl)}  # caches the catalogue
    return specs


def prompt_bytes(call: Mapping[str, Any]) -> int:
    """An upper estimate of a call's prompt size: the bytes of its JSON parts."""
    parts = (
        call.get("system", ""),
        call["messages"],
        call.get("tools", ()),
        call.get("output_config"),
    )
    return sum(len(json.dumps(part, default=str).encode()) for part in parts)


def request_params(
    request: ModelRequest, transform_schema: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The Messages-API body of ``request`` (``transform_schema``: the SDK's, for outputs).

    Batch calls keep their prefixes an hour: a batch may take longer than 5 minutes to run
    its requests, and later requests (and later batches) should still read them.
    """
    ttl: CacheTTL = "1h" if request.batch else "5m"
    cache = request.cache
    params: dict[str, Any] = {
        "model": request.tier.model,
        "max_tokens": request.max_output_tokens,
        "messages": [message_param(m, cache=cache, ttl=ttl) for m in request.messages],
    }
    if request.system:
        system: dict[str, Any] = {"type": "text", "text": request.system}
        params["system"] = [{**system, "cache_control": cache_control(ttl)} if cache else system]
    local = [tool for tool in request.tools if not isinstance(tool, ServerTool)]
    server = [tool.definition for tool in request.tools if isinstance(tool, ServerTool)]
    if local or server:
        params["tools"] = (tool_specs(local, cache=cache, ttl=ttl) if local else []) + server
        if request.tool_choice == "none":
            params["tool_choice"] = {"type": "none"}  # out of turns: answer now
    if request.output_schema is not None:
        schema = transform_schema(request.output_schema)
        params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if cache and len(request.messages) > 1:
        mark_conversation(params, ttl)
    order_ttls(params)
    return params
