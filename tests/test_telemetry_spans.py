"""Span bookkeeping on the unhappy paths: failures, skips, budget, cancellation.

Every span opened is ended, every context attached is detached (OpenTelemetry logs an
error otherwise), and each way a node can fail to succeed says why, in ``error.type``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from orchestrator import Engine, ModelAPIError, Plan, RunResult
from orchestrator.models.base import ModelRequest
from orchestrator.models.test import FunctionModel, TestModel
from orchestrator.telemetry import Telemetry

pytestmark = pytest.mark.anyio


class Recorder(SpanProcessor):
    """Keeps every span, started and ended."""

    def __init__(self) -> None:
        self.started: list[Span] = []
        self.ended: list[ReadableSpan] = []
        self.at_start: list[tuple[str, dict[str, object]]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span)
        self.at_start.append((span.name, dict(span.attributes or {})))

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)

    def named(self, prefix: str) -> dict[str, ReadableSpan]:
        return {
            str(span.attributes.get("orchestrator.node.id")): span
            for span in self.ended
            if span.name.startswith(prefix) and span.attributes
        }


@pytest.fixture
def recorder(caplog: pytest.LogCaptureFixture) -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    assert len(recorder.ended) == len(recorder.started), "a span was never ended"
    detach_errors = [r for r in caplog.records if "detach" in r.getMessage().lower()]
    assert not detach_errors, "a context was detached out of order or in another task"


def telemetry(recorder: Recorder) -> Telemetry:
    provider = TracerProvider()
    provider.add_span_processor(recorder)
    return Telemetry(provider)


CHAIN = Plan.model_validate(
    {
        "goal": "a chain",
        "tasks": [
            {"id": "first", "instruction": "Say something."},
            {"id": "second", "instruction": "Go on.", "depends_on": ["first"]},
        ],
    }
)


async def test_a_failed_node_and_the_node_it_skips(recorder: Recorder) -> None:
    def broken(request: ModelRequest) -> str:
        raise ModelAPIError("HTTP 529 overloaded_error", error_type="overloaded_error")

    engine = Engine(FunctionModel(broken), telemetry=telemetry(recorder))
    result = await engine.run(CHAIN)
    assert result.status == "failed"
    nodes = recorder.named("node ")
    assert nodes["first"].attributes["error.type"] == "overloaded_error"
    assert nodes["first"].status.status_code is trace.StatusCode.ERROR
    assert nodes["second"].attributes["error.type"] == "skipped"
    assert nodes["second"].attributes["orchestrator.node.reason"] == "dependency 'first' failed"
    attempts = [s for s in recorder.ended if s.name.startswith("attempt ")]
    assert [s.attributes["orchestrator.tier"] for s in attempts] == ["haiku", "sonnet", "opus"]
    assert all(s.attributes["error.type"] == "overloaded_error" for s in attempts)
    [run] = [s for s in recorder.ended if s.name.startswith("invoke_workflow")]
    assert run.attributes["error.type"] == "failed"


async def test_budget_exhausted_nodes_are_recorded_as_not_run(recorder: Recorder) -> None:
    engine = Engine(TestModel("a long enough answer"), telemetry=telemetry(recorder))
    result: RunResult = await engine.run(CHAIN, budget_usd=0.0)
    assert result.status == "budget_exhausted"
    nodes = recorder.named("node ")
    assert {node_id: span.attributes["error.type"] for node_id, span in nodes.items()} == {
        "first": "budget_exhausted",  # its first call could not be paid for
        "second": "skipped",  # never ran: a zero-length span says why
    }
    assert nodes["second"].end_time == nodes["second"].start_time


async def test_a_cancelled_run_ends_every_span(recorder: Recorder) -> None:
    started = anyio.Event()

    async def slow(request: ModelRequest) -> str:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    engine = Engine(FunctionModel(slow), telemetry=telemetry(recorder))
    run = engine.prepare(CHAIN)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def cancel_when_started() -> None:
                await started.wait()
                run.cancel()

            tg.start_soon(cancel_when_started)
            result = await run.execute()
    assert result.status == "cancelled"
    [run_span] = [s for s in recorder.ended if s.name.startswith("invoke_workflow")]
    assert run_span.attributes["error.type"] == "cancelled"
    [attempt] = [s for s in recorder.ended if s.name.startswith("attempt ")]
    assert attempt.attributes["error.type"] == "cancelled"


async def test_sampled_out_runs_record_nothing_below_the_root(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    recorder = Recorder()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(recorder)
    result = await Engine(TestModel(), telemetry=Telemetry(provider)).run(CHAIN)
    assert result.status == "succeeded"
    assert result.trace_id is None
    assert recorder.ended == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failing_tool_is_an_error_span_and_the_attempt_goes_on(recorder: Recorder) -> None:
    from orchestrator.models.anthropic import AnthropicClient
    from orchestrator.tools import tool
    from orchestrator_sim import SimConfig, serve

    @tool(description="Look a term up in the team's notes.")
    def lookup(term: str) -> str:
        raise LookupError(f"no notes about {term!r}")

    plan = Plan.model_validate(
        {
            "goal": "notes",
            "tasks": [
                {
                    "id": "ask",
                    "instruction": "What do our notes say about queues?",
                    "tools": ["lookup"],
                }
            ],
        }
    )
    with anyio.fail_after(30):
        async with (
            serve(SimConfig(time_scale=0)) as server,
            AnthropicClient(base_url=server.base_url, api_key="offline") as client,
        ):
            engine = Engine(client, tools=[lookup], telemetry=telemetry(recorder))
            result = await engine.run(plan)
    assert result.status == "succeeded"  # the model was told, and answered anyway
    [call] = [s for s in recorder.ended if s.name == "execute_tool lookup"]
    assert call.status.status_code is trace.StatusCode.ERROR
    assert call.attributes["error.type"] == "tool_error"
    assert "LookupError" in (call.status.description or "")
    # samplers see what the call is when its span starts
    chats = [attrs for name, attrs in recorder.at_start if name.startswith("chat ")]
    assert chats
    for attrs in chats:
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "anthropic"
        assert attrs["gen_ai.request.model"] == "claude-haiku-5-5"


async def test_scores_reach_the_evaluation_event(recorder: Recorder) -> None:
    from orchestrator import Verdict
    from orchestrator.verify import VerificationContext

    class Scored:
        name = "scored"

        async def verify(self, output: object, context: VerificationContext) -> Verdict:
            return Verdict(passed=True, score=0.75, reason="good enough", verifier=self.name)

    from orchestrator import Workflow

    wf = Workflow("scored")

    @wf.llm(verify=[Scored()])
    def only() -> str:
        return "Say hello."

    await Engine(TestModel(), telemetry=telemetry(recorder)).run(wf)
    [attempt] = [s for s in recorder.ended if s.name.startswith("attempt ")]
    [event] = [e for e in attempt.events if e.name == "gen_ai.evaluation.result"]
    assert event.attributes["gen_ai.evaluation.score.value"] == 0.75
    assert event.attributes["gen_ai.evaluation.score.label"] == "pass"


def test_a_root_opened_for_planning_still_ends_when_no_run_follows(recorder: Recorder) -> None:
    tel = telemetry(recorder)
    with tel.run_trace(), tel.planning("research"):
        pass  # planning produced nothing runnable
    with pytest.raises(RuntimeError), tel.run_trace(), tel.planning("research"):
        raise RuntimeError("planner crashed")
    roots = [s for s in recorder.ended if s.name == "invoke_workflow orchestrator.run"]
    assert [root.attributes["error.type"] for root in roots] == ["not_run", "RuntimeError"]
    plans = [s for s in recorder.ended if s.name == "plan research"]
    assert [p.parent.span_id for p in plans] == [r.context.span_id for r in roots]
    assert plans[1].status.status_code is trace.StatusCode.ERROR
