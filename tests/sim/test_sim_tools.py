"""Tool use through the SDK: search, read a passage, answer citing it."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)
PASSAGES = {
    "notes/tides.md#1": "Tide pools form where rocky shores trap seawater as the tide goes out.",
    "notes/tides.md#2": "Anemones and sea stars survive in tide pools between high tides.",
}
TOOLS = [
    {
        "name": "search_corpus",
        "description": "Search the notes; returns passage ids with snippets.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
    {
        "name": "read_passage",
        "description": "Return one passage by id.",
        "input_schema": {
            "type": "object",
            "properties": {"passage_id": {"type": "string"}},
            "required": ["passage_id"],
        },
    },
]


def run_tool(name: str, arguments: dict[str, Any]) -> str:
    if name == "search_corpus":
        return "\n".join(f"[{pid}] {text[:30]}..." for pid, text in PASSAGES.items())
    return PASSAGES.get(arguments["passage_id"], "no such passage")


async def tool_loop(client, model: str, task: str, *, stream: bool = False, **extra):
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    replies = []
    for _ in range(6):
        params = {"model": model, "max_tokens": 2000, "messages": messages, "tools": TOOLS, **extra}
        if stream:
            async with client.messages.stream(**params) as events:
                reply = await events.get_final_message()
        else:
            reply = await client.messages.create(**params)
        replies.append(reply)
        if reply.stop_reason != "tool_use":
            return replies
        messages.append({"role": "assistant", "content": reply.content})
        results = [
            {
                "type": "tool_result",
                "tool_use_id": block.id,
                "content": run_tool(block.name, block.input),
            }
            for block in reply.content
            if block.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results})
    raise AssertionError("the brain did not stop calling tools")


def calls(replies) -> list[tuple[str, dict[str, Any]]]:
    return [(b.name, b.input) for r in replies for b in r.content if b.type == "tool_use"]


@pytest.mark.parametrize("stream", [False, True])
async def test_search_read_then_answer_with_a_real_quote(make_client, stream) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            replies = await tool_loop(
                client, "claude-opus-5-5", "How do tide pools form?", stream=stream
            )
    assert [r.stop_reason for r in replies] == ["tool_use", "tool_use", "end_turn"]
    (first, first_input), (second, second_input) = calls(replies)
    assert first == "search_corpus"
    assert "tide" in first_input["query"]
    assert (second, second_input) == ("read_passage", {"passage_id": "notes/tides.md#1"})
    answer = replies[-1].content[0].text
    quote = re.search(r'"([^"]+)" \[notes/tides\.md#1\]', answer)
    assert quote is not None
    assert quote.group(1) in PASSAGES["notes/tides.md#1"]
    assert "[notes/tides.md#2]" in answer
    assert [r.kind for r in server.requests] == ["tool_turn"] * 3
    assert server.requests[-1].flawed is False
    assert server.requests[0].flawed is None  # a tool call is not an answer


async def test_weak_model_invents_a_passage_id(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            replies = await tool_loop(
                client, "claude-haiku-5-5", "Compare how tide pools form. [difficulty=3]"
            )
    answer = replies[-1].content[0].text
    cited = set(re.findall(r"\[([^\[\]\s]+#\d+)\]", answer))
    invented = cited - set(PASSAGES)
    assert invented
    record = server.requests[-1]
    assert record.flaw == "invented_citation"
    assert invented.pop() in (record.flaw_detail or "")


async def test_tool_choice_none_answers_at_once(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            replies = await tool_loop(
                client, "claude-sonnet-5-5", "How do tide pools form?", tool_choice={"type": "none"}
            )
    assert len(replies) == 1
    assert replies[0].stop_reason == "end_turn"


async def test_step_bound_without_ids_to_read(make_client) -> None:
    tools = [
        {
            "name": "weather",
            "description": "Weather for a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        }
    ]
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            first = await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=500,
                tools=tools,
                messages=[{"role": "user", "content": "Will Lisbon be sunny?"}],
            )
            tool_use = first.content[-1]
            assert tool_use.type == "tool_use"
            assert set(tool_use.input) == {"city", "days"}
            second = await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=500,
                tools=tools,
                messages=[
                    {"role": "user", "content": "Will Lisbon be sunny?"},
                    {"role": "assistant", "content": first.content},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": tool_use.id, "content": "Sunny."}
                        ],
                    },
                ],
            )
    assert second.stop_reason == "end_turn"


async def test_tool_results_with_json_ids_are_followed(make_client) -> None:
    tools = [
        {**TOOLS[0], "name": "find_docs"},
        {
            "name": "get_doc",
            "description": "Fetch a document.",
            "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Find the budget memo."}]
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            first = await client.messages.create(
                model="claude-haiku-5-5", max_tokens=500, tools=tools, messages=messages
            )
            messages += [
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": first.content[-1].id,
                            "content": json.dumps([{"id": "memo-7", "title": "Budget"}]),
                        }
                    ],
                },
            ]
            second = await client.messages.create(
                model="claude-haiku-5-5", max_tokens=500, tools=tools, messages=messages
            )
    assert second.content[-1].type == "tool_use"
    assert (second.content[-1].name, second.content[-1].input) == ("get_doc", {"id": "memo-7"})
