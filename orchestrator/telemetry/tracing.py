"""The telemetry facade: where the library's spans and metrics go, and which one is current.

:class:`Telemetry` holds a tracer and a GenAI :class:`TelemetryHandler` (from
``opentelemetry-util-genai``) over the application's providers, or the global ones, plus
the ``orchestrator.*`` counters. Everything that records goes through it: the run listener
(:mod:`~orchestrator.telemetry.run`), the model-call and tool-call spans
(:mod:`~orchestrator.telemetry.calls`), and the planning span, which is its own.
:func:`use_telemetry` and :func:`current_telemetry` say which :class:`Telemetry` code
inside a run (or an application's block) reports to; :func:`current_trace_id` names the
trace it is in.

The tree of one run (one trace)::

    invoke_workflow orchestrator.run          run id, goal, status, cost, wasted cost
    └─ node {task}                            needs, final tier, status, cost; links to deps
       └─ attempt {tier}                      number, model, cost, tokens; verdict event;
          │                                   link to the attempt it escalates from
          ├─ chat {model}                     GenAI inference span (one per model turn)
          └─ execute_tool {tool}              GenAI tool span

Without an SDK configured the API's tracer is a no-op: nothing is recorded or exported.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from importlib import metadata
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, TracerProvider
from opentelemetry.util.genai.handler import TelemetryHandler

from orchestrator.telemetry import _semconv as sc
from orchestrator.telemetry.calls import (
    ModelCallSpan,
    ToolCallSpan,
    start_model_call,
    tool_call_span,
)
from orchestrator.telemetry.logs import ROOT_LOGGER
from orchestrator.telemetry.run import RunTelemetry, RunTrace

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

try:
    _VERSION = metadata.version("tiered-orchestrator")
except metadata.PackageNotFoundError:  # pragma: no cover  (running from a bare checkout)
    _VERSION = "0"

_active: ContextVar[Telemetry | None] = ContextVar("orchestrator_telemetry", default=None)
_default: list[Telemetry] = []


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
        """Start a ``chat {model}`` span for one model turn and make it current.

        Operation, provider and model are set at start (samplers see them). The official
        Anthropic instrumentation, when installed (:func:`instrument_anthropic`), finds this
        span in the context and adds what it reads from the SDK call into it instead of
        opening a second span.
        """
        return start_model_call(
            self.handler,
            tier=tier,
            model=model,
            purpose=purpose,
            task_id=task_id,
            max_tokens=max_tokens,
        )

    def tool_call(
        self, name: str, call_id: str, arguments: Any
    ) -> contextlib.AbstractContextManager[ToolCallSpan]:
        """An ``execute_tool {name}`` span around one tool call, current inside the block.

        Arguments and results are recorded only with content capture on.
        """
        return tool_call_span(self.handler, name, call_id, arguments)

    def _make_current(self) -> Callable[[], None]:
        """Make this the current telemetry, as :func:`use_telemetry` does; returns the undo.

        The run listener calls it when its run starts (and the undo when it finishes), so
        model calls inside the run report here.
        """
        token = _active.set(self)
        return lambda: _active.reset(token)


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
