"""Prompt caching: writes on first sight of a prefix, reads after, input excludes both."""

from __future__ import annotations

import anyio
import pytest

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)
LONG_SYSTEM = "You are a careful analyst who writes plainly. " * 120  # ~1,400 tokens
TOOLS = [
    {
        "name": f"tool_{i}",
        "description": "Does one thing well. " * 60,
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    for i in range(3)
]


def cached_system(ttl: str | None = None) -> list[dict[str, object]]:
    control: dict[str, str] = {"type": "ephemeral"}
    if ttl:
        control["ttl"] = ttl
    return [{"type": "text", "text": LONG_SYSTEM, "cache_control": control}]


async def test_first_request_writes_later_requests_read(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            usages = []
            for question in ("What is a delta?", "What is an estuary?", "What is a fjord?"):
                message = await client.messages.create(
                    model="claude-sonnet-5-5",
                    max_tokens=300,
                    system=cached_system(),
                    messages=[{"role": "user", "content": question}],
                )
                usages.append(message.usage)
            counted = await client.messages.count_tokens(
                model="claude-sonnet-5-5",
                system=cached_system(),
                messages=[{"role": "user", "content": "What is a delta?"}],
            )
    first, second, third = usages
    assert first.cache_creation_input_tokens == len(LONG_SYSTEM) // 4
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert third.cache_read_input_tokens == first.cache_creation_input_tokens
    assert 0 < first.input_tokens < 10  # only the question is uncached
    total = first.input_tokens + first.cache_creation_input_tokens + first.cache_read_input_tokens
    assert counted.input_tokens == total


async def test_cache_is_per_model_and_ttl_is_reported(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            params = {
                "max_tokens": 300,
                "system": cached_system("1h"),
                "messages": [{"role": "user", "content": "Hello."}],
            }
            opus = await client.messages.create(model="claude-opus-5-5", **params)
            sonnet = await client.messages.create(model="claude-sonnet-5-5", **params)
    for usage in (opus.usage, sonnet.usage):
        assert usage.cache_read_input_tokens == 0
        assert usage.cache_creation.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
        assert usage.cache_creation_input_tokens > 0


async def test_short_prefixes_are_not_cached(make_client) -> None:
    short = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            for _ in range(2):
                message = await client.messages.create(
                    model="claude-haiku-5-5",
                    max_tokens=100,
                    system=short,
                    messages=[{"role": "user", "content": "Hi."}],
                )
                assert message.usage.cache_creation_input_tokens == 0
                assert message.usage.cache_read_input_tokens == 0


async def test_tools_and_system_form_one_prefix(make_client) -> None:
    tools = [*TOOLS[:-1], {**TOOLS[-1], "cache_control": {"type": "ephemeral"}}]
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            params = {
                "model": "claude-haiku-5-5",
                "max_tokens": 300,
                "tools": tools,
                "system": cached_system(),
                "tool_choice": {"type": "none"},
            }
            first = await client.messages.create(
                messages=[{"role": "user", "content": "One."}], **params
            )
            other_system = await client.messages.create(
                messages=[{"role": "user", "content": "Two."}],
                **{**params, "system": [{**cached_system()[0], "text": LONG_SYSTEM + "!"}]},
            )
    tools_only = first.usage.cache_creation_input_tokens - len(LONG_SYSTEM) // 4
    assert tools_only > 0
    # The tools prefix is still cached; only the changed system prompt is written again.
    assert other_system.usage.cache_read_input_tokens == tools_only
    assert other_system.usage.cache_creation_input_tokens > len(LONG_SYSTEM) // 4 - 5


async def test_top_level_cache_control_caches_the_growing_conversation(make_client) -> None:
    long_question = "Please consider this carefully. " * 200
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            turns = [{"role": "user", "content": long_question}]
            first = await client.messages.create(
                model="claude-opus-5-5",
                max_tokens=300,
                messages=turns,
                cache_control={"type": "ephemeral"},
            )
            turns += [
                {"role": "assistant", "content": first.content[0].text},
                {"role": "user", "content": "And then?"},
            ]
            second = await client.messages.create(
                model="claude-opus-5-5",
                max_tokens=300,
                messages=turns,
                cache_control={"type": "ephemeral"},
            )
    assert first.usage.cache_creation_input_tokens > 1024
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens > 0  # the new turns
