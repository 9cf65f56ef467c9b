"""Tracing as a wrapper: a ``chat {model}`` span around each turn of any model client.

:class:`InstrumentedModel` wraps a :class:`~orchestrator.models.base.ModelClient` (the
Anthropic client, a test double, anything with ``complete``) the way pydantic-ai's
``InstrumentedModel`` wraps a model: the vendor code opens no spans. Each turn is one GenAI
inference span, current while the inner client works (so the official Anthropic
instrumentation, when installed, enriches it from the SDK call); each transient failure the
client retried is an ``orchestrator.retry`` event on it, at the time it happened.

The engine and the LLM planner wrap their client once (:func:`instrumented`); wrapping twice
is a no-op. Other attributes (``errors_seen``, ``rate_limit_waits``, ``aclose``) are the
inner client's.
"""

from __future__ import annotations

from typing import Any

from orchestrator.budget import Meter
from orchestrator.exceptions import ModelAPIError
from orchestrator.models.base import ModelClient, ModelRequest, ModelResponse
from orchestrator.telemetry.tracing import current_telemetry

__all__ = ["InstrumentedModel", "instrumented"]


class InstrumentedModel:
    """A model client whose turns are traced.

    Args:
        wrapped: The client that does the work.
    """

    def __init__(self, wrapped: ModelClient) -> None:
        self.wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """One turn of the inner client inside a ``chat {model}`` span."""
        span = current_telemetry().model_call(
            tier=request.tier.name,
            model=request.tier.model,
            purpose=request.purpose,
            task_id=request.task_id,
            max_tokens=request.max_output_tokens,
        )
        try:
            response = await self.wrapped.complete(request, meter)
        except ModelAPIError as error:
            for retry in error.retries:
                span.retried(retry)
            span.failed(error.error_type, str(error), status_code=error.status_code)
            raise
        except BaseException as exc:  # budget exhausted, cancelled: the span says so
            span.failed(type(exc).__name__, str(exc))
            raise
        for retry in response.retries:
            span.retried(retry)
        span.succeeded(
            response_id=response.response_id or "",
            response_model=response.model,
            usage=response.usage,
            simulated=response.simulated,
        )
        return response


def instrumented(client: ModelClient) -> ModelClient:
    """``client`` with its turns traced (itself if it already is)."""
    return client if isinstance(client, InstrumentedModel) else InstrumentedModel(client)
