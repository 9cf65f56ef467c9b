"""Errors the real API gives, in its shapes, as the SDK's exception classes."""

from __future__ import annotations

import json

import anthropic
import anyio
import httpx2
import pytest

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)
TOOL = {
    "name": "lookup",
    "description": "Look something up.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
USER = [{"role": "user", "content": "Hello there."}]


def user_blocks(*blocks: dict[str, object]) -> dict[str, object]:
    return {"role": "user", "content": list(blocks)}


async def test_unknown_model_is_not_found(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            with pytest.raises(anthropic.NotFoundError) as caught:
                await client.messages.create(model="claude-nope-1", max_tokens=10, messages=USER)
    error = caught.value
    assert error.status_code == 404
    assert error.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope-1"},
        "request_id": error.request_id,
    }
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert server.requests[0].status == 404


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "lookup"}, {"type": "any"}])
@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-opus-5-5"])
async def test_forced_tool_choice_is_rejected_by_new_models(make_client, model, choice) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            with pytest.raises(anthropic.BadRequestError) as caught:
                await client.messages.create(
                    model=model, max_tokens=100, messages=USER, tools=[TOOL], tool_choice=choice
                )
    error = caught.value
    assert error.body["error"]["type"] == "invalid_request_error"
    assert "forced tool use" in error.body["error"]["message"]
    assert "not supported by" in error.body["error"]["message"]


async def test_forced_tool_choice_works_on_haiku(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            message = await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=500,
                messages=[{"role": "user", "content": "Find facts about otters."}],
                tools=[TOOL],
                tool_choice={"type": "tool", "name": "lookup"},
            )
    assert message.stop_reason == "tool_use"
    assert message.content[-1].type == "tool_use"
    assert message.content[-1].input == {"query": "otters"}  # key terms of the instruction


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "claude-haiku-5-5", "messages": USER}, "max_tokens: Field required"),
        (
            {"model": "claude-haiku-5-5", "max_tokens": "ten", "messages": USER},
            "max_tokens: Input should be a valid integer",
        ),
        ({"model": "claude-haiku-5-5", "max_tokens": 10, "messages": []}, "at least one message"),
        (
            {"model": "claude-haiku-5-5", "max_tokens": 10, "messages": [*USER, *USER]},
            "roles must alternate",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [{"role": "assistant", "content": "Hi"}],
            },
            'first message must use the "user" role',
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [{"role": "robot", "content": "Hi"}],
            },
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            },
            "text content blocks must be non-empty",
        ),
        (
            {"model": "claude-haiku-5-5", "max_tokens": 100_000, "messages": USER},
            "maximum allowed number of output tokens",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}],
                    }
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
                        ],
                    },
                    {"role": "user", "content": "Go on."},
                ],
                "tools": [TOOL],
            },
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            {"model": "claude-haiku-5-5", "max_tokens": 10, "messages": USER, "tools": [TOOL] * 2},
            "Tool names must be unique",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "tool_choice": {"type": "any"},
            },
            "tool_choice may only be specified while providing tools",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "output_config": {"format": {"type": "json_schema"}},
            },
            "output_config.format.schema: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "system": [
                    {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ],
                "messages": USER,
            },
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [*USER, {"role": "assistant", "content": "Well "}],
            },
            "final assistant content cannot end with trailing whitespace",
        ),
        (
            {"model": "claude-haiku-5-5", "max_tokens": 10, "messages": [user_blocks({"x": 1})]},
            "messages.0.content.0.type: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [user_blocks({"type": "text"})],
            },
            "messages.0.content.0.text: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "x"}],
                    },
                ],
            },
            "messages.1.content.0.tool_use.input: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": [user_blocks({"type": "tool_result"})],
            },
            "messages.0.content.0.tool_result.tool_use_id: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "tools": [{**TOOL, "name": "bad name!"}],
            },
            "tools.0.custom.name: String should match pattern",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "tools": [{"name": "lookup"}],
            },
            "tools.0.custom.input_schema: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "tools": [TOOL],
                "tool_choice": {"type": "sometimes"},
            },
            "tool_choice.type: Input tag does not match",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "tools": [TOOL],
                "tool_choice": {"type": "tool", "name": "other"},
            },
            "Tool 'other' not found in tools",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "messages": USER,
                "output_config": {"format": {"type": "xml"}},
            },
            "output_config.format.type: Input tag does not match",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 10,
                "system": [{"type": "text"}],
                "messages": USER,
            },
            "system.0.text: Field required",
        ),
        (
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 64_000,
                "messages": [{"role": "user", "content": "word " * 120_000}],
            },
            "input length and `max_tokens` exceed context limit",
        ),
    ],
)
async def test_malformed_requests_are_named(make_client, body, message) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            with pytest.raises(anthropic.BadRequestError) as caught:
                await client.post("/v1/messages", cast_to=object, body=body)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert message in caught.value.body["error"]["message"]
    assert server.requests[0].error_type == "invalid_request_error"


async def test_prompt_over_the_context_window_is_rejected(make_client) -> None:
    huge = "word " * 170_000  # ~212k tokens > haiku's 200k
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
                await client.messages.create(
                    model="claude-haiku-5-5",
                    max_tokens=10,
                    messages=[{"role": "user", "content": huge}],
                )


async def test_missing_key_version_and_unknown_route() -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, httpx2.AsyncClient(base_url=server.base_url) as http:
            body = {"model": "claude-haiku-5-5", "max_tokens": 10, "messages": USER}
            no_key = await http.post("/v1/messages", json=body)
            no_version = await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})
            nowhere = await http.get("/v2/elsewhere")
            bad_json = await http.post(
                "/v1/messages",
                content=b"{not json",
                headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            )
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]
    assert nowhere.status_code == 404
    assert nowhere.headers["request-id"] == nowhere.json()["request_id"]
    assert bad_json.status_code == 400
    assert "not valid JSON" in json.loads(bad_json.content)["error"]["message"]


async def test_server_tools_are_accepted_but_never_called(make_client) -> None:
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            message = await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=300,
                messages=[{"role": "user", "content": "Find otters."}],
                tools=[web, TOOL],
            )
    assert message.content[-1].type == "tool_use"
    assert message.content[-1].name == "lookup"
