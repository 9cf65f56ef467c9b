"""An application's TracerProvider receives the spans; no key or prompt text leaks into them.

Spans go to the application's own SDK provider with an in-memory exporter; logs go to a
string. The run retries through injected faults (429/529/500), so error paths, retry events
and error messages are covered too.
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Engine, RunResult, Workflow
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.retry import RetryPolicy
from orchestrator.telemetry import (
    Telemetry,
    configure_logging,
    current_telemetry,
    instrument_anthropic,
    uninstrument_anthropic,
    use_telemetry,
)
from orchestrator.tools import Corpus, corpus_tools
from orchestrator_sim import SimConfig, serve

API_KEY = "sk-ant-api03-NEVER-IN-A-TRACE-5f0c2e"
MARKER = "WOMBAT-PROMPT-4412"
FAST_RETRY = RetryPolicy(
    max_retries=8, base_delay_s=0.001, max_delay_s=0.002, max_retry_after_s=0.002
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream, level=logging.DEBUG)
    yield stream
    configure_logging("json", stream=io.StringIO(), level=logging.WARNING)


@pytest.fixture
def sdk_instrumented() -> Iterator[None]:
    instrument_anthropic()
    yield
    uninstrument_anthropic()


def workflow(tracer: trace.Tracer) -> Workflow:
    wf = Workflow("Explain bounded queues")

    @wf.llm(tools=["search_corpus"])
    def research() -> str:
        return f"{MARKER}: what do the notes say about bounded queues? Search them."

    @wf.task
    def words(research: str) -> int:
        # A plain Python task runs in a worker thread: spans made there are children of its
        # attempt because anyio.to_thread carries the context.
        with tracer.start_as_current_span("app work in a thread"):
            return len(research.split())

    @wf.llm()
    def summary(research: str, words: int) -> str:
        return f"{MARKER}: summarise in {words // 4 + 1} words:\n{research}"

    return wf


async def run(
    telemetry: Telemetry | None, fault_rate: float = 0.0, *, stream: bool = False
) -> RunResult:
    corpus = Corpus.from_texts({"queues.md": "A bounded queue makes producers wait."})
    with anyio.fail_after(60):
        async with (
            serve(SimConfig(time_scale=0, fault_rate=fault_rate, seed=7)) as server,
            AnthropicClient(
                base_url=server.base_url, api_key=API_KEY, retry=FAST_RETRY, stream=stream
            ) as client,
        ):
            engine = Engine(client, tools=corpus_tools(corpus), telemetry=telemetry)
            tracer = (telemetry or current_telemetry()).tracer
            return await engine.run(workflow(tracer))


def strings(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """Every text a backend would show: names, attributes, events, links, statuses."""
    found: list[str] = []

    def add(attributes: Any) -> None:
        for key, value in (attributes or {}).items():
            found.append(key)
            found.extend(str(v) for v in value) if isinstance(value, tuple) else found.append(
                str(value)
            )

    for span in spans:
        found.append(span.name)
        add(span.attributes)
        found.append(span.status.description or "")
        for event in span.events:
            found.append(event.name)
            add(event.attributes)
        for link in span.links:
            add(link.attributes)
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_spans_go_to_the_application_provider(
    provider: TracerProvider, exporter: InMemorySpanExporter, sdk_instrumented: None, stream: bool
) -> None:
    result = anyio.run(functools.partial(run, Telemetry(provider), stream=stream))
    spans = exporter.get_finished_spans()
    names = [span.name for span in spans]
    assert "invoke_workflow orchestrator.run" in names
    assert sum(name.startswith("chat ") for name in names) == sum(
        a.calls for node in result.nodes for a in node.attempts
    )
    assert any(name.startswith("execute_tool ") for name in names)
    for chat in (span for span in spans if span.name.startswith("chat ")):
        assert chat.attributes["gen_ai.response.id"].startswith("msg_")
        assert chat.attributes["gen_ai.response.finish_reasons"]
        assert chat.parent is not None
    assert result.trace_id == format(spans[0].context.trace_id, "032x")
    # the application's own span from a worker thread sits under the Python task's attempt
    thread_span = next(span for span in spans if span.name == "app work in a thread")
    parent = next(s for s in spans if s.context.span_id == thread_span.parent.span_id)
    assert parent.name == "attempt python"
    assert parent.attributes["orchestrator.node.id"] == "words"


def test_use_telemetry_reaches_engines_built_without_one(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def main() -> RunResult:
        with use_telemetry(Telemetry(provider)):
            return await run(None)

    result = anyio.run(main)
    assert result.trace_id is not None
    assert {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()} == {
        result.trace_id
    }


def test_no_key_and_no_prompt_text_in_spans_or_logs(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    log_stream: io.StringIO,
    sdk_instrumented: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    result = anyio.run(run, Telemetry(provider), 0.4)
    spans = exporter.get_finished_spans()

    # the faults happened and are visible: a retry event, with its error type, on the
    # chat span of the turn that was retried
    retried = [s for s in spans if any(e.name == "orchestrator.retry" for e in s.events)]
    assert retried, "expected injected faults to be retried"
    for span in retried:
        assert span.name.startswith("chat ")
        event = next(e for e in span.events if e.name == "orchestrator.retry")
        assert event.attributes["error.type"] in {
            "rate_limit_error",
            "overloaded_error",
            "api_error",
            "connection_error",
            "timeout",
        }
    assert result.status == "succeeded"

    texts = strings(spans)
    logs = log_stream.getvalue()
    assert logs.strip()
    assert all(json.loads(line)["run_id"] == result.run_id for line in logs.splitlines())
    assert not [text for text in texts if API_KEY in text]
    assert API_KEY not in logs
    assert not [text for text in texts if MARKER in text]
    assert MARKER not in logs


def test_content_capture_records_prompts_but_never_the_key(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The switch is read when the handlers are built: before instrumenting, as at start-up.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    instrument_anthropic()
    try:
        anyio.run(run, Telemetry(provider))
    finally:
        uninstrument_anthropic()
    texts = strings(exporter.get_finished_spans())
    assert [text for text in texts if MARKER in text]  # the opt-in works...
    assert not [text for text in texts if API_KEY in text]  # ...and still no key
