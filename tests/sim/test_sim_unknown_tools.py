"""Tools the simulator has never seen (an MCP server's): chosen and filled by their schemas."""

from __future__ import annotations

import random

from orchestrator_sim.prompts import ToolResult
from orchestrator_sim.schema_fill import FillContext
from orchestrator_sim.tool_use import findings_from, first_call, follow_up, named_tools

UNIT = {"type": "string", "enum": ["m", "km", "mi"]}
CONVERT = {
    "name": "mcp__toolbox__convert_units",
    "input_schema": {
        "type": "object",
        "properties": {"value": {"type": "number"}, "from_unit": UNIT, "to_unit": UNIT},
        "required": ["value", "from_unit", "to_unit"],
    },
}
ADD = {
    "name": "mcp__toolbox__add_note",
    "input_schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "text": {"type": "string"},
            "count": {"type": "integer"},
        },
    },
}
SEARCH = {
    "name": "mcp__toolbox__search_notes",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
CTX = FillContext({}, ["notes", "units"], random.Random(0))


def test_the_tool_the_instruction_names_is_called_with_what_the_instruction_gives() -> None:
    text = "Use convert_units to convert 2.5 mi to km."
    call = first_call([SEARCH, CONVERT], CTX, None, text)  # named beats search-like
    assert call.name == "mcp__toolbox__convert_units"
    assert call.input == {"value": 2.5, "from_unit": "mi", "to_unit": "km"}
    # unnamed, the search-like tool goes first, as before; no text: schema values only
    assert first_call([CONVERT, SEARCH], CTX, None).name == "mcp__toolbox__search_notes"
    assert first_call([CONVERT], CTX, None).input == {
        "value": 0.8,
        "from_unit": "m",
        "to_unit": "m",
    }


def test_quoted_strings_fill_free_text_and_integers_stay_integers() -> None:
    text = 'Call mcp__toolbox__add_note with "Lunch" and "At noon", 3.5 then 2 times.'
    call = first_call([ADD], CTX, None, text)
    assert call.input["title"] == "Lunch"
    assert call.input["text"] == "At noon"
    assert call.input["count"] == 3  # 3.5 is no integer: the schema's own value stays


def test_named_tools_follow_in_the_order_named_each_once() -> None:
    text = "First add_note, then convert_units 1 km to m."
    assert [t["name"] for t in named_tools([CONVERT, ADD, SEARCH], text)] == [
        "mcp__toolbox__add_note",
        "mcp__toolbox__convert_units",
    ]
    done = [ToolResult("mcp__toolbox__add_note", {}, "note-4", False)]
    follow = follow_up([CONVERT, ADD], done, CTX, text)
    assert follow is not None
    assert follow.name == "mcp__toolbox__convert_units"
    both = [*done, ToolResult("mcp__toolbox__convert_units", {}, "1 km = 1000 m", False)]
    assert follow_up([CONVERT, ADD], both, CTX, text) is None


def test_short_plain_results_are_reported_and_the_rest_are_not() -> None:
    results = [
        ToolResult("mcp__toolbox__convert_units", {}, "1 km =\n1000 m", False),
        ToolResult("mcp__toolbox__read_note", {}, "no note", True),  # an error
        ToolResult("search", {}, '[{"id": "note-1"}]', False),  # ids: cited, not quoted
        ToolResult("dump", {}, "x" * 500, False),  # too long to quote
    ]
    assert findings_from(results) == ['convert_units gave "1 km = 1000 m"']
