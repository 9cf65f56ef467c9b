"""The Messages API's shapes of what the Anthropic client sends (no SDK needed).

Blocks as the API spells them (a provider block verbatim), tool specs, and the
prompt-cache breakpoints (at most four a request): the system prompt, the tool catalogue,
a text block the engine marked (inputs other tasks read too), and the end of a tool
loop's conversation, so each turn reads what the one before wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.models.base import (
    Block,
    Message,
    ProviderBlock,
    TextBlock,
    ToolCall,
    ToolResult,
)
from orchestrator.tool import Tool

__all__ = ["EPHEMERAL", "mark_conversation", "message_param", "prompt_bytes", "tool_specs"]


EPHEMERAL = {"type": "ephemeral"}


_MARKABLE = frozenset({"text", "tool_result", "tool_use", "image", "document"})
_MAX_BREAKPOINTS = 4  # the API's limit per request


def mark_conversation(params: dict[str, Any]) -> None:
    """A breakpoint on the last block: the next turn of this loop reads the conversation so far.

    A tool loop re-sends its growing conversation every turn; marking its end lets each turn
    read what the one before wrote (on the same model) instead of paying for it again.
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
    if isinstance(content, str):
        last["content"] = [{"type": "text", "text": content, "cache_control": EPHEMERAL}]
    elif content and content[-1].get("type") in _MARKABLE and "cache_control" not in content[-1]:
        last["content"] = [*content[:-1], {**content[-1], "cache_control": EPHEMERAL}]


def message_param(message: Message, *, cache: bool) -> dict[str, Any]:
    """One turn as the API spells it (a marked text block with its breakpoint if ``cache``)."""
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    blocks = [_block(block, cache=cache) for block in message.content]
    return {"role": message.role, "content": blocks}


def _block(block: Block, *, cache: bool) -> dict[str, Any]:
    if block.provider_data is not None:  # as the API sent it, within the same conversation
        return block.provider_data
    match block:
        case TextBlock(text=text, cache=True) if cache:
            return {"type": "text", "text": text, "cache_control": EPHEMERAL}
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


def tool_specs(tools: Sequence[Tool], *, cache: bool) -> list[dict[str, Any]]:
    """The local tools' specs; with ``cache``, a breakpoint after the last (the catalogue)."""
    specs: list[dict[str, Any]] = [
        {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
        for tool in tools
    ]
    if cache:
        specs[-1] = {**specs[-1], "cache_control": EPHEMERAL}  # caches the catalogue
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
