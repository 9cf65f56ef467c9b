"""The spans of one model call (``chat {model}``) and one tool call (``execute_tool {tool}``).

Both are GenAI invocations of the ``opentelemetry-util-genai`` handler, opened by
:meth:`Telemetry.model_call <orchestrator.telemetry.tracing.Telemetry.model_call>` and
:meth:`Telemetry.tool_call <orchestrator.telemetry.tracing.Telemetry.tool_call>` under
whatever span is current (an attempt's, inside a run). :class:`ModelCallSpan` records the
response, each retried transient failure (as span events and a warning line) and the final
failure; :class:`ToolCallSpan` records what the tool returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span
from opentelemetry.util.genai.handler import TelemetryHandler
from opentelemetry.util.genai.invocation import CLIENT_INFERENCE_CONTEXT_KEY
from opentelemetry.util.genai.types import Error

from orchestrator.exceptions import RetryEvent
from orchestrator.pricing import Usage
from orchestrator.telemetry import _semconv as sc
from orchestrator.telemetry._semconv import NS, short
from orchestrator.telemetry.logs import get_logger

__all__ = ["ModelCallSpan", "ToolCallSpan", "start_model_call", "tool_call_span"]

_log = get_logger("orchestrator.run")


def start_model_call(
    handler: TelemetryHandler,
    *,
    tier: str,
    model: str,
    purpose: str,
    task_id: str | None,
    max_tokens: int,
) -> ModelCallSpan:
    """Start a ``chat {model}`` span and make it current (see ``Telemetry.model_call``)."""
    invocation = handler.inference(sc.PROVIDER_ANTHROPIC, request_model=model)
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
            {"exception.type": event.error_type, "exception.message": short(event.message)},
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
            "exception.message": short(message),
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
        self._end(Error(message=short(message), type=error_type))

    def _end(self, error: Error | None) -> None:
        if not self._open:
            return
        self._open = False
        if error is None:
            self._invocation.stop()
        else:
            self._invocation.fail(error)


@contextlib.contextmanager
def tool_call_span(
    handler: TelemetryHandler, name: str, call_id: str, arguments: Any
) -> Iterator[ToolCallSpan]:
    """An ``execute_tool {name}`` span, current inside the block (see ``Telemetry.tool_call``)."""
    invocation = handler.tool(name, tool_type="function")
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
        invocation.fail(Error(message=short(call.error), type="tool_error"))
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
