r"""Simulated tool use: which tool to call, with what, and what the results let it cite.

Any tool works, seen before or not (an MCP server's, say): the brain reads only names and
``input_schema``\ s. First turn: a tool the instruction *names* (its full name, or the part
after the last ``__``: ``convert_units`` for ``mcp__toolbox__convert_units``); else the
first *search-like* tool (one with a string ``query``-style parameter), which gets the
instruction's key terms; else the first tool. Arguments are generated from the schema,
and what the instruction supplies overrides them: its numbers go to number parameters,
the enum values it mentions to enum parameters (in the order mentioned), its quoted
strings to free-text string parameters. Next turns: if a result offered ids (``[path#n]``
citations or JSON ``"id"`` values) and a *reader* tool exists (named like
read/get/open/fetch, with an id-like string parameter), it reads the first id; else it
calls the next tool the instruction names that it has not called. Then the answer, citing
what was found and quoting short plain-text results (:func:`findings_from`). The number
of calls is bounded by ``SimConfig.max_tool_calls``.
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

__all__ = ["ToolCall", "evidence_from", "findings_from", "first_call", "follow_up", "named_tools"]

_QUERY_NAMES = ("query", "q", "search", "question", "keywords", "terms", "text")
_READER_NAME = re.compile(r"read|get|open|fetch|passage|lookup|show", re.IGNORECASE)
_QUOTE_CHARS = re.compile(r"[\"“”\[\]\n]")
_QUOTE_MAX = 100
_QUOTE_MIN = 12
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”")
_FINDING_MAX = 160


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


def _from_text(properties: Mapping[str, Any], text: str) -> dict[str, Any]:
    """The values the instruction supplies: numbers, enum values mentioned, quoted strings."""
    numbers = [float(n) for n in _NUMBER.findall(text)]
    quoted = [a or b for a, b in _QUOTED.findall(text)]
    mentioned = re.findall(r"\w[\w+-]*(?:\.\w+)*", text)
    found: dict[str, Any] = {}
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        kind, enum = sub.get("type"), sub.get("enum")
        if isinstance(enum, list) and enum:
            pick = next((m for m in mentioned if m in enum), None)
            if pick is not None:
                found[name] = pick
                mentioned.remove(pick)
        elif kind in {"number", "integer"} and numbers:
            number = numbers.pop(0)
            if kind == "number" or number.is_integer():
                found[name] = int(number) if kind == "integer" else number
        elif kind == "string" and quoted and not _id_like(str(name)):
            found[name] = quoted.pop(0)
    return found


def _id_like(name: str) -> bool:
    lowered = name.lower()
    return lowered in {"id", "ref"} or lowered.endswith("_id")


def _short(name: str) -> str:
    return name.rsplit("__", 1)[-1]


def named_tools(tools: Sequence[Mapping[str, Any]], text: str) -> list[Mapping[str, Any]]:
    """The tools ``text`` names (in full, or by the part after ``__``), first named first."""
    places: list[tuple[int, int, Mapping[str, Any]]] = []
    for order, tool in enumerate(tools):
        name = str(tool.get("name", ""))
        spots = [
            m.start()
            for word in {name, _short(name)}
            if word
            for m in re.finditer(rf"(?<![\w]){re.escape(word)}(?![\w])", text)
        ]
        if spots:
            places.append((min(spots), order, tool))
    return [tool for _, _, tool in sorted(places, key=lambda p: (p[0], p[1]))]


def first_call(
    tools: Sequence[Mapping[str, Any]], ctx: FillContext, forced: str | None, text: str = ""
) -> ToolCall:
    """Return the first tool call: the forced tool, a named one, else a search-like one."""
    custom = [tool for tool in tools if tool.get("type") in (None, "custom")] or list(tools)
    chosen = next((tool for tool in custom if tool.get("name") == forced), None)
    if chosen is None:
        searchers = [tool for tool in custom if _string_param(tool, _QUERY_NAMES)]
        chosen = (named_tools(custom, text) or searchers or custom)[0]
    arguments = _arguments(chosen, ctx)
    query = _string_param(chosen, _QUERY_NAMES)
    if query is not None:
        arguments[query] = " ".join(ctx.terms[:4]) or "overview"
    return ToolCall(str(chosen["name"]), {**arguments, **_from_text(_properties(chosen), text)})


def follow_up(
    tools: Sequence[Mapping[str, Any]],
    results: Sequence[ToolResult],
    ctx: FillContext,
    text: str = "",
) -> ToolCall | None:
    """A call reading a passage a result offered, else the next named tool; or ``None``."""
    offered = [i for r in results if not r.is_error for i in result_ids(r.text)]
    read = {str(v) for r in results for v in r.arguments.values()}
    unread = [i for i in offered if i not in read]
    for tool in tools if unread else ():
        param = _string_param(tool, None)
        if param is not None and _READER_NAME.search(str(tool.get("name", ""))):
            arguments = _arguments(tool, ctx)
            arguments[param] = unread[0]
            return ToolCall(str(tool["name"]), arguments)
    called = {r.name for r in results}
    for tool in named_tools(tools, text):
        if tool.get("name") not in called:
            given = _from_text(_properties(tool), text)
            return ToolCall(str(tool["name"]), {**_arguments(tool, ctx), **given})
    return None


def findings_from(results: Sequence[ToolResult]) -> list[str]:
    """Short plain-text results (no ids to cite), as the answer reports them."""
    return [
        f'{_short(r.name)} gave "{" ".join(r.text.split())}"'
        for r in results
        if not r.is_error
        and r.text.strip()
        and len(r.text) <= _FINDING_MAX
        and not result_ids(r.text)
    ]


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
