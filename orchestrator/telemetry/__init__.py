"""Telemetry: OpenTelemetry spans and metrics, structlog logs, and a timeline picture.

The library uses the OpenTelemetry API only; an application's providers receive its spans
(pass them to :class:`Telemetry` and the engine), or the global ones do. The CLI installs
the SDK and exporters (``orchestrator/cli/otel.py``). See docs/tracing.md.

The flow, one module each:

- :mod:`~orchestrator.telemetry.tracing`: the facade. :class:`Telemetry` (tracer, GenAI
  handler and counters over the application's providers, and the ``plan`` span), and which
  one is current (:func:`use_telemetry`, :func:`current_telemetry`,
  :func:`current_trace_id`).
- :mod:`~orchestrator.telemetry.run`: one run's spans from its events. :class:`RunTrace`
  opens the root ahead of the run (for planning); :class:`RunTelemetry`, the listener the
  engine subscribes first, opens the root (or adopts it) and a span per node and attempt,
  counts cost and attempts, and logs each step.
- :mod:`~orchestrator.telemetry.outcomes`: what a finished node or attempt span records.
- :mod:`~orchestrator.telemetry.calls`: the ``chat`` span of one model call
  (:class:`ModelCallSpan`, with its retries and failure) and the ``execute_tool`` span of
  one tool call.
- :mod:`~orchestrator.telemetry.instrument`: the official Anthropic SDK instrumentation,
  which adds what it reads from the SDK call into our ``chat`` span.
- :mod:`~orchestrator.telemetry.logs`: structlog lines that carry the run, node, tier and
  trace ids.
- :mod:`~orchestrator.telemetry.timeline`: a finished run as a self-contained HTML page.
- :mod:`~orchestrator.telemetry._semconv`: every attribute name, spelled once, and the
  length limit of our free-text values.
"""

from __future__ import annotations

from orchestrator.telemetry.calls import ModelCallSpan
from orchestrator.telemetry.instrument import instrument_anthropic, uninstrument_anthropic
from orchestrator.telemetry.logs import LogFormat, configure_logging, get_logger
from orchestrator.telemetry.run import RunTelemetry, RunTrace
from orchestrator.telemetry.timeline import render_timeline, write_timeline
from orchestrator.telemetry.tracing import (
    Telemetry,
    current_telemetry,
    current_trace_id,
    default_telemetry,
    use_telemetry,
)

__all__ = [
    "LogFormat",
    "ModelCallSpan",
    "RunTelemetry",
    "RunTrace",
    "Telemetry",
    "configure_logging",
    "current_telemetry",
    "current_trace_id",
    "default_telemetry",
    "get_logger",
    "instrument_anthropic",
    "render_timeline",
    "uninstrument_anthropic",
    "use_telemetry",
    "write_timeline",
]
