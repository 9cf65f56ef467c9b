"""The Anthropic client through the real SDK over HTTP to the local Messages-API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from orchestrator import (
    Budget,
    Engine,
    Message,
    Meter,
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
from orchestrator.models.anthropic import AnthropicClient, RetryEvent
from orchestrator.models.retry import RetryPolicy
from orchestrator.sim import SimConfig, serve

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


async def test_tool_loop_runs_the_tool_and_returns_the_final_answer(sim: Any) -> None:
    tool = Lookup()
    async with AnthropicClient(base_url=sim.base_url, api_key="test") as client:
        m = meter()
        response = await client.complete(
            request("What do our notes say about queues?", tools=[tool]), m
        )
    assert tool.calls
    assert "query" in tool.calls[0]
    assert response.tool_calls >= 1
    assert m.calls >= 2  # the tool_use turn and the final answer
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
