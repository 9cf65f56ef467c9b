"""Injected faults: each surfaces as the SDK's own exception, deterministically."""

from __future__ import annotations

import json

import anthropic
import anyio
import pytest

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio


def only(kind: str, **extra: object) -> SimConfig:
    settings: dict[str, object] = {"time_scale": 0, "fault_rate": 1.0, "fault_kinds": {kind: 1.0}}
    return SimConfig.model_validate({**settings, **extra})


def ask(text: str = "Describe a river delta.") -> dict[str, object]:
    return {
        "model": "claude-haiku-5-5",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": text}],
    }


async def send(client, *, stream: bool) -> None:
    if stream:
        async with client.messages.stream(**ask()) as events:
            await events.get_final_message()
    else:
        await client.messages.create(**ask())


async def test_rate_limit_is_429_with_retry_after(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(only("rate_limit", time_scale=1.0, retry_after_s=7)) as server,
            make_client(server) as client,
        ):
            with pytest.raises(anthropic.RateLimitError) as caught:
                await client.messages.create(**ask())
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "7"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert server.requests[0].fault == "rate_limit"


async def test_retry_after_is_scaled_by_time_scale(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(only("rate_limit", time_scale=0.01)) as server,
            make_client(server) as client,
        ):
            with pytest.raises(anthropic.RateLimitError) as caught:
                await client.messages.create(**ask())
    assert float(caught.value.response.headers["retry-after"]) == pytest.approx(0.01)


async def test_overloaded_is_529(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(only("overloaded")) as server, make_client(server) as client:
            with pytest.raises(anthropic.OverloadedError) as caught:
                await client.messages.create(**ask())
    assert isinstance(caught.value, anthropic.InternalServerError)
    assert caught.value.status_code == 529
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_server_error_is_500(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(only("server_error")) as server, make_client(server) as client:
            with pytest.raises(anthropic.InternalServerError) as caught:
                await client.messages.create(**ask())
    assert caught.value.status_code == 500
    assert caught.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_connection_is_a_connection_error(make_client, stream) -> None:
    with anyio.fail_after(10):
        async with serve(only("drop_connection")) as server, make_client(server) as client:
            with pytest.raises(anthropic.APIConnectionError) as caught:
                await send(client, stream=stream)
    assert not isinstance(caught.value, anthropic.APITimeoutError)
    assert server.requests[0].fault == "drop_connection"


async def test_a_truncated_body_is_cut_mid_json_and_still_billed(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(only("truncated_body")) as server, make_client(server) as client:
            raw = await client.messages.with_raw_response.create(**ask())
            body = await raw.http_response.aread()
            with pytest.raises(json.JSONDecodeError):  # cut short; its length looks right
                json.loads(body)
            assert int(raw.headers["content-length"]) == len(body)
    (record,) = server.requests
    assert (record.fault, record.status) == ("truncated_body", 200)
    assert record.usage is not None  # answered, so billed


async def test_a_truncated_stream_ends_before_message_stop(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(only("truncated_body")) as server,
            make_client(server) as client,
            client.messages.stream(**ask()) as events,
        ):
            seen = [event.type async for event in events]
    assert "message_start" in seen
    assert "message_stop" not in seen
    assert server.requests[0].fault == "truncated_body"


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_answer_times_out(make_client, stream) -> None:
    with anyio.fail_after(10):
        async with (
            serve(only("slow", slow_response_s=5.0)) as server,
            make_client(server, timeout=0.2) as client,
        ):
            with pytest.raises(anthropic.APITimeoutError):
                await send(client, stream=stream)
    assert server.requests[0].fault == "slow"
    assert server.requests[0].latency_s >= 5.0


async def test_slow_answer_arrives_for_a_patient_client(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(only("slow", slow_response_s=0.05)) as server,
            make_client(server) as client,
        ):
            message = await client.messages.create(**ask())
    assert message.stop_reason == "end_turn"


async def test_sdk_retries_get_through_a_faulty_server(make_client) -> None:
    # Seed 29 keeps every request within one retry, so the SDK's backoff stays short.
    kinds = {"rate_limit": 3.0, "overloaded": 2.0, "server_error": 1.0, "drop_connection": 1.0}
    config = SimConfig(time_scale=0, fault_rate=0.3, fault_kinds=kinds, seed=29)
    answers: list[str] = []
    with anyio.fail_after(30):
        async with serve(config) as server, make_client(server, max_retries=8) as client:

            async def one(index: int) -> None:
                message = await client.messages.create(**ask(f"Describe river number {index}."))
                answers.append(message.content[0].text)

            async with anyio.create_task_group() as tg:
                for index in range(24):
                    tg.start_soon(one, index)
    assert len(answers) == 24
    faults = [record.fault for record in server.requests if record.fault]
    assert len(faults) >= 4
    assert len(server.requests) == 24 + len(faults)


async def test_faults_are_deterministic_and_retries_can_succeed(make_client) -> None:
    config = SimConfig(time_scale=0, fault_rate=0.5, fault_kinds={"server_error": 1.0}, seed=11)

    async def outcomes() -> list[int]:
        async with serve(config) as server, make_client(server) as client:
            for index in range(12):
                for _attempt in range(6):  # the same body again: a fresh draw each time
                    try:
                        await client.messages.create(**ask(f"Question {index}."))
                    except anthropic.InternalServerError:
                        continue
                    break
        return [record.status for record in server.requests]

    with anyio.fail_after(10):
        first, second = await outcomes(), await outcomes()
    assert first == second
    assert 500 in first
    assert first.count(200) == 12


async def test_invalid_requests_get_their_400_whatever_the_fault_rate(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(only("server_error")) as server, make_client(server) as client:
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.create(**{**ask(), "model": "claude-missing"})
