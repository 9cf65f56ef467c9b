"""Simulated tool use: which tool to call, with what, and what the results let it cite.

First turn: the first *search-like* tool (one with a string ``query``-style parameter)
gets the instruction's key terms; without one, the first tool, with arguments generated
from its ``input_schema``. Second turn: if a result offered ids (``[path#n]`` citations or
JSON ``"id"`` values) and a *reader* tool exists (named like read/get/open/fetch, with an
id-like string parameter), it reads the first id. Then the answer, citing what was found.
The number of calls is bounded by ``SimConfig.max_tool_calls``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_sim.prompts import ToolResult, result_ids
from orchestrator_sim.schema_fill import FillContext, fill
from orchestrator_sim.writer import Evidence

__all__ = ["ToolCall", "evidence_from", "first_call", "follow_up"]

_QUERY_NAMES = ("query", "q", "search", "question", "keywords", "terms", "text")
_READER_NAME = re.compile(r"read|get|open|fetch|passage|lookup|show", re.IGNORECASE)
_QUOTE_CHARS = re.compile(r"[\"“”\[\]\n]")
_QUOTE_MAX = 100
_QUOTE_MIN = 12


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the brain makes."""

    name: str
    input: dict[str, Any]


def _properties(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = tool.get("input_schema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


def _string_param(tool: Mapping[str, Any], wanted: Sequence[str] | None) -> str | None:
    for name, sub in _properties(tool).items():
        if not isinstance(sub, Mapping) or sub.get("type") != "string":
            continue
        lowered = name.lower()
        if wanted is None and (lowered in {"id", "ref"} or lowered.endswith("_id")):
            return str(name)
        if wanted is not None and lowered in wanted:
            return str(name)
    return None


def _arguments(tool: Mapping[str, Any], ctx: FillContext) -> dict[str, Any]:
    schema = tool.get("input_schema") or {"type": "object"}
    value = fill(schema, FillContext(schema, ctx.terms, ctx.rng))
    return value if isinstance(value, dict) else {}


def first_call(
    tools: Sequence[Mapping[str, Any]], ctx: FillContext, forced: str | None
) -> ToolCall:
    """Return the first tool call: the forced tool, else the first search-like tool."""
    custom = [tool for tool in tools if tool.get("type") in (None, "custom")] or list(tools)
    chosen = next((tool for tool in custom if tool.get("name") == forced), None)
    if chosen is None:
        searchers = [tool for tool in custom if _string_param(tool, _QUERY_NAMES)]
        chosen = (searchers or custom)[0]
    arguments = _arguments(chosen, ctx)
    query = _string_param(chosen, _QUERY_NAMES)
    if query is not None:
        arguments[query] = " ".join(ctx.terms[:4]) or "overview"
    return ToolCall(str(chosen["name"]), arguments)


def follow_up(
    tools: Sequence[Mapping[str, Any]], results: Sequence[ToolResult], ctx: FillContext
) -> ToolCall | None:
    """Return a call that reads a passage a result offered, or ``None`` to answer now."""
    offered = [i for r in results if not r.is_error for i in result_ids(r.text)]
    read = {str(v) for r in results for v in r.arguments.values()}
    unread = [i for i in offered if i not in read]
    if not unread:
        return None
    for tool in tools:
        param = _string_param(tool, None)
        if param is not None and _READER_NAME.search(str(tool.get("name", ""))):
            arguments = _arguments(tool, ctx)
            arguments[param] = unread[0]
            return ToolCall(str(tool["name"]), arguments)
    return None


def _passage_text(text: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        return text
    if isinstance(document, dict):
        for key in ("text", "content", "passage", "body"):
            if isinstance(document.get(key), str):
                return str(document[key])
    return ""


def _quote(text: str) -> str | None:
    pieces = [" ".join(p.split()) for p in _QUOTE_CHARS.split(_passage_text(text))]
    pieces = [p for p in pieces if len(p) >= _QUOTE_MIN]
    if not pieces:
        return None
    piece = max(pieces, key=lambda p: len(p.split()))  # body text, not a header line
    if len(piece) > _QUOTE_MAX:
        piece = piece[:_QUOTE_MAX].rsplit(" ", 1)[0]
    return piece.strip(" .,;:") or None


def evidence_from(results: Sequence[ToolResult], limit: int = 3) -> list[Evidence]:
    """Return what the answer can cite: read passages (with a quote), then offered ids."""
    offered: list[str] = []
    quotes: dict[str, str | None] = {}
    for result in results:
        if result.is_error:
            continue
        arguments = {str(value) for value in result.arguments.values()}
        read = next((i for i in offered if i in arguments), None)
        if read is not None:
            quotes[read] = _quote(result.text)
        offered += [i for i in result_ids(result.text) if i not in offered]
    evidence = [Evidence(i, quote) for i, quote in quotes.items()]
    evidence += [Evidence(i) for i in offered if i not in quotes]
    return evidence[:limit]
