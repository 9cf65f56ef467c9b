"""Traces and metrics of a real offline run, exported over OTLP/HTTP to a loopback receiver.

The receiver is a plain HTTP server in the test that keeps every ``POST /v1/traces`` and
``/v1/metrics`` body; the bodies are decoded with ``opentelemetry-proto``. The run goes
through the real Anthropic SDK to the local simulator, with tools, a Python task, a
verifier that rejects the cheapest tier's answer (so one node escalates), and tracing
configured only by ``OTEL_*`` variables, as the CLI does.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from orchestrator import Engine, RunResult, Verdict, Workflow
from orchestrator.cli import main
from orchestrator.cli.otel import session
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.tools import Corpus, corpus_tools
from orchestrator.verify import VerificationContext
from orchestrator_sim import SimConfig, serve

PROMPT_MARKER = "QUOKKA-PROMPT-7731"

# -- a loopback OTLP/HTTP receiver --------------------------------------------------------


class Receiver:
    """Keeps the bodies of OTLP/HTTP exports, by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Span]:
        found = []
        for path, body in self.bodies:
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(Span.from_proto(span, resource, scope_spans.scope.name))
        return found

    def metric_names(self) -> set[str]:
        names = set()
        for path, body in self.bodies:
            if path != "/v1/metrics":
                continue
            request = ExportMetricsServiceRequest()
            request.ParseFromString(body)
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    names.update(metric.name for metric in scope_metrics.metrics)
        return names


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, dict[str, Any]]]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]
    scope: str

    @classmethod
    def from_proto(cls, span: Any, resource: dict[str, Any], scope: str) -> Span:
        return cls(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_id=span.parent_span_id.hex(),
            attributes=_attributes(span.attributes),
            events=[(e.name, _attributes(e.attributes)) for e in span.events],
            links=[(link.span_id.hex(), _attributes(link.attributes)) for link in span.links],
            status_code=span.status.code,
            resource=resource,
            scope=scope,
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(
        target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def otel_env(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """Only the standard variables: where to send, and the service's name."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "research-test")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # one export, at shutdown
    return receiver


# -- the run ------------------------------------------------------------------------------


class RejectsTier:
    """A verifier that rejects answers written on one tier (so that node escalates)."""

    name = "needs_stronger_tier"

    def __init__(self, tier: str) -> None:
        self.tier = tier

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        if context.tier == self.tier:
            return Verdict(passed=False, reason="the answer cites no passage", verifier=self.name)
        return Verdict(passed=True, reason="cites the corpus", verifier=self.name)


def research_workflow() -> Workflow:
    wf = Workflow("How do queues give backpressure?")

    @wf.llm(tools=["search_corpus", "read_passage"], verify=[RejectsTier("haiku")])
    def research() -> str:
        return f"{PROMPT_MARKER} What do the notes say about queues? Use the tools."

    @wf.llm()
    def glossary() -> str:
        return f"{PROMPT_MARKER} Define backpressure in one sentence."

    @wf.task
    def outline(research: str) -> list[str]:
        return [part.strip() for part in research.split(".") if part.strip()][:3]

    @wf.llm()
    def summary(research: str, glossary: str, outline: list[str]) -> str:
        return f"{PROMPT_MARKER} Summarise for a newcomer:\n{research}\n{glossary}\n{outline}"

    return wf


CORPUS = {
    "queues.md": "Queues decouple producers and consumers. A bounded queue gives backpressure: "
    "when it is full, producers wait.",
    "flow.md": "Backpressure slows a fast producer down to the pace of its consumer.",
}


# Long enough (over the simulator's 1,024-token minimum) to be cached: the tool loop's later
# calls read it from the cache, so cache token counts show up in the spans.
SYSTEM_PROMPT = "You carry out one task of a larger plan; cite the notes you use. " * 160


async def run_research(api_key: str = "offline", **sim: Any) -> RunResult:
    corpus = Corpus.from_texts(CORPUS)
    with anyio.fail_after(60):
        async with (
            serve(SimConfig(time_scale=0, **sim)) as server,
            AnthropicClient(base_url=server.base_url, api_key=api_key) as client,
        ):
            engine = Engine(client, tools=corpus_tools(corpus))
            return await engine.run(research_workflow(), system_prompt=SYSTEM_PROMPT)


def cli_args(**overrides: Any) -> argparse.Namespace:
    values = {"trace": None, "log_format": "json", "log_level": "info", **overrides}
    return argparse.Namespace(**values)


def traced_run(**overrides: Any) -> RunResult:
    """A run inside the CLI's telemetry session (SDK and exporters from OTEL_*)."""
    with session(cli_args(**overrides)):
        return anyio.run(run_research)


# -- the tree -----------------------------------------------------------------------------


def test_an_offline_run_exports_one_trace_with_the_whole_tree(otel_env: Receiver) -> None:
    result = traced_run()
    assert result.status == "succeeded"
    spans = otel_env.spans()
    # one trace, and it is the run's
    assert result.trace_id is not None
    assert len(result.trace_id) == 32
    assert {span.trace_id for span in spans} == {result.trace_id}
    assert all(span.resource["service.name"] == "research-test" for span in spans)

    # the run is the root
    roots = [span for span in spans if not span.parent_id]
    assert [root.name for root in roots] == ["invoke_workflow orchestrator.run"]
    root = roots[0]
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["orchestrator.run.id"] == result.run_id
    assert root.attributes["orchestrator.run.status"] == "succeeded"
    assert root.attributes["orchestrator.cost_usd"] == pytest.approx(float(result.cost_usd))
    assert root.attributes["orchestrator.wasted_cost_usd"] == pytest.approx(
        float(result.wasted_cost_usd)
    )
    assert root.attributes["orchestrator.simulated"] is True

    # every node, under the run, linked to what it depends on
    nodes = {
        span.attributes["orchestrator.node.id"]: span
        for span in spans
        if span.name.startswith("node ")
    }
    assert set(nodes) == {node.id for node in result.nodes}
    for node in result.nodes:
        span = nodes[node.id]
        assert span.parent_id == root.span_id
        assert span.attributes["orchestrator.node.status"] == "succeeded"
        assert span.attributes["orchestrator.node.final_tier"] == node.final_tier
        assert {link for link, _ in span.links} == {nodes[dep].span_id for dep in node.depends_on}

    # every attempt, under its node; the escalated one links to the one it escalates from
    attempts = [span for span in spans if span.name.startswith("attempt ")]
    assert len(attempts) == sum(len(node.attempts) for node in result.nodes)
    research = result.node("research")
    assert [a.tier for a in research.attempts] == ["haiku", "sonnet"]
    first, second = sorted(
        (span for span in attempts if span.parent_id == nodes["research"].span_id),
        key=lambda span: span.attributes["orchestrator.attempt.number"],
    )
    assert first.status_code == 2  # rejected: error status
    assert first.attributes["error.type"] == "verification_failed"
    verdicts = [attrs for name, attrs in first.events if name == "gen_ai.evaluation.result"]
    assert verdicts == [
        {
            "gen_ai.evaluation.name": "needs_stronger_tier",
            "gen_ai.evaluation.score.label": "fail",
            "gen_ai.evaluation.explanation": "the answer cites no passage",
            "orchestrator.verdict.passed": False,
        }
    ]
    assert second.status_code != 2
    assert second.attributes["orchestrator.attempt.escalated_from"] == 1
    assert [link for link, _ in second.links] == [first.span_id]
    assert nodes["outline"].attributes["orchestrator.node.final_tier"] == "python"

    # model calls under their attempt, with the GenAI attributes and the run's token counts
    chats = [span for span in spans if span.name.startswith("chat ")]
    for node in result.nodes:
        node_attempts = [s for s in attempts if s.parent_id == nodes[node.id].span_id]
        for attempt in node.attempts:
            span = next(
                s
                for s in node_attempts
                if s.attributes["orchestrator.attempt.number"] == attempt.number
            )
            calls = [chat for chat in chats if chat.parent_id == span.span_id]
            assert len(calls) == attempt.calls
            prompt = attempt.input_tokens + attempt.cache_read_tokens + attempt.cache_write_tokens
            assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == prompt
            assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == (
                attempt.output_tokens
            )
            assert span.attributes["orchestrator.cost_usd"] == pytest.approx(
                float(attempt.cost_usd)
            )
            for chat in calls:
                assert chat.name == f"chat {attempt.model}"
                assert chat.attributes["gen_ai.operation.name"] == "chat"
                assert chat.attributes["gen_ai.provider.name"] == "anthropic"
                assert chat.attributes["gen_ai.request.model"] == attempt.model
                assert chat.attributes["gen_ai.response.model"] == attempt.model
                assert chat.attributes["gen_ai.response.id"].startswith("msg_")
                assert chat.attributes[
                    "gen_ai.response.finish_reasons"
                ]  # from the SDK instrumentation
                assert chat.attributes["orchestrator.tier"] == attempt.tier
                assert chat.attributes["orchestrator.simulated"] is True
    assert len(chats) == sum(a.calls for node in result.nodes for a in node.attempts)
    cached = [c for c in chats if c.attributes.get("gen_ai.usage.cache_read.input_tokens")]
    assert cached, "the tool loop's later calls read the system prompt from the cache"
    for chat in cached:  # input_tokens is the whole prompt, cached part included
        assert (
            chat.attributes["gen_ai.usage.input_tokens"]
            > (chat.attributes["gen_ai.usage.cache_read.input_tokens"])
        )

    # tool calls under the attempt that made them
    tools = [span for span in spans if span.name.startswith("execute_tool ")]
    assert tools
    research_attempts = {first.span_id, second.span_id}
    for tool in tools:
        assert tool.parent_id in research_attempts
        assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool.attributes["gen_ai.tool.name"] in {"search_corpus", "read_passage"}
        assert tool.attributes["gen_ai.tool.call.id"].startswith("toolu_")

    # metrics beside the traces: the conventions' instruments and our cost per tier
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= (
        otel_env.metric_names()
    )
    assert "orchestrator.cost" in otel_env.metric_names()


def test_log_lines_carry_run_node_tier_and_the_trace(
    otel_env: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    result = traced_run()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    spans = {span.span_id: span for span in otel_env.spans()}
    finished = [line for line in lines if line["event"] == "attempt finished"]
    assert len(finished) == sum(len(node.attempts) for node in result.nodes)
    for line in finished:
        assert line["run_id"] == result.run_id
        assert line["trace_id"] == result.trace_id
        span = spans[line["span_id"]]  # the attempt's own span
        assert span.name == f"attempt {line['tier']}"
        assert span.attributes["orchestrator.node.id"] == line["node_id"]
    assert any(line["event"] == "run finished" and line["status"] == "succeeded" for line in lines)


def test_cli_run_json_carries_the_exported_trace_id(
    otel_env: Receiver, two_task_plan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = two_task_plan
    code = main(["run", "--plan", str(plan), "--offline", "--json", "--log-level", "error"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    spans = otel_env.spans()
    assert document["trace_id"] == spans[0].trace_id
    assert {span.trace_id for span in spans} == {document["trace_id"]}
    assert {
        s.attributes.get("orchestrator.node.id") for s in spans if s.name.startswith("node ")
    } == {
        "define",
        "use",
    }


# -- tracing off --------------------------------------------------------------------------


def test_trace_off_exports_nothing_even_with_an_endpoint(otel_env: Receiver) -> None:
    result = traced_run(trace="off")
    assert result.status == "succeeded"
    assert result.trace_id is None
    assert otel_env.bodies == []


def test_without_an_sdk_the_library_records_nothing(receiver: Receiver) -> None:
    # No SDK anywhere: the global API provider is the no-op one.
    result = anyio.run(run_research)
    assert result.status == "succeeded"
    assert result.trace_id is None
    assert receiver.bodies == []


def test_cli_research_run_is_one_trace_with_planning_under_the_run(
    otel_env: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in CORPUS.items():
        (corpus / name).write_text(text)
    goal = "How do bounded queues give backpressure?"
    code = main(["run", goal, "--offline", "--json", "--corpus", str(corpus)])
    document = json.loads(capsys.readouterr().out)
    assert code == (0 if document["status"] == "succeeded" else 1)
    spans = otel_env.spans()
    assert {span.trace_id for span in spans} == {document["trace_id"]}
    [root] = [span for span in spans if not span.parent_id]
    assert root.name == "invoke_workflow orchestrator.run"
    assert root.attributes["orchestrator.run.id"] == document["run_id"]
    [planning] = [span for span in spans if span.name == "plan research"]
    assert planning.parent_id == root.span_id
    assert planning.attributes["gen_ai.operation.name"] == "plan"
    planner_calls = [span for span in spans if span.parent_id == planning.span_id]
    assert planner_calls
    assert all(span.attributes["orchestrator.call.purpose"] == "plan" for span in planner_calls)
    nodes = [span for span in spans if span.name.startswith("node ")]
    assert {span.attributes["orchestrator.node.id"] for span in nodes} == {
        node["id"] for node in document["nodes"]
    }
    assert all(span.parent_id == root.span_id for span in nodes)
    assert any(span.name.startswith("execute_tool ") for span in spans)
