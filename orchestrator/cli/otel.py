"""The OpenTelemetry SDK for the command line: the only place that installs exporters.

Configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``) and ``--trace``.
Providers are built per command and passed to the engine, never installed globally, and are
shut down (which flushes every span) when the command ends, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NoOpTracerProvider

from orchestrator.exceptions import UserError
from orchestrator.telemetry import (
    Telemetry,
    configure_logging,
    instrument_anthropic,
    uninstrument_anthropic,
    use_telemetry,
)

__all__ = [
    "LOG_LEVELS",
    "TRACE_MODES",
    "WORKER_SETUP",
    "add_flags",
    "session",
    "telemetry_from_env",
    "trace_mode",
    "worker_env",
    "worker_tracing",
]

TRACE_MODES = ("otlp", "console", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
_CONTENT_ATTRIBUTE_LIMIT = 4096  # with content capture on and no limit set, bound values
_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURING = frozenset({"SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT"})


def trace_mode(flag: str | None) -> str:
    """The tracing mode: ``--trace``, else ``OTEL_TRACES_EXPORTER``, else from the endpoint.

    ``otlp`` when an OTLP endpoint variable is set, else ``off``.
    """
    if flag:
        return flag
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "off"
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if exporter:
        mode = "off" if exporter == "none" else exporter
        if mode not in TRACE_MODES:
            raise UserError(
                f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: use otlp, console or none"
            )
        return mode
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(os.environ.get(name) for name in endpoints) else "off"


def _resource() -> Resource:
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return Resource.create({} if named else {"service.name": "orchestrator"})


def _protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _grpc(module: str) -> Any:
    try:
        return importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{module}")
    except ImportError:
        raise UserError(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: "
            "pip install opentelemetry-exporter-otlp-proto-grpc (or use http/protobuf)"
        ) from None


def _span_exporter(mode: str) -> SpanExporter:
    if mode == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout stays free for --json
    protocol = _protocol("TRACES")
    if protocol == "grpc":
        exporter: SpanExporter = _grpc("trace_exporter").OTLPSpanExporter()
        return exporter
    if protocol != "http/protobuf":
        raise UserError(f"OTLP protocol {protocol!r} is not supported: use http/protobuf or grpc")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def _metric_exporter(mode: str) -> MetricExporter | None:
    wanted = os.environ.get("OTEL_METRICS_EXPORTER", "").split(",")[0].strip().lower()
    if wanted == "none":
        return None
    if mode == "console" or wanted == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    if _protocol("METRICS") == "grpc":
        exporter: MetricExporter = _grpc("metric_exporter").OTLPMetricExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter,
    )

    return OTLPMetricExporter()


def _span_limits() -> SpanLimits:
    capture = os.environ.get(_CAPTURE_ENV, "").strip().upper() in _CAPTURING
    if capture and not os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        return SpanLimits(max_attribute_length=_CONTENT_ATTRIBUTE_LIMIT)
    return SpanLimits()  # reads OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT and friends


@contextmanager
def telemetry_from_env(flag: str | None) -> Iterator[Telemetry]:
    """Telemetry for one command: exporting as configured, or explicitly off.

    Raises:
        UserError: If the configuration names an exporter or protocol we cannot use.
    """
    mode = trace_mode(flag)
    if mode == "off":
        yield Telemetry(NoOpTracerProvider(), NoOpMeterProvider())
        return
    resource = _resource()
    tracer_provider = TracerProvider(resource=resource, span_limits=_span_limits())
    tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(mode)))
    metric_exporter = _metric_exporter(mode)
    readers = [PeriodicExportingMetricReader(metric_exporter)] if metric_exporter else []
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    instrument_anthropic()
    try:
        yield Telemetry(tracer_provider, meter_provider)
    finally:
        uninstrument_anthropic()
        tracer_provider.shutdown()  # flushes the batch
        meter_provider.shutdown()


WORKER_SETUP = "orchestrator.cli.otel.worker_tracing"
"""Ray's ``worker_process_setup_hook`` for ``--executor ray``: :func:`worker_tracing`."""
_WORKER_TRACE = "ORCHESTRATOR_WORKER_TRACE"


def worker_env(flag: str | None) -> dict[str, str]:
    """The variables a Ray worker needs to export its spans as this command does.

    The tracing mode (``--trace``, or the variables') and every ``OTEL_*`` variable: the
    workers of a cluster joined at ``$RAY_ADDRESS`` do not share this environment.
    """
    env = {name: value for name, value in os.environ.items() if name.startswith("OTEL_")}
    return env | {_WORKER_TRACE: trace_mode(flag)}


def worker_tracing() -> None:
    """In a Ray worker as it starts: install the SDK that exports the worker's spans.

    The worker's spans (``run <task>``, children of the driver's attempt spans) go where
    the driver's go (:func:`worker_env`); nothing is installed when tracing is off. Here,
    in a worker process of its own, the provider is the process's global one: the
    executor's task code finds it through the OpenTelemetry API.
    """
    mode = os.environ.get(_WORKER_TRACE, "off")
    if mode == "off":
        return
    provider = TracerProvider(resource=_resource(), span_limits=_span_limits())
    provider.add_span_processor(BatchSpanProcessor(_span_exporter(mode)))  # flushed at exit
    trace.set_tracer_provider(provider)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--trace``, ``--log-format`` and ``--log-level`` for commands that run work."""
    parser.add_argument(
        "--trace",
        choices=TRACE_MODES,
        help="export spans and metrics (default: from OTEL_* variables, else off)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="logs on stderr: console on a terminal, JSON otherwise (auto)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warning")


@contextmanager
def session(args: argparse.Namespace) -> Iterator[Telemetry]:
    """Logs, tracing and metrics for one command, flushed when it ends (Ctrl-C included)."""
    configure_logging(
        getattr(args, "log_format", "auto"),
        level=getattr(logging, str(getattr(args, "log_level", "warning")).upper()),
    )
    with telemetry_from_env(getattr(args, "trace", None)) as telemetry, use_telemetry(telemetry):
        yield telemetry
