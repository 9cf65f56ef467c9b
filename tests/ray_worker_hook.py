"""Ray's worker setup hook for tests/test_ray_executor.py: each worker's spans to a file.

A worker process runs :func:`install` as it starts; its spans are written, one JSON line
each, to the file ``$ORCHESTRATOR_TEST_SPANS`` names, which the tests read back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

SPANS_ENV = "ORCHESTRATOR_TEST_SPANS"


class _LineExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                line = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                    "status": span.status.status_code.name,
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


def install() -> None:
    """Export this worker's spans to the file (synchronously: a worker may die any time)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_LineExporter(os.environ[SPANS_ENV])))
    trace.set_tracer_provider(provider)


def read(path: str) -> list[dict[str, object]]:
    """The spans the workers wrote."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
