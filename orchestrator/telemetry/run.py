"""The spans of one run: its root, and a span per node and per attempt, from its events.

The engine subscribes :class:`RunTelemetry` (from :meth:`Telemetry.run_listener
<orchestrator.telemetry.tracing.Telemetry.run_listener>`) first to every run's events. It
opens each span *in the task that does the work* (events are delivered synchronously
inside that task), attaches it as the current context and detaches it when the matching
event ends it, so whatever runs in between lands under the right parent. It also counts
cost and attempts, makes the run's telemetry current for the model calls inside it, binds
the run, node and tier to the log lines, and logs each start and finish.

The root ``invoke_workflow`` span is opened when the run starts, or earlier by a
:class:`RunTrace` around planning: the listener then adopts it, and the planning span and
the run share one trace. What a finished node or attempt span records is in
:mod:`orchestrator.telemetry.outcomes`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Counter
from opentelemetry.trace import Link, Span, SpanContext, Tracer
from opentelemetry.util.genai.handler import TelemetryHandler
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
from orchestrator.results import Attempt, NodeResult, NodeStatus, RunResult, RunStatus
from orchestrator.telemetry._semconv import NS, short
from orchestrator.telemetry.logs import ROOT_LOGGER, get_logger
from orchestrator.telemetry.outcomes import finish_attempt_span, finish_node_span

__all__ = ["RunTelemetry", "RunTrace"]

WORKFLOW_NAME = "orchestrator.run"

_log = get_logger("orchestrator.run")
_logging = logging.getLogger(ROOT_LOGGER).isEnabledFor  # checked before building a line
_pending_root: ContextVar[RunTrace | None] = ContextVar("orchestrator_run_root", default=None)


class _Telemetry(Protocol):
    """What a run's spans need of :class:`~orchestrator.telemetry.tracing.Telemetry`.

    A protocol, so that this module does not import the facade, which imports it.
    """

    tracer: Tracer
    handler: TelemetryHandler
    cost: Counter
    attempts: Counter

    def _make_current(self) -> Callable[[], None]:
        """Make this the current telemetry; the function returned undoes it."""


class RunTrace:
    """The root span of a run opened ahead of it (for planning).

    See :meth:`Telemetry.run_trace <orchestrator.telemetry.tracing.Telemetry.run_trace>`.
    """

    def __init__(self, telemetry: _Telemetry) -> None:
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

    def __init__(self, telemetry: _Telemetry) -> None:
        self._t = telemetry
        self._run: Any = None
        self._run_tokens: Mapping[str, Token[Any]] = {}
        self._undo_current: Callable[[], None] | None = None
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
            {NS.RUN_ID: event.run_id, NS.RUN_GOAL: short(plan.goal), NS.RUN_TASKS: len(plan.tasks)}
        )
        # Not recorded (no SDK installed, or the sampler dropped the run): node and attempt
        # spans are skipped, so tracing that is off costs next to nothing.
        self._recording = self._run.span.is_recording()
        self._undo_current = self._t._make_current()
        self._run_tokens = bind_contextvars(run_id=event.run_id)
        _log.info("run started", goal=short(plan.goal), tasks=len(plan.tasks))

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
        if self._undo_current is not None:
            self._undo_current()
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
                NS.TOKENS_CACHE_READ: result.cache_read_tokens,
                NS.TOKENS_CACHE_WRITE: result.cache_write_tokens,
                NS.CACHE_SAVING: float(result.cache_saving_usd),
                NS.BATCH_CALLS: result.batch_calls,
                NS.BATCH_SAVING: float(result.batch_saving_usd),
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
                reason=short(result.reason) if result.reason else None,
            )
        if opened.span is not None:
            finish_node_span(opened.span, result)
        opened.close()

    def _unrun_node(self, result: NodeResult) -> None:
        """A zero-length span for a node that never ran (skipped, budget, cancelled)."""
        if not self._recording:
            return
        now = time.time_ns()
        span = self._t.tracer.start_span(
            f"node {result.id}", attributes=self._node_attributes(result.id), start_time=now
        )
        finish_node_span(span, result, end_time=now)

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
            NS.ATTEMPT_ROUTE_REASON: short(attempt.route_reason),
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
                verdict=short(attempt.verdict.reason) if attempt.verdict else None,
                error_type=attempt.error_type,
                cost_usd=float(attempt.cost_usd),
                simulated=attempt.simulated,
            )
        if opened.span is not None:
            finish_attempt_span(opened.span, attempt)
        opened.close()
