"""Typed tools from functions: schemas, validation, threads, timeouts, results, registry."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Annotated, Any, Literal

import anyio
import anyio.from_thread
import pytest
from pydantic import BaseModel, Field

from orchestrator.models.base import ToolCall
from orchestrator.tool import Tool
from orchestrator.tools import (
    FunctionTool,
    ToolArgumentError,
    ToolDefinitionError,
    ToolRegistry,
    ToolTimeoutError,
    UnknownToolError,
    to_text,
    tool,
)
from orchestrator.tools._docstrings import parse_docstring
from orchestrator.turns import run_tool_calls


class Point(BaseModel):
    x: int
    title: str = "origin"


@tool
def search(
    query: str,
    k: Annotated[int, Field(ge=1, le=20)] = 5,
    ratio: float = 0.5,
    exact: bool = False,
    tags: list[str] | None = None,
    mode: Literal["fast", "deep"] = "fast",
    where: Point | None = None,
) -> dict[str, Any]:
    """Search the things.

    A longer explanation that the model also sees.

    Args:
        query: Words to look for,
            over two lines.
        k (int): How many results.
        ratio: A ratio.

    Returns:
        The arguments, echoed.
    """
    return {"query": query, "k": k, "tags": tags, "mode": mode}


def _all_titles(node: Any) -> list[str]:
    """Every ``title`` key of a schema, except properties that happen to be named so."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                found.append(value)
            elif key == "properties":
                for sub in value.values():
                    found.extend(_all_titles(sub))
            else:
                found.extend(_all_titles(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_all_titles(item))
    return found


# -- schema generation ------------------------------------------------------------------


def test_schema_types_defaults_required_and_descriptions() -> None:
    schema = search.input_schema
    assert list(schema)[:3] == ["type", "properties", "required"]
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    props = schema["properties"]
    assert props["query"] == {"description": "Words to look for, over two lines.", "type": "string"}
    assert props["k"] == {
        "default": 5,
        "description": "How many results.",
        "maximum": 20,
        "minimum": 1,
        "type": "integer",
    }
    assert props["ratio"]["type"] == "number"
    assert props["exact"] == {"default": False, "type": "boolean"}
    assert props["tags"]["anyOf"] == [
        {"items": {"type": "string"}, "type": "array"},
        {"type": "null"},
    ]
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert schema["$defs"]["Point"]["properties"]["title"] == {
        "default": "origin",
        "type": "string",
    }
    assert _all_titles(schema) == []
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # plain JSON, ready for the API


def test_description_is_the_docstring_prose_and_name_the_function_name() -> None:
    assert search.name == "search"
    assert (
        search.description == "Search the things.\n\nA longer explanation that the model also sees."
    )
    assert isinstance(search, Tool)


def test_name_description_overrides_and_schema_copies() -> None:
    @tool(name="adder", description="Adds.")
    def add(a: int, b: int) -> int:
        return a + b

    assert (add.name, add.description) == ("adder", "Adds.")
    assert add.input_schema["required"] == ["a", "b"]
    add.input_schema["properties"].clear()
    assert "a" in add.input_schema["properties"]  # callers cannot corrupt the tool


def test_no_parameters_gives_an_empty_object_schema() -> None:
    @tool
    def now() -> str:
        """The time."""
        return "noon"

    assert now.input_schema == {"type": "object", "properties": {}, "additionalProperties": False}


def test_parameter_names_that_clash_with_pydantic_still_work() -> None:
    @tool
    def odd(json: str, schema: int, _private: bool = True) -> str:
        """Odd names."""
        return f"{json}-{schema}-{_private}"

    assert set(odd.input_schema["properties"]) == {"json", "schema", "_private"}


@pytest.mark.parametrize(
    ("fn", "fragment"),
    [
        (lambda x: x, "needs a type annotation"),
        (lambda *args: None, "*args and **kwargs"),
    ],
)
def test_functions_that_cannot_be_described_are_refused(fn: Any, fragment: str) -> None:
    with pytest.raises(ToolDefinitionError, match=fragment.replace("*", r"\*")):
        tool(fn, name="f", description="d")


def test_missing_description_and_bad_names_are_refused() -> None:
    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="no description"):
        tool(undocumented)
    with pytest.raises(ToolDefinitionError, match="invalid"):
        tool(undocumented, name="has space", description="d")
    with pytest.raises(ToolDefinitionError, match="timeout_s"):
        tool(undocumented, description="d", timeout_s=0)


def test_docstring_parser_handles_sections_types_and_continuations() -> None:
    parsed = parse_docstring(
        """Summary line.

        Body text.

        Args:
            alpha (int): First
                continued.
            *rest: Ignored by tools, parsed anyway.

        Raises:
            ValueError: not a parameter.
        """
    )
    assert parsed.description == "Summary line.\n\nBody text."
    assert parsed.params == {
        "alpha": "First continued.",
        "rest": "Ignored by tools, parsed anyway.",
    }
    assert parse_docstring(None).description == ""


# -- calling ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_arguments_are_validated_and_passed() -> None:
    with anyio.fail_after(5):
        text = await search({"query": "q", "k": 3, "mode": "deep"})
    assert json.loads(text) == {"query": "q", "k": 3, "tags": None, "mode": "deep"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ({}, ["missing required argument 'query'"]),
        ({"query": "q", "k": 0}, ["argument 'k'", "greater than or equal to 1"]),
        ({"query": "q", "k": "many"}, ["argument 'k'", "valid integer", "'many'"]),
        ({"query": "q", "mode": "slow"}, ["argument 'mode'", "'fast' or 'deep'"]),
        ({"query": "q", "colour": "red"}, ["unexpected argument 'colour'", "takes: query, k"]),
        ({"query": "q", "where": {"x": "?"}}, ["argument 'where.x'"]),
    ],
)
async def test_validation_errors_name_the_argument(
    arguments: dict[str, Any], fragments: list[str]
) -> None:
    with anyio.fail_after(5), pytest.raises(ToolArgumentError) as caught:
        await search(arguments)
    message = str(caught.value)
    assert message.startswith("invalid arguments for 'search'")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.anyio
async def test_validation_errors_reach_the_model_as_error_results() -> None:
    with anyio.fail_after(5):
        content, is_error = await run_one(search, "search", {"k": "x"}, 5.0)
    assert is_error
    assert content.startswith("ToolArgumentError: invalid arguments for 'search'")
    assert "'query'" in content
    assert "'k'" in content


@pytest.mark.anyio
async def test_sync_tools_run_in_a_worker_thread_without_blocking_the_loop() -> None:
    started = anyio.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    @tool
    def blocking(label: str) -> str:
        """Block until released."""
        seen["thread"] = threading.current_thread()
        anyio.from_thread.run_sync(started.set)  # only possible from an anyio worker thread
        assert release.wait(timeout=5)
        return label.upper()

    results: list[str] = []

    async def call() -> None:
        results.append(await blocking({"label": "done"}))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()  # the loop is free while the function blocks
            release.set()
    assert results == ["DONE"]
    assert seen["thread"] is not threading.main_thread()


@pytest.mark.anyio
async def test_async_tools_run_on_the_loop() -> None:
    @tool
    async def fetch(url: str, retries: int = 2) -> list[Any]:
        """Pretend to fetch."""
        await anyio.lowlevel.checkpoint()
        return [url, retries, threading.current_thread() is threading.main_thread()]

    with anyio.fail_after(5):
        assert await fetch({"url": "u"}) == '["u",2,true]'


@pytest.mark.anyio
async def test_async_tool_timeout_raises_a_tool_timeout() -> None:
    never = anyio.Event()

    @tool(timeout_s=0.05)
    async def stuck() -> str:
        """Never finishes."""
        await never.wait()
        return "unreachable"

    with (
        anyio.fail_after(5),
        pytest.raises(ToolTimeoutError, match=r"'stuck' timed out after 0.05s"),
    ):
        await stuck({})


@pytest.mark.anyio
async def test_sync_tool_timeout_abandons_the_thread() -> None:
    release = threading.Event()

    @tool(timeout_s=0.05)
    def stuck_sync() -> str:
        """Blocks until released."""
        release.wait(timeout=5)
        return "late"

    try:
        with anyio.fail_after(5):
            content, is_error = await run_one(stuck_sync, "stuck_sync", {}, 5.0)
    finally:
        release.set()
    assert is_error
    assert content == "ToolTimeoutError: tool 'stuck_sync' timed out after 0.05s"


@pytest.mark.anyio
async def test_exceptions_from_the_function_propagate() -> None:
    @tool
    def explode(why: str) -> str:
        """Fails."""
        raise RuntimeError(why)

    with anyio.fail_after(5):
        content, is_error = await run_one(explode, "explode", {"why": "boom"}, 5.0)
    assert (content, is_error) == ("RuntimeError: boom", True)


@dataclasses.dataclass
class Pair:
    left: int
    right: str


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        ([1, "two"], '[1,"two"]'),
        (Point(x=3), '{"x":3,"title":"origin"}'),
        (Pair(1, "r"), '{"left":1,"right":"r"}'),
        (None, "null"),
        (42, "42"),
        ({"when": object}, '{"when":"<class \'object\'>"}'),
    ],
)
def test_return_values_become_text(value: object, text: str) -> None:
    assert to_text(value) == text


# -- registry ---------------------------------------------------------------------------


def _registry() -> ToolRegistry:
    registry = ToolRegistry([search])

    @registry.register
    def ping() -> str:
        """Answer pong."""
        return "pong"

    return registry


def test_registry_registers_functions_and_tools_in_order() -> None:
    registry = _registry()
    assert registry.names() == ["search", "ping"]
    assert [t.name for t in registry] == ["search", "ping"]
    assert len(registry) == 2
    assert "ping" in registry
    assert "pong" not in registry
    assert registry.get("search") is search
    assert isinstance(registry["ping"], FunctionTool)


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(ToolDefinitionError, match="'search' is already registered"):
        ToolRegistry([search, search])


def test_unknown_name_is_a_key_error_naming_the_known_tools() -> None:
    registry = _registry()
    with pytest.raises(KeyError) as caught:
        registry.get("serach")
    assert isinstance(caught.value, UnknownToolError)
    assert str(caught.value) == "no tool named 'serach'; known tools: search, ping"
    with pytest.raises(UnknownToolError, match="no tools are registered"):
        ToolRegistry()["x"]


def test_subset_keeps_only_allowed_tools() -> None:
    registry = _registry()
    small = registry.subset(["ping"])
    assert small.names() == ["ping"]
    assert registry.subset([]).names() == []
    assert registry.subset(["ping", "search", "ping"]).names() == ["search", "ping"]


def test_subset_with_unknown_names_lists_them_all() -> None:
    registry = _registry()
    with pytest.raises(UnknownToolError) as caught:
        registry.subset(["ping", "nope", "also_no"])
    assert str(caught.value) == (
        "unknown tool name(s) in allowlist: 'nope', 'also_no'; known tools: search, ping"
    )
    with pytest.raises(TypeError, match="not a single string"):
        registry.subset("ping")


async def run_one(tool: Tool, name: str, arguments: object, timeout_s: float) -> tuple[str, bool]:
    """Run one call through the engine's tool loop; its (content, is_error)."""
    call = ToolCall(id="c1", name=name, arguments=arguments)
    (result,) = await run_tool_calls([call], {name: tool}, timeout_s)
    return result.content, result.is_error
