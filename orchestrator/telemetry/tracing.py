"""Spans and metrics for runs, nodes, attempts, model calls and tool calls.

:class:`Telemetry` holds a tracer and a GenAI :class:`TelemetryHandler` (from
``opentelemetry-util-genai``) over the application's providers, or the global ones. The
engine subscribes :meth:`Telemetry.run_listener` first to every run's events; the listener
opens each span *in the task that does the work* (events are delivered synchronously inside
that task), attaches it as the current context and detaches it when the matching event
ends it. Whatever runs in between, the SDK's HTTP calls, tools, worker threads started with
``anyio.to_thread``, lands under the right parent.

The tree of one run (one trace)::

    invoke_workflow orchestrator.run          run id, goal, status, cost, wasted cost
    └─ node {task}                            needs, final tier, status, cost; links to deps
       └─ attempt {tier}                      number, model, cost, tokens; verdict event;
          │                                   link to the attempt it escalates from
          ├─ chat {model}                     GenAI inference span (one per HTTP call)
          └─ execute_tool {tool}              GenAI tool span

Without an SDK configured the API's tracer is a no-op: nothing is recorded or exported.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TracerProvider
from opentelemetry.util.genai.handler import TelemetryHandler
from opentelemetry.util.genai.invocation import CLIENT_INFERENCE_CONTEXT_KEY
from opentelemetry.util.genai.types import Error
from structlog.contextvars import bind_contextvars, reset_contextvars

from orchestrator.events import (
    AttemptFinished,
    AttemptStarted,
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import RetryEvent
from orchestrator.pricing import Usage
from orchestrator.results import Attempt, NodeResult, NodeStatus, RunResult, RunStatus
from orchestrator.telemetry import _semconv as sc
from orchestrator.telemetry._semconv import NS
from orchestrator.telemetry.logs import ROOT_LOGGER, get_logger

__all__ = [
    "ModelCallSpan",
    "RunTelemetry",
    "RunTrace",
    "Telemetry",
    "ToolCallSpan",
    "current_telemetry",
    "current_trace_id",
    "default_telemetry",
    "use_telemetry",
]

SCOPE = "orchestrator"
WORKFLOW_NAME = "orchestrator.run"
_TEXT_LIMIT = 500  # our own free-text attributes (reasons, errors) stay short

try:
    _VERSION = metadata.version("tiered-orchestrator")
except metadata.PackageNotFoundError:  # pragma: no cover  (running from a bare checkout)
    _VERSION = "0"

_log = get_logger("orchestrator.run")
_logging = logging.getLogger(ROOT_LOGGER).isEnabledFor  # checked before building a line
_active: ContextVar[Telemetry | None] = ContextVar("orchestrator_telemetry", default=None)
_default: list[Telemetry] = []
_pending_root: ContextVar[RunTrace | None] = ContextVar("orchestrator_run_root", default=None)


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex characters.

    ``None`` when nothing is traced: no span, or one the sampler dropped (no backend will
    ever hold that trace).
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid and span_context.trace_flags.sampled:
        return format(span_context.trace_id, "032x")
    return None


class Telemetry:
    """Where the library's spans and metrics go.

    Args:
        tracer_provider: The application's provider; ``None`` uses the global one (a no-op
            until an SDK is installed, so tracing costs nothing when off).
        meter_provider: Likewise for metrics: the conventions' ``gen_ai.client.*``
            instruments and our ``orchestrator.cost`` counter.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.tracer = trace.get_tracer(SCOPE, _VERSION, tracer_provider)
        self.handler = TelemetryHandler(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            instrumentation_scope_name=SCOPE,
            instrumentation_scope_version=_VERSION,
        )
        meter = metrics.get_meter(SCOPE, _VERSION, meter_provider)
        self.cost = meter.create_counter(
            "orchestrator.cost", unit="USD", description="Spend on model calls, by tier"
        )
        self.attempts = meter.create_counter(
            "orchestrator.attempts", unit="{attempt}", description="Attempts, by tier and outcome"
        )

    def wants_events(self) -> bool:
        """Whether a run's events can produce anything here: spans, metrics or log lines.

        False when no OpenTelemetry SDK is installed (the API's no-op or proxy providers)
        and the ``orchestrator`` loggers are below INFO: the engine then does not subscribe
        the run listener at all, so telemetry that is off costs nothing per node.
        """
        tracer_provider = self._tracer_provider or trace.get_tracer_provider()
        if not isinstance(tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return True
        meter_provider = self._meter_provider or metrics.get_meter_provider()
        if not isinstance(meter_provider, metrics.NoOpMeterProvider) and (
            type(meter_provider).__name__ != "_ProxyMeterProvider"
        ):
            return True
        return logging.getLogger(f"{ROOT_LOGGER}.run").isEnabledFor(logging.INFO)

    def run_trace(self) -> RunTrace:
        """Open the run's root span now, before the run exists (for planning).

        Use as ``with`` or ``async with`` around planning and the run: the planning span
        and its model calls land in the same trace as the run, whose root this span
        becomes when the run starts inside the block.
        """
        return RunTrace(self)

    @contextlib.contextmanager
    def planning(self, agent_name: str) -> Iterator[Span]:
        """A ``plan {agent_name}`` span (the conventions' planning operation), current inside.

        Errors end it with error status and the exception recorded.
        """
        attributes = {sc.OPERATION_NAME: sc.OPERATION_PLAN, sc.AGENT_NAME: agent_name}
        with self.tracer.start_as_current_span(
            f"{sc.OPERATION_PLAN} {agent_name}", attributes=attributes
        ) as span:
            yield span

    def run_listener(self) -> RunTelemetry:
        """A fresh event listener for one run (the engine subscribes it first)."""
        return RunTelemetry(self)

    def model_call(
        self, *, tier: str, model: str, purpose: str, task_id: str | None, max_tokens: int
    ) -> ModelCallSpan:
        """Start a ``chat {model}`` span for one HTTP call and make it current.

        Operation, provider and model are set at start (samplers see them). The official
        Anthropic instrumentation, when installed (:func:`instrument_anthropic`), finds this
        span in the context and adds what it reads from the SDK call into it instead of
        opening a second span.
        """
        invocation = self.handler.inference(sc.PROVIDER_ANTHROPIC, request_model=model)
        invocation.max_tokens = max_tokens
        invocation.attributes.update({NS.TIER: tier, NS.PURPOSE: purpose})
        if task_id is not None:
            invocation.attributes[NS.TASK_ID] = task_id
        invocation.metric_attributes[NS.TIER] = tier
        if invocation.should_capture_content:
            # Content capture is on: let the SDK instrumentation hand the messages it read
            # to this span (by default the util keeps inner content out of outer spans).
            shared: Any = otel_context.get_value(CLIENT_INFERENCE_CONTEXT_KEY, invocation.context)
            if shared is not None:
                shared.capture_content = True
        return ModelCallSpan(invocation)

    @contextlib.contextmanager
    def tool_call(self, name: str, call_id: str, arguments: Any) -> Iterator[ToolCallSpan]:
        """An ``execute_tool {name}`` span around one tool call, current inside the block.

        Arguments and results are recorded only with content capture on.
        """
        invocation = self.handler.tool(name, tool_type="function")
        invocation.tool_call_id = call_id
        if invocation.should_capture_content:
            invocation.arguments = arguments
        call = ToolCallSpan(invocation)
        try:
            yield call
        except BaseException as exc:
            invocation.fail(Error(message=None, type=type(exc).__name__))
            raise
        if call.error is not None:
            invocation.fail(Error(message=_short(call.error), type="tool_error"))
        else:
            invocation.stop()


class ToolCallSpan:
    """What a tool call returned, for its span."""

    __slots__ = ("_invocation", "error")

    def __init__(self, invocation: Any) -> None:
        self._invocation = invocation
        self.error: str | None = None

    def result(self, content: str, *, is_error: bool) -> None:
        """Record the tool's answer; an error marks the span failed (the model sees it)."""
        if is_error:
            self.error = content
        if self._invocation.should_capture_content:
            self._invocation.tool_result = content


def default_telemetry() -> Telemetry:
    """The :class:`Telemetry` over the global providers (created once, on first use)."""
    if not _default:
        _default.append(Telemetry())
    return _default[0]


@contextlib.contextmanager
def use_telemetry(telemetry: Telemetry) -> Iterator[Telemetry]:
    """Use ``telemetry`` for runs prepared and model calls made inside the block.

    Engines built without an explicit ``telemetry`` pick it up, so an application (or the
    CLI) sets it once around everything it runs.
    """
    token = _active.set(telemetry)
    try:
        yield telemetry
    finally:
        _active.reset(token)


def current_telemetry() -> Telemetry:
    """The telemetry of the run this code runs in, else :func:`default_telemetry`."""
    return _active.get() or default_telemetry()


class RunTrace:
    """The root span of a run opened ahead of it; see :meth:`Telemetry.run_trace`."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry
        self.invocation: Any = None
        self.adopted = False
        self.ended = False
        self._token: Token[RunTrace | None] | None = None

    def __enter__(self) -> RunTrace:
        self.invocation = self._t.handler.workflow(WORKFLOW_NAME)
        self._token = _pending_root.set(self)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._token is not None:
            _pending_root.reset(self._token)
        if self.ended or self.invocation is None:
            return
        self.ended = True
        if exc is not None:
            self.invocation.fail(exc)
        else:  # planning failed or nothing was run: the trace still says so
            self.invocation.fail(Error(message="no run was started", type="not_run"))

    async def __aenter__(self) -> RunTrace:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)


class ModelCallSpan:
    """One model call's span, ended by exactly one of :meth:`succeeded` or :meth:`failed`."""

    __slots__ = ("_invocation", "_open")

    def __init__(self, invocation: Any) -> None:
        self._invocation = invocation
        self._open = True

    def succeeded(
        self, *, response_id: str, response_model: str, usage: Usage, simulated: bool
    ) -> None:
        """Record the response and end the span.

        ``gen_ai.usage.input_tokens`` is the whole prompt: Anthropic's ``input_tokens``
        (uncached) plus cache-read plus cache-creation tokens; the cache counts also go in
        their own attributes.
        """
        invocation = self._invocation
        invocation.response_id = response_id
        invocation.response_model_name = response_model
        invocation.input_tokens = usage.prompt_tokens
        invocation.output_tokens = usage.output_tokens
        invocation.cache_read_input_tokens = usage.cache_read_tokens
        invocation.cache_write_input_tokens = usage.cache_write_tokens
        invocation.attributes[NS.SIMULATED] = simulated
        self._end(None)

    def retried(self, event: RetryEvent) -> None:
        """Record a transient failure the client retried, at the time it happened."""
        span: Span = self._invocation.span
        at = event.at_ns or None
        span.add_event(
            "exception",
            {"exception.type": event.error_type, "exception.message": _short(event.message)},
            timestamp=at,
        )
        span.add_event(
            NS.RETRY_EVENT,
            {
                NS.RETRY_NUMBER: event.retry,
                NS.RETRY_DELAY: event.delay_s,
                sc.ERROR_TYPE: event.error_type,
            },
            timestamp=at,
        )
        if event.status_code is not None:
            self._invocation.attributes[NS.HTTP_STATUS] = event.status_code
        _log.warning(
            "model call failed; retrying",
            error_type=event.error_type,
            retry=event.retry,
            delay_s=event.delay_s,
            http_status=event.status_code,
        )

    def failed(
        self,
        error_type: str,
        message: str,
        *,
        status_code: int | None = None,
        retry: int | None = None,
        delay_s: float | None = None,
    ) -> None:
        """Record a failure (already free of secrets) and end the span.

        With ``retry``, a ``orchestrator.retry`` event says the call will be tried again
        after ``delay_s`` seconds.
        """
        if not self._open:
            return
        span: Span = self._invocation.span
        attributes: dict[str, Any] = {
            "exception.type": error_type,
            "exception.message": _short(message),
        }
        span.add_event("exception", attributes)
        if retry is not None:
            _log.warning(
                "model call failed; retrying",
                error_type=error_type,
                retry=retry,
                delay_s=delay_s,
                http_status=status_code,
            )
        if status_code is not None:
            self._invocation.attributes[NS.HTTP_STATUS] = status_code
        if retry is not None:
            span.add_event(
                NS.RETRY_EVENT,
                {NS.RETRY_NUMBER: retry, NS.RETRY_DELAY: delay_s or 0.0, sc.ERROR_TYPE: error_type},
            )
        self._end(Error(message=_short(message), type=error_type))

    def _end(self, error: Error | None) -> None:
        if not self._open:
            return
        self._open = False
        if error is None:
            self._invocation.stop()
        else:
            self._invocation.fail(error)


# -- the per-run listener -------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """A span we started and attached, with the tokens to undo it."""

    span: Span | None  # None when the run is not recorded (no SDK, or sampled out)
    token: object
    log_tokens: Mapping[str, Token[Any]] = field(default_factory=dict)

    def close(self) -> None:
        """Detach the span's context and unbind the log fields (in the opening task)."""
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]
        reset_contextvars(**self.log_tokens)


class RunTelemetry:
    """Turns one run's events into spans, span events, metrics and log lines."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry
        self._run: Any = None
        self._run_tokens: Mapping[str, Token[Any]] = {}
        self._active_token: Token[Telemetry | None] | None = None
        self._depends_on: dict[str, list[str]] = {}
        self._nodes: dict[str, _Open] = {}
        self._node_contexts: dict[str, SpanContext] = {}
        self._attempts: dict[tuple[str, int], _Open] = {}
        self._attempt_contexts: dict[tuple[str, int], SpanContext] = {}
        self._recording = False

    def __call__(self, event: Event) -> None:
        """Handle one engine event."""
        match event:
            case RunStarted():
                self._run_started(event)
            case NodeStarted():
                self._node_started(event.node_id)
            case AttemptStarted():
                self._attempt_started(event.node_id, event.attempt)
            case AttemptFinished():
                self._attempt_finished(event.node_id, event.attempt)
            case NodeFinished():
                self._node_finished(event.result)
            case RunFinished():
                self._run_finished(event.result)

    # -- run --------------------------------------------------------------------------------

    def _run_started(self, event: RunStarted) -> None:
        plan = event.plan
        self._depends_on = {task.id: list(task.depends_on) for task in plan.tasks}
        pending = _pending_root.get()
        if pending is not None and pending.invocation is not None and not pending.adopted:
            pending.adopted = True  # planning already happened under this root: one trace
            self._run = pending.invocation
        else:
            self._run = self._t.handler.workflow(WORKFLOW_NAME)
        self._run.span.set_attributes(
            {NS.RUN_ID: event.run_id, NS.RUN_GOAL: _short(plan.goal), NS.RUN_TASKS: len(plan.tasks)}
        )
        # Not recorded (no SDK installed, or the sampler dropped the run): node and attempt
        # spans are skipped, so tracing that is off costs next to nothing.
        self._recording = self._run.span.is_recording()
        self._active_token = _active.set(self._t)
        self._run_tokens = bind_contextvars(run_id=event.run_id)
        _log.info("run started", goal=_short(plan.goal), tasks=len(plan.tasks))

    def _run_finished(self, result: RunResult) -> None:
        for node in result.nodes:
            if node.id not in self._node_contexts and node.status in (
                NodeStatus.SKIPPED,
                NodeStatus.NOT_RUN,
            ):
                self._unrun_node(node)
        _log.info(
            "run finished",
            status=str(result.status),
            cost_usd=float(result.cost_usd),
            wasted_cost_usd=float(result.wasted_cost_usd),
            wall_s=result.wall_s,
            simulated=result.simulated,
        )
        reset_contextvars(**self._run_tokens)
        if self._active_token is not None:
            _active.reset(self._active_token)
        run = self._run
        if run is None:
            return
        pending = _pending_root.get()
        if pending is not None and pending.invocation is run:
            pending.ended = True
        run.attributes.update(
            {
                NS.RUN_STATUS: str(result.status),
                NS.COST: float(result.cost_usd),
                NS.WASTED_COST: float(result.wasted_cost_usd),
                NS.SIMULATED: result.simulated,
            }
        )
        if result.status is RunStatus.SUCCEEDED:
            run.stop()
        else:
            run.fail(Error(message=f"run {result.status}", type=str(result.status)))

    # -- nodes ------------------------------------------------------------------------------

    def _node_attributes(self, node_id: str) -> dict[str, Any]:
        return {NS.NODE_ID: node_id, NS.NODE_DEPENDS_ON: self._depends_on.get(node_id, [])}

    def _open(self, name: str, attributes: dict[str, Any], links: list[Link]) -> tuple[Any, Any]:
        if not self._recording:
            return None, None
        span = self._t.tracer.start_span(name, attributes=attributes, links=links)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def _node_started(self, node_id: str) -> None:
        links = [
            Link(self._node_contexts[dep])
            for dep in self._depends_on.get(node_id, [])
            if dep in self._node_contexts
        ]
        span, token = self._open(f"node {node_id}", self._node_attributes(node_id), links)
        if span is not None:
            self._node_contexts[node_id] = span.get_span_context()
        self._nodes[node_id] = _Open(span, token, bind_contextvars(node_id=node_id))
        if _logging(logging.INFO):
            _log.info("node started")

    def _node_finished(self, result: NodeResult) -> None:
        opened = self._nodes.pop(result.id, None)
        if opened is None:
            return
        if _logging(logging.INFO):
            _log.info(
                "node finished",
                status=str(result.status),
                final_tier=result.final_tier,
                cost_usd=float(result.cost_usd),
                reason=_short(result.reason) if result.reason else None,
            )
        if opened.span is not None:
            _finish_node_span(opened.span, result)
        opened.close()

    def _unrun_node(self, result: NodeResult) -> None:
        """A zero-length span for a node that never ran (skipped, budget, cancelled)."""
        if not self._recording:
            return
        now = time.time_ns()
        span = self._t.tracer.start_span(
            f"node {result.id}", attributes=self._node_attributes(result.id), start_time=now
        )
        _finish_node_span(span, result, end_time=now)

    # -- attempts ---------------------------------------------------------------------------

    def _attempt_started(self, node_id: str, attempt: Attempt) -> None:
        key = (node_id, attempt.number)
        links = []
        if attempt.escalated_from is not None:
            previous = self._attempt_contexts.get((node_id, attempt.escalated_from))
            if previous is not None:
                links.append(Link(previous, {"orchestrator.link": "escalated_from"}))
        attributes: dict[str, Any] = {
            NS.NODE_ID: node_id,
            NS.TIER: attempt.tier,
            NS.ATTEMPT_NUMBER: attempt.number,
            NS.ATTEMPT_ROUTE_REASON: _short(attempt.route_reason),
        }
        if attempt.model is not None:
            attributes[NS.MODEL] = attempt.model
        if attempt.escalated_from is not None:
            attributes[NS.ATTEMPT_ESCALATED_FROM] = attempt.escalated_from
        span, token = self._open(f"attempt {attempt.tier}", attributes, links)
        if span is not None:
            self._attempt_contexts[key] = span.get_span_context()
        log_tokens = bind_contextvars(tier=attempt.tier, attempt=attempt.number)
        self._attempts[key] = _Open(span, token, log_tokens)
        if _logging(logging.INFO):
            _log.info("attempt started", model=attempt.model, escalated_from=attempt.escalated_from)

    def _attempt_finished(self, node_id: str, attempt: Attempt) -> None:
        opened = self._attempts.pop((node_id, attempt.number), None)
        outcome = "passed" if attempt.passed else "failed"
        self._t.cost.add(float(attempt.cost_usd), {NS.TIER: attempt.tier})
        self._t.attempts.add(1, {NS.TIER: attempt.tier, "orchestrator.outcome": outcome})
        if opened is None:  # cancelled before it started: nothing was opened
            return
        if _logging(logging.INFO):
            _log.info(
                "attempt finished",
                passed=attempt.passed,
                verdict=_short(attempt.verdict.reason) if attempt.verdict else None,
                error_type=attempt.error_type,
                cost_usd=float(attempt.cost_usd),
                simulated=attempt.simulated,
            )
        if opened.span is not None:
            _finish_attempt_span(opened.span, attempt)
        opened.close()


def _finish_node_span(span: Span, result: NodeResult, end_time: int | None = None) -> None:
    attributes: dict[str, Any] = {
        NS.NODE_STATUS: str(result.status),
        NS.COST: float(result.cost_usd),
        NS.WASTED_COST: float(result.wasted_cost_usd),
        "orchestrator.node.attempts": len(result.attempts),
    }
    for name, level in result.needs.levels().items():
        attributes[NS.NEEDS_PREFIX + name] = level
    if result.final_tier is not None:
        attributes[NS.NODE_FINAL_TIER] = result.final_tier
    if result.reason:
        attributes[NS.NODE_REASON] = _short(result.reason)
    span.set_attributes(attributes)
    if result.status is not NodeStatus.SUCCEEDED:
        span.set_attribute(sc.ERROR_TYPE, _node_error_type(result))
        span.set_status(Status(StatusCode.ERROR, _short(result.reason or str(result.status))))
    span.end(end_time=end_time)


def _node_error_type(result: NodeResult) -> str:
    """A low-cardinality ``error.type``: why the node did not succeed, as a kind."""
    if result.status is NodeStatus.NOT_RUN and result.reason in ("budget_exhausted", "cancelled"):
        return result.reason
    if result.status is NodeStatus.FAILED and result.attempts:
        last = result.attempts[-1]
        return last.error_type or ("verification_failed" if not last.passed else "failed")
    return str(result.status)


def _finish_attempt_span(span: Span, attempt: Attempt) -> None:
    usage = Usage(
        input_tokens=attempt.input_tokens,
        output_tokens=attempt.output_tokens,
        cache_read_tokens=attempt.cache_read_tokens,
        cache_write_tokens=attempt.cache_write_tokens,
    )
    span.set_attributes(
        {
            NS.COST: float(attempt.cost_usd),
            NS.ATTEMPT_CALLS: attempt.calls,
            NS.ATTEMPT_PASSED: attempt.passed,
            NS.SIMULATED: attempt.simulated,
            NS.TOKENS_INPUT: usage.prompt_tokens,
            NS.TOKENS_OUTPUT: usage.output_tokens,
            NS.TOKENS_CACHE_READ: usage.cache_read_tokens,
            NS.TOKENS_CACHE_WRITE: usage.cache_write_tokens,
        }
    )
    verdict = attempt.verdict
    if verdict is not None:
        event: dict[str, Any] = {
            sc.EVALUATION_NAME: verdict.verifier or "verifier",
            sc.EVALUATION_SCORE_LABEL: "pass" if verdict.passed else "fail",
            sc.EVALUATION_EXPLANATION: _short(verdict.reason),
            NS.VERDICT_PASSED: verdict.passed,
        }
        if verdict.score is not None:
            event[sc.EVALUATION_SCORE_VALUE] = verdict.score
        span.add_event(sc.EVALUATION_RESULT_EVENT, event)
        span.set_attributes(
            {NS.VERDICT_PASSED: verdict.passed, NS.VERDICT_REASON: _short(verdict.reason)}
        )
    if attempt.error is not None:
        span.set_attribute(NS.ATTEMPT_ERROR, _short(attempt.error))
        span.set_attribute(sc.ERROR_TYPE, attempt.error_type or "error")
        span.set_status(Status(StatusCode.ERROR, _short(attempt.error)))
    elif not attempt.passed:
        span.set_attribute(sc.ERROR_TYPE, "verification_failed")
        reason = verdict.reason if verdict is not None else "no verdict"
        span.set_status(Status(StatusCode.ERROR, _short(f"rejected: {reason}")))
    span.end()
