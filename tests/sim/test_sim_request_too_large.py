"""An oversized request gets the documented 413 ``request_too_large``, read by the client.

The server answers as soon as the body's declared length is over the limit, then reads and
drops the rest of the upload: closing with unread data would reset the connection and the
client would see a dropped connection (and retry, uploading the body again) instead.
"""

from __future__ import annotations

import json

import anthropic
import anyio
import anyio.abc
import httpx2
import pytest

from orchestrator import Budget, Message, ModelAPIUserError, ModelRequest, default_ladder
from orchestrator.budget import Meter
from orchestrator.models.anthropic import AnthropicClient, RetryEvent
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

LIMIT = 256 * 1024
TOO_LARGE = SimConfig(time_scale=0, max_body_bytes=LIMIT)
BIG_PROMPT = "x" * (32 * LIMIT)  # 8 MiB: more than socket buffers hold, as real uploads are


async def test_the_sdk_gets_413_once_and_does_not_upload_again() -> None:
    sent: list[httpx2.Request] = []

    async def count(request: httpx2.Request) -> None:
        sent.append(request)

    http_client = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
    with anyio.fail_after(20):
        async with (
            serve(TOO_LARGE) as server,
            anthropic.AsyncAnthropic(  # the SDK's own retries on: 413 is not retried
                base_url=server.base_url, api_key="k", max_retries=3, http_client=http_client
            ) as client,
        ):
            with pytest.raises(anthropic.APIStatusError) as info:
                await client.messages.create(
                    model="claude-haiku-5-5",
                    max_tokens=16,
                    messages=[{"role": "user", "content": BIG_PROMPT}],
                )
            small = await client.messages.create(  # the server is fine afterwards
                model="claude-haiku-5-5",
                max_tokens=16,
                messages=[{"role": "user", "content": "Hi."}],
            )
    error = info.value
    assert error.status_code == 413
    assert error.body == {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": f"Request exceeds the maximum allowed number of bytes ({LIMIT}).",
        },
    }
    assert error.response.headers["x-orchestrator-simulated"] == "true"
    assert len(sent) == 2  # the big request once, then the small one
    assert small.stop_reason in {"end_turn", "max_tokens"}


async def test_the_orchestrator_client_does_not_retry_a_413() -> None:
    retries: list[RetryEvent] = []
    tier = default_ladder().get("haiku")
    request = ModelRequest(
        tier=tier, messages=[Message(role="user", content=BIG_PROMPT)], max_output_tokens=16
    )
    meter = Meter(tier, Budget())
    with anyio.fail_after(20):
        async with (
            serve(TOO_LARGE) as server,
            AnthropicClient(base_url=server.base_url, api_key="k", on_retry=retries.append) as c,
        ):
            with pytest.raises(ModelAPIUserError) as info:
                await c.complete(request, meter)
    assert info.value.status_code == 413
    assert info.value.error_type == "request_too_large"
    assert retries == []
    assert meter.cost_usd == 0  # an error answer is not billed


async def read_until_closed(stream: anyio.abc.ByteStream) -> bytes:
    """Everything the server sends until it closes its side."""
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data


async def test_a_chunked_body_over_the_limit_gets_413_too() -> None:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\n"
        b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    with anyio.fail_after(20):
        async with (
            serve(TOO_LARGE) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as stream,
        ):
            await stream.send(head)
            for _ in range(len(BIG_PROMPT) // len(chunk)):
                await stream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await stream.send(b"0\r\n\r\n")
            answer = await read_until_closed(stream)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"]["type"] == "request_too_large"
