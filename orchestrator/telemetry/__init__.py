"""Telemetry: OpenTelemetry spans and metrics, structlog logs, and a timeline picture.

The library uses the OpenTelemetry API only; an application's providers receive its spans
(pass them to :class:`Telemetry` and the engine), or the global ones do. The CLI installs
the SDK and exporters (``orchestrator/cli/otel.py``). See docs/tracing.md.
"""

from __future__ import annotations

from orchestrator.telemetry.instrument import instrument_anthropic, uninstrument_anthropic
from orchestrator.telemetry.logs import LogFormat, configure_logging, get_logger
from orchestrator.telemetry.timeline import render_timeline, write_timeline
from orchestrator.telemetry.tracing import (
    ModelCallSpan,
    RunTelemetry,
    RunTrace,
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
