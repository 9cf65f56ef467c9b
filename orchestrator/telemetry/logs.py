"""Structured logs (structlog) that join the traces.

The library logs through the standard library's ``logging`` (logger ``orchestrator``), with
structlog building each line: silent unless the application shows ``orchestrator`` logs,
and then every line carries the run, node and tier it belongs to (bound as the run moves,
in context variables that follow each node's task) plus the current ``trace_id`` and
``span_id``, so a log line leads to its span and back. :func:`configure_logging` (the CLI
calls it) renders them for people on a terminal and as JSON otherwise.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any, Literal

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LogFormat", "add_trace_ids", "configure_logging", "get_logger"]

LogFormat = Literal["auto", "console", "json"]
"""``auto``: console on a terminal, JSON otherwise."""

ROOT_LOGGER = "orchestrator"


def add_trace_ids(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` (hex) of the current span, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


_PROCESSORS: list[Processor] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    add_trace_ids,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
]


def get_logger(name: str = ROOT_LOGGER) -> Any:
    """A structlog logger over ``logging.getLogger(name)`` (``name`` under ``orchestrator``).

    Returns a ``structlog.stdlib.BoundLogger``: ``log.info("event", key=value)``.
    """
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure_logging` installed, so it is replaced, not added."""


def configure_logging(
    fmt: LogFormat = "auto", *, stream: IO[str] | None = None, level: int = logging.INFO
) -> None:
    """Show the library's logs on ``stream`` (default stderr), one line per event.

    Args:
        fmt: ``console`` (for people), ``json`` (one object per line) or ``auto``.
        stream: Where lines go; stdout stays free for ``--json`` output.
        level: The lowest level shown.

    Raises:
        ValueError: If ``fmt`` is not one of the formats.
    """
    if fmt not in ("auto", "console", "json"):
        raise ValueError(f"log format must be auto, console or json, not {fmt!r}")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_log_level, add_trace_ids],
        )
    )
    root = logging.getLogger(ROOT_LOGGER)
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
