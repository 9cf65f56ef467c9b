"""The Anthropic client through the real SDK over HTTP to the local Messages-API server."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from orchestrator import (
    Budget,
    Engine,
    Message,
    ModelAPIError,
    ModelAPIUserError,
    ModelRequest,
    NodeStatus,
    Plan,
    RunStatus,
    Task,
    Workflow,
    default_ladder,
)
from orchestrator.budget import Meter
from orchestrator.models.anthropic import AnthropicClient, RetryEvent
from orchestrator.models.retry import RetryPolicy
from orchestrator.turns import run_turns
from orchestrator_sim import SimConfig, serve
from orchestrator_sim.app import SimApp
from orchestrator_sim.http import HttpRequest, HttpResponse, bound_port, listen, serve_listener
from orchestrator_sim.reqlog import RequestLog

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(
    max_retries=6, base_delay_s=0.001, max_delay_s=0.005, max_retry_after_s=0.005
)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with serve(SimConfig(time_scale=0)) as server:
        yield server


def request(text: str, tier: str = "haiku", **fields: Any) -> ModelRequest:
    return ModelRequest(
        tier=default_ladder().get(tier),
        messages=[Message(role="user", content=text)],
        max_output_tokens=512,
        **fields,
    )


def meter(tier: str = "haiku") -> Meter:
    return Meter(default_ladder().get(tier), Budget())


async def test_plain_completion_is_metered_and_marked_simulated(sim: Any) -> None:
    async with AnthropicClient(base_url=sim.base_url, api_key="test") as client:
        m = meter()
        response = await client.complete(request("Name three uses of a queue."), m)
    assert response.text.strip()
    assert response.model == "claude-haiku-5-5"
    assert response.response_id
    assert response.simulated is True
    assert response.usage.output_tokens > 0
    assert m.calls == 1
    assert m.cost_usd == pytest.approx(default_ladder().get("haiku").cost(response.usage))


async def test_streaming_gives_the_same_shape(sim: Any) -> None:
    async with AnthropicClient(base_url=sim.base_url, api_key="test", stream=True) as client:
        response = await client.complete(request("Explain backpressure briefly."), meter())
    assert response.text.strip()
    assert response.stop_reason == "end_turn"
    assert response.usage.output_tokens > 0


class Summary(BaseModel):
    title: str
    points: list[str]


async def test_structured_output_through_output_config(sim: Any) -> None:
    async with AnthropicClient(base_url=sim.base_url, api_key="test") as client:
        response = await client.complete(
            request("Summarise anyio.", tier="sonnet", output_schema=Summary.model_json_schema()),
            meter("sonnet"),
        )
    assert isinstance(response.data, dict)
    Summary.model_validate(response.data)
    assert [r.get("kind") for r in sim.requests][-1] != "error"


class Lookup:
    """A tool that records its calls."""

    name = "search_notes"
    description = "Search the team's notes for a query; returns matching notes with ids."
    input_schema: dict[str, Any] = {  # noqa: RUF012
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    }

    def __init__(self) -> None:
        self.calls: list[Mapping[str, Any]] = []

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        self.calls.append(arguments)
        return "[notes/queues.md#0] Queues decouple producers from consumers."


async def test_one_turn_returns_tool_calls_and_the_loop_runs_them(sim: Any) -> None:
    tool = Lookup()
    req = request("What do our notes say about queues?", tools=[tool])
    async with AnthropicClient(base_url=sim.base_url, api_key="test") as client:
        first = await client.complete(req, meter())
        assert first.stop_reason == "tool_use"  # one turn: the client runs no tool
        assert first.tool_calls
        assert not tool.calls
        m = meter()
        response = await run_turns(client, req, m)
    assert tool.calls
    assert "query" in tool.calls[0]
    assert m.calls >= 2  # the tool_use turn and the final answer
    assert response.stop_reason == "end_turn"
    assert response.text.strip()


async def test_unknown_model_is_a_user_error_and_not_retried(sim: Any) -> None:
    tier = default_ladder().get("haiku").model_copy(update={"model": "claude-nonexistent"})
    req = ModelRequest(
        tier=tier, messages=[Message(role="user", content="hi")], max_output_tokens=10
    )
    async with AnthropicClient(base_url=sim.base_url, api_key="test", retry=FAST_RETRY) as client:
        with pytest.raises(ModelAPIUserError) as info:
            await client.complete(req, Meter(tier, Budget()))
    assert info.value.status_code == 404
    assert info.value.error_type == "not_found_error"
    assert "check the tier's model id" in str(info.value)
    assert len(sim.requests) == 1


async def test_missing_key_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with AnthropicClient(base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ModelAPIUserError, match="set ANTHROPIC_API_KEY, or run offline"):
            await client.complete(request("hi"), meter())


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("rate_limit", "rate_limit_error"),
        ("overloaded", "overloaded_error"),
        ("server_error", "api_error"),
        ("drop_connection", "connection_error"),
        ("truncated_body", "invalid_response"),
    ],
)
async def test_each_fault_is_retried_then_reported(kind: str, error_type: str) -> None:
    config = SimConfig(time_scale=0, fault_rate=1.0, fault_kinds={kind: 1.0})
    retries: list[RetryEvent] = []
    policy = RetryPolicy(
        max_retries=2, base_delay_s=0.001, max_delay_s=0.002, max_retry_after_s=0.002
    )
    async with (
        serve(config) as server,
        AnthropicClient(
            base_url=server.base_url, api_key="test", retry=policy, on_retry=retries.append
        ) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ModelAPIError) as info:
            await client.complete(request("hi"), meter())
    assert info.value.retryable
    assert info.value.error_type == error_type
    assert [r.retry for r in retries] == [1, 2]
    assert client.errors_seen[error_type] == 3


async def test_too_slow_response_times_out_and_is_retried() -> None:
    config = SimConfig(time_scale=0, fault_rate=1.0, fault_kinds={"slow": 1.0}, slow_response_s=5)
    policy = RetryPolicy(max_retries=1, base_delay_s=0.001, max_delay_s=0.002)
    async with (
        serve(config) as server,
        AnthropicClient(
            base_url=server.base_url, api_key="t", retry=policy, timeout_s=0.2
        ) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ModelAPIError) as info:
            await client.complete(request("hi"), meter())
    assert info.value.error_type == "timeout"


async def test_run_under_30_percent_faults_verifies_every_node() -> None:
    plan = Plan(
        goal="faults",
        tasks=[Task(id=f"t{i}", instruction=f"Describe item {i}.") for i in range(24)],
    )
    config = SimConfig(seed=7, time_scale=0, fault_rate=0.3)
    async with (
        serve(config) as server,
        AnthropicClient(
            base_url=server.base_url, api_key="t", retry=FAST_RETRY, seed=1, timeout_s=2
        ) as client,
    ):
        with anyio.fail_after(60):
            result = await Engine(client).run(plan, max_concurrency=8)
    assert result.status is RunStatus.SUCCEEDED
    assert all(node.status is NodeStatus.SUCCEEDED for node in result.nodes)
    assert sum(client.errors_seen.values()) > 0  # faults really happened and were absorbed
    assert result.simulated


async def test_workflow_with_structured_output_end_to_end(sim: Any) -> None:
    wf = Workflow("summaries")

    @wf.llm(output=Summary)
    def summary() -> str:
        return "Summarise what a task queue is."

    async with AnthropicClient(base_url=sim.base_url, api_key="t") as client:
        result = await Engine(client).run(wf)
    assert result.node("summary").status is NodeStatus.SUCCEEDED
    assert isinstance(result.output, Summary)


# -- response bodies that do not parse ----------------------------------------------------


def _cut(response: HttpResponse, how: str) -> HttpResponse:
    """The simulator's answer, damaged as a flaky network or proxy would damage it."""
    if how == "half_body":  # a JSON body cut short (its content-length says so)
        return HttpResponse(response.status, response.headers, response.body[:-40])
    if how == "not_a_message":  # JSON, but not a message
        return HttpResponse(response.status, response.headers, b"{}")
    assert response.stream is not None
    events = response.stream

    async def damaged() -> AsyncGenerator[bytes, None]:
        sent = 0
        async for chunk in events:  # one chunk per event
            if sent == 3:
                if how == "cut_event":  # an event whose data is cut mid-JSON
                    yield chunk[: len(chunk) // 2] + b"\n\n"
                if how == "dropped":  # the connection closes mid-body
                    raise anyio.BrokenResourceError
                return  # "early_end": the body ends cleanly before message_stop
            sent += 1
            yield chunk

    return HttpResponse(response.status, response.headers, stream=damaged())


@asynccontextmanager
async def damaging_sim(how: str, damaged: int) -> AsyncIterator[tuple[str, list[Any]]]:
    """The simulator, with its first ``damaged`` answers to /v1/messages damaged by ``how``.

    Yields its base URL and its request records.
    """
    log = RequestLog(None)
    app = SimApp(SimConfig(time_scale=0), log)
    left = [damaged]

    async def handle(request: HttpRequest) -> HttpResponse:
        response = await app.handle(request)
        if request.path == "/v1/messages" and response.status == 200 and left[0] > 0:
            left[0] -= 1
            return _cut(response, how)
        return response

    listener = await listen("127.0.0.1", 0)
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_listener(
                listener, handle, max_body_bytes=1 << 20, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{bound_port(listener)}", log.records
        tg.cancel_scope.cancel()


DAMAGES = [
    pytest.param(False, "half_body", "invalid_response", id="plain-half-body"),
    pytest.param(False, "not_a_message", "invalid_response", id="plain-not-a-message"),
    pytest.param(True, "early_end", "invalid_response", id="stream-ends-early"),
    pytest.param(True, "cut_event", "invalid_response", id="stream-cut-event"),
    pytest.param(True, "dropped", "connection_error", id="stream-dropped"),
]


@pytest.mark.parametrize(("stream", "how", "error_type"), DAMAGES)
async def test_a_body_that_does_not_parse_is_retried_and_counted(
    stream: bool, how: str, error_type: str
) -> None:
    retries: list[RetryEvent] = []
    async with (
        damaging_sim(how, damaged=2) as (base_url, records),
        AnthropicClient(
            base_url=base_url, api_key="t", retry=FAST_RETRY, stream=stream, on_retry=retries.append
        ) as client,
    ):
        m = meter()
        with anyio.fail_after(10):
            response = await client.complete(request("Name three uses of a queue."), m)
    assert response.text
    assert response.stop_reason == "end_turn"
    assert len(records) == 3  # the same request, on the same tier, until it came back whole
    assert [(r.retry, r.error_type, r.tier) for r in retries] == [
        (1, error_type, "haiku"),
        (2, error_type, "haiku"),
    ]
    assert client.errors_seen == {error_type: 2}
    assert m.calls == 3
    assert m.usage.output_tokens == response.usage.output_tokens  # the damaged ones: $0


@pytest.mark.parametrize("stream", [False, True])
async def test_bodies_that_never_parse_fail_as_a_retryable_api_error(stream: bool) -> None:
    policy = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)
    how = "cut_event" if stream else "half_body"
    async with (
        damaging_sim(how, damaged=99) as (base_url, records),
        AnthropicClient(base_url=base_url, api_key="t", retry=policy, stream=stream) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ModelAPIError) as info:
            await client.complete(request("hi"), meter())
    assert type(info.value) is ModelAPIError  # not a user error: like a dropped connection
    assert info.value.retryable
    assert info.value.error_type == "invalid_response"
    assert "haiku (claude-haiku-5-5): invalid response" in str(info.value)
    assert client.errors_seen == {"invalid_response": 3}
    assert len(records) == 3


async def test_a_truncated_body_neither_escalates_nor_goes_uncounted() -> None:
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="Describe a queue.")])
    async with (
        damaging_sim("half_body", damaged=1) as (base_url, _records),
        AnthropicClient(base_url=base_url, api_key="t", retry=FAST_RETRY) as client,
    ):
        with anyio.fail_after(20):
            result = await Engine(client).run(plan)
    node = result.node("t")
    assert node.status is NodeStatus.SUCCEEDED
    assert [attempt.tier for attempt in node.attempts] == ["haiku"]  # retried, not escalated
    assert result.api_errors == {"invalid_response": 1}


async def test_a_call_whose_answer_was_not_read_counts_at_its_worst_case() -> None:
    # The server answered (and bills) a call whose body did not parse: its usage is lost,
    # so it counts as the worst case reserved for it, an upper bound, never as $0.
    tier = default_ladder().get("haiku")
    reserved: list[Decimal] = []

    async def on_reserve(m: Meter) -> None:
        reserved.append(m.in_flight_usd)

    m = Meter(tier, Budget(1.0), on_reserve=on_reserve)
    async with (
        damaging_sim("half_body", damaged=1) as (base_url, records),
        AnthropicClient(base_url=base_url, api_key="t", retry=FAST_RETRY) as client,
    ):
        with anyio.fail_after(10):
            response = await client.complete(request("Name three uses of a queue."), m)
    assert len(records) == 2
    assert m.cost_unknown
    assert m.cost_usd == reserved[0] + tier.cost(response.usage)
    assert m.budget.spent_usd == m.cost_usd


async def test_a_connection_never_made_costs_nothing() -> None:
    listener = await listen("127.0.0.1", 0)
    port = bound_port(listener)
    await listener.aclose()  # nothing listens there now: every connection is refused
    m = meter()
    async with AnthropicClient(
        base_url=f"http://127.0.0.1:{port}", api_key="t", retry=FAST_RETRY
    ) as client:
        with anyio.fail_after(10), pytest.raises(ModelAPIError):
            await client.complete(request("hi"), m)
    assert (m.cost_usd, m.cost_unknown) == (0, False)
    assert client.errors_seen["connection_error"] >= 1
