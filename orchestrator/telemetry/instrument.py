"""Switch the official Anthropic SDK instrumentation on and off.

``opentelemetry-instrumentation-genai-anthropic`` patches the SDK's ``messages.create`` and
``messages.stream``. Inside our ``chat`` spans it opens no span of its own: it hands what it
read from the call (finish reasons in the conventions' vocabulary, request parameters, and
the messages when content capture is on) to our span through the context. Called by the
CLI; applications call it once at start-up if they want those details.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

__all__ = ["instrument_anthropic", "uninstrument_anthropic"]


def _instrumentor() -> Any:
    # Imported on use: it loads the whole SDK (about a second), which a run on test doubles
    # or with tracing off never needs.
    from opentelemetry.instrumentation.genai.anthropic import (  # noqa: PLC0415
        AnthropicInstrumentor,
    )

    return AnthropicInstrumentor()


def instrument_anthropic(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Instrument the Anthropic SDK (idempotent).

    The providers receive the spans of SDK calls made outside the orchestrator's own model
    calls; inside them the instrumentation only enriches our span.
    """
    instrumentor = _instrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


def uninstrument_anthropic() -> None:
    """Undo :func:`instrument_anthropic` (idempotent)."""
    instrumentor = _instrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
