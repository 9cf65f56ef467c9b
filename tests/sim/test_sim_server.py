"""The server itself: entry points, keep-alive, HTTP-level errors."""

from __future__ import annotations

import anthropic
import anyio
import pytest

from orchestrator_sim import SimConfig, run_forever, serve, start_in_thread
from orchestrator_sim import server as server_module

INSTANT = SimConfig(time_scale=0)
REQUEST = (
    b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
)
BODY = b'{"model":"claude-haiku-5-5","max_tokens":50,"messages":[{"role":"user","content":"Hi."}]}'


async def read_response(stream) -> bytes:
    """Read one response with a content-length body from a raw stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


@pytest.mark.anyio
async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with anyio.fail_after(10):
        async with (
            serve(INSTANT) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as stream,
        ):
            heads = []
            for _ in range(3):
                await stream.send(REQUEST % (len(BODY), BODY))
                heads.append((await read_response(stream)).split(b"\r\n", 1)[0])
    assert heads == [b"HTTP/1.1 200 OK"] * 3
    assert len(server.requests) == 3


@pytest.mark.anyio
async def test_malformed_http_and_oversized_bodies() -> None:
    config = SimConfig(time_scale=0, max_body_bytes=64)
    with anyio.fail_after(10):
        async with serve(config) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as first:
                await first.send(b"NONSENSE\r\n\r\n")
                garbled = await read_response(first)
            async with await anyio.connect_tcp("127.0.0.1", server.port) as second:
                big = b"x" * 200
                await second.send(REQUEST % (len(big), big))
                too_large = await read_response(second)
    assert garbled.startswith(b"HTTP/1.1 400")
    assert too_large.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in too_large


@pytest.mark.anyio
async def test_errors_raised_in_the_body_are_not_wrapped() -> None:
    with anyio.fail_after(10), pytest.raises(ValueError, match="mine"):
        async with serve(INSTANT):
            raise ValueError("mine")


def test_start_in_thread_serves_sync_callers() -> None:
    with start_in_thread(INSTANT) as handle:
        with anthropic.Anthropic(
            base_url=handle.base_url, api_key="k", max_retries=0, timeout=10
        ) as client:
            message = client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "Hello."}],
            )
        assert handle.base_url.startswith("http://127.0.0.1:")
    assert message.stop_reason == "end_turn"
    assert [record.kind for record in handle.requests] == ["task"]
    handle.stop()  # stopping twice is harmless


def test_start_in_thread_reports_a_port_in_use() -> None:
    with start_in_thread(INSTANT) as first, pytest.raises(RuntimeError, match="did not start"):
        start_in_thread(INSTANT, port=first.server.port)


def test_run_forever_serves_until_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def interrupted() -> None:
        seen.append("serving")
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module.anyio, "sleep_forever", interrupted)
    run_forever(INSTANT, "127.0.0.1", 0)
    assert seen == ["serving"]


def test_ipv6_base_url_is_bracketed() -> None:
    handle = server_module.SimServer(INSTANT, "::1", 8080, [])
    assert handle.base_url == "http://[::1]:8080"


class BrokenBrain:
    def respond(self, request):
        raise RuntimeError("brain bug")


@pytest.mark.anyio
async def test_a_failing_brain_is_a_500_and_the_server_keeps_serving(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(INSTANT, brain=BrokenBrain()) as server,
            make_client(server) as client,
        ):
            for _ in range(2):
                with pytest.raises(anthropic.InternalServerError):
                    await client.messages.create(
                        model="claude-haiku-5-5",
                        max_tokens=10,
                        messages=[{"role": "user", "content": "Hi."}],
                    )
    assert [r.notes["exception"] for r in server.requests] == ["RuntimeError: brain bug"] * 2
