"""The unmodified SDK against the simulated server: the happy paths."""

from __future__ import annotations

import json

import anyio
import pytest
from pydantic import BaseModel

from orchestrator_sim import SIMULATED_HEADER, SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)


async def test_plain_create(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            raw = await client.messages.with_raw_response.create(
                model="claude-opus-5-5",
                max_tokens=1000,
                messages=[{"role": "user", "content": "Explain how tide pools form."}],
            )
            message = await raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers[SIMULATED_HEADER] == "true"
    assert message.id.startswith("msg_")
    assert message.model == "claude-opus-5-5"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "tide" in message.content[0].text.lower()
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    assert server.requests[0].kind == "task"
    assert server.requests[0].request_id == raw.headers["request-id"]


async def test_streaming_text_matches_the_non_streamed_answer(make_client) -> None:
    params = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "Summarise the water cycle."}],
    }
    with anyio.fail_after(10):
        async with (
            serve(INSTANT) as server,
            make_client(server) as client,
            client.messages.stream(**params) as stream,
        ):
            pieces = [text async for text in stream.text_stream]
            streamed = await stream.get_final_message()
            plain = await client.messages.create(**params)
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.content[0].text == plain.content[0].text
    assert streamed.stop_reason == "end_turn"
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert server.requests[0].stream is True


async def test_raw_event_stream_has_the_documented_event_order(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            stream = await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=500,
                messages=[{"role": "user", "content": "Name a colour."}],
                stream=True,
            )
            events = [event.type async for event in stream]
    assert events[0] == "message_start"
    assert events[1] == "content_block_start"
    assert set(events[2:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


class Recipe(BaseModel):
    title: str
    ingredients: list[str]
    minutes: int
    vegetarian: bool


async def test_structured_output_with_parse(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            parsed = await client.messages.parse(
                model="claude-opus-5-5",
                max_tokens=1000,
                messages=[{"role": "user", "content": "A recipe for lentil soup."}],
                output_format=Recipe,
            )
    recipe = parsed.parsed_output
    assert isinstance(recipe, Recipe)
    assert recipe.ingredients
    assert "lentil" in recipe.title.lower()
    assert server.requests[0].kind == "task"


async def test_structured_output_via_output_config_dict(make_client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "item": {"$ref": "#/$defs/Item"},
        },
        "required": ["kind", "item"],
        "additionalProperties": False,
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 5}},
                "required": ["n"],
                "additionalProperties": False,
            }
        },
    }
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            message = await client.messages.create(
                model="claude-opus-5-5",
                max_tokens=1000,
                messages=[{"role": "user", "content": "Pick one."}],
                output_config={"format": {"type": "json_schema", "schema": schema}},
            )
    data = json.loads(message.content[0].text)
    assert data["kind"] == "a"
    assert data["item"]["n"] >= 5


async def test_count_tokens_matches_create_usage(make_client) -> None:
    params = {
        "model": "claude-haiku-5-5",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Describe a lighthouse in one paragraph."}],
    }
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            counted = await client.messages.count_tokens(**params)
            message = await client.messages.create(max_tokens=500, **params)
    assert counted.input_tokens == message.usage.input_tokens > 0
    assert server.requests[0].kind == "count_tokens"


async def test_max_tokens_truncates_and_says_so(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            message = await client.messages.create(
                model="claude-opus-5-5",
                max_tokens=3,
                messages=[{"role": "user", "content": "Explain the history of printing."}],
            )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3
    assert len(message.content[0].text) <= 12


async def test_models_endpoint_lists_the_default_ladder(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            page = await client.models.list()
            one = await client.models.retrieve("claude-sonnet-5-5")
    ids = [model.id for model in page.data]
    assert ids == ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"]
    assert one.display_name == "Claude Sonnet 5.5"


async def test_latency_follows_ttft_and_speed(make_client) -> None:
    config = SimConfig(time_scale=0.01)  # opus: 1 s ttft + tokens / 45 per s, scaled
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            started = anyio.current_time()
            message = await client.messages.create(
                model="claude-opus-5-5",
                max_tokens=500,
                messages=[{"role": "user", "content": "Describe a quiet harbour."}],
            )
            elapsed = anyio.current_time() - started
    expected = 0.01 * (1.0 + message.usage.output_tokens / 45.0)
    assert server.requests[0].latency_s == pytest.approx(expected, abs=1e-5)
    assert elapsed >= expected - 1e-3
