"""The engine owns the tool loop: any client answers one turn, the engine runs the tools.

These run a tool-using task through :class:`Engine` with nothing but a
:class:`FunctionModel`, no simulator: the double asks for tool calls, the engine runs the
allowlisted tools in spans, sends the results back, and the double answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Engine, Plan, RunConfig, ToolCall
from orchestrator.models.base import ModelRequest, estimate_prompt_tokens
from orchestrator.telemetry import Telemetry
from orchestrator.testing import FunctionModel, tool_results
from orchestrator.tools import ToolDefinitionError, tool

pytestmark = pytest.mark.anyio


@tool
def lookup(term: str) -> str:
    """Look a term up in the glossary.

    Args:
        term: The term.
    """
    return {"DAG": "a directed acyclic graph"}.get(term, "unknown")


@tool
def explode(reason: str) -> str:
    """Fail on purpose.

    Args:
        reason: Why.
    """
    raise RuntimeError(reason)


def plan(*tools: str) -> Plan:
    return Plan.model_validate(
        {
            "goal": "define a term",
            "tasks": [{"id": "define", "instruction": "Define DAG.", "tools": list(tools)}],
        }
    )


@pytest.fixture
def spans() -> Iterator[tuple[InMemorySpanExporter, Telemetry]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, Telemetry(provider)
    provider.shutdown()


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


async def test_a_double_asks_for_a_tool_and_the_engine_runs_it(
    spans: tuple[InMemorySpanExporter, Telemetry],
) -> None:
    exporter, telemetry = spans

    def model(request: ModelRequest) -> str | ToolCall:
        results = tool_results(request)
        if not results:
            return ToolCall(id="call-1", name="lookup", arguments={"term": "DAG"})
        return f"DAG: {results[0].content}."

    client = FunctionModel(model)
    engine = Engine(client, tools=[lookup], telemetry=telemetry)
    result = await engine.run(plan("lookup"))

    assert result.status == "succeeded"
    assert result.outputs["define"] == "DAG: a directed acyclic graph."
    assert len(client.requests) == 2
    # the first turn offered the tool; the second carried the call and its result
    assert [t.name for t in client.requests[0].tools] == ["lookup"]
    assert len(client.requests[0].messages) == 1  # each turn's request is its own snapshot
    [answer] = tool_results(client.requests[1])
    assert answer.tool_call_id == "call-1"
    assert not answer.is_error
    # one chat span per turn, the tool call in its own span, all under the attempt
    [attempt] = named(exporter, "attempt ")
    chats = named(exporter, "chat ")
    [run_tool] = named(exporter, "execute_tool ")
    assert len(chats) == 2
    assert run_tool.attributes is not None
    assert run_tool.attributes["gen_ai.tool.name"] == "lookup"
    assert run_tool.attributes["gen_ai.tool.call.id"] == "call-1"
    for span in [*chats, run_tool]:
        assert span.parent is not None
        assert span.parent.span_id == attempt.context.span_id
    # every turn is paid for: the node costs the sum of both turns
    [node] = result.nodes
    [only] = node.attempts
    assert only.calls == 2
    # the double bills a quarter of its upper estimate, per turn
    assert only.input_tokens == sum(estimate_prompt_tokens(r) // 4 for r in client.requests)
    assert result.cost_usd == only.cost_usd > 0


async def test_tool_errors_and_tools_outside_the_allowlist_go_back_to_the_model() -> None:
    def model(request: ModelRequest) -> str | list[ToolCall]:
        results = tool_results(request)
        if not results:
            return [
                ToolCall(id="a", name="explode", arguments={"reason": "boom"}),
                ToolCall(id="b", name="lookup", arguments={"term": "DAG"}),
                ToolCall(id="c", name="lookup", arguments={"nonsense": 1}),
            ]
        return " | ".join(f"{r.tool_call_id}:{r.is_error}:{r.content}" for r in results)

    # 'lookup' is registered with the engine but not allowlisted by the task
    engine = Engine(FunctionModel(model), tools=[explode, lookup])
    result = await engine.run(plan("explode"))

    assert result.status == "succeeded"
    a, b, c = result.outputs["define"].split(" | ")
    assert a == "a:True:RuntimeError: boom"
    assert b == "b:True:tool 'lookup' is not available to this task"
    assert c.startswith("c:True:tool 'lookup' is not available")


async def test_the_last_turn_forbids_tools_so_the_loop_ends() -> None:
    def insists(request: ModelRequest) -> str | ToolCall:
        if request.tool_choice == "none":
            return "fine, the answer without looking it up."
        return ToolCall(id=f"c{len(request.messages)}", name="lookup", arguments={"term": "x"})

    client = FunctionModel(insists)
    engine = Engine(client, tools=[lookup], config=RunConfig(max_tool_steps=3))
    result = await engine.run(plan("lookup"))

    assert result.outputs["define"] == "fine, the answer without looking it up."
    assert [r.tool_choice for r in client.requests] == ["auto", "auto", "none"]
    assert len(tool_results(client.requests[-1])) == 1


async def test_a_plain_function_is_a_tool_and_two_tools_of_one_name_are_an_error() -> None:
    def shout(text: str) -> str:
        """Shout it.

        Args:
            text: What to shout.
        """
        return text.upper()

    def model(request: ModelRequest) -> str | ToolCall:
        results = tool_results(request)
        if not results:
            return ToolCall(id="s", name="shout", arguments={"text": "hi"})
        return results[0].content

    engine = Engine(FunctionModel(model), tools=[shout])
    result = await engine.run(plan("shout"))
    assert result.outputs["define"] == "HI"

    with pytest.raises(ToolDefinitionError, match="'lookup' is already registered"):
        Engine(FunctionModel(model), tools=[lookup, lookup])
