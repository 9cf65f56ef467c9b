"""What the span of a finished node or attempt says, read from its result.

The run listener (:mod:`orchestrator.telemetry.run`) ends each node and attempt span with
these: status, cost and the needs of a node (with a low-cardinality ``error.type`` when it
did not succeed); cost, tokens, the verdict (a ``gen_ai.evaluation.result`` event) and the
error of an attempt.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from orchestrator.pricing import Usage
from orchestrator.results import Attempt, NodeResult, NodeStatus, Outcome
from orchestrator.telemetry import _semconv as sc
from orchestrator.telemetry._semconv import NS, short

__all__ = ["finish_attempt_span", "finish_node_span"]


def finish_node_span(span: Span, result: NodeResult, end_time: int | None = None) -> None:
    """Record a node's result on its span and end it (at ``end_time``, else now)."""
    attributes: dict[str, Any] = {
        NS.NODE_STATUS: str(result.status),
        NS.COST: float(result.cost_usd),
        NS.WASTED_COST: float(result.wasted_cost_usd),
        "orchestrator.node.attempts": len(result.attempts),
    }
    for name, level in result.needs.levels().items():
        attributes[NS.NEEDS_PREFIX + name] = level
    if result.final_tier is not None:
        attributes[NS.NODE_FINAL_TIER] = result.final_tier
    if result.reason:
        attributes[NS.NODE_REASON] = short(result.reason)
    span.set_attributes(attributes)
    if result.status is not NodeStatus.SUCCEEDED:
        span.set_attribute(sc.ERROR_TYPE, _node_error_type(result))
        span.set_status(Status(StatusCode.ERROR, short(result.reason or str(result.status))))
    span.end(end_time=end_time)


def _node_error_type(result: NodeResult) -> str:
    """A low-cardinality ``error.type``: why the node did not succeed, as a kind."""
    unrun = (Outcome.BUDGET_EXHAUSTED, Outcome.CANCELLED)
    if result.status is NodeStatus.NOT_RUN and result.reason in unrun:
        return str(result.reason)
    if result.status is NodeStatus.FAILED and result.attempts:
        last = result.attempts[-1]
        return str(
            last.error_type or (Outcome.VERIFICATION_FAILED if not last.passed else "failed")
        )
    return str(result.status)


def finish_attempt_span(span: Span, attempt: Attempt) -> None:
    """Record an attempt's cost, tokens, verdict and error on its span and end it."""
    usage = Usage(
        input_tokens=attempt.input_tokens,
        output_tokens=attempt.output_tokens,
        cache_read_tokens=attempt.cache_read_tokens,
        cache_write_tokens=attempt.cache_write_tokens,
    )
    span.set_attributes(
        {
            NS.COST: float(attempt.cost_usd),
            NS.ATTEMPT_CALLS: attempt.calls,
            NS.ATTEMPT_PASSED: attempt.passed,
            NS.SIMULATED: attempt.simulated,
            NS.TOKENS_INPUT: usage.prompt_tokens,
            NS.TOKENS_OUTPUT: usage.output_tokens,
            NS.TOKENS_CACHE_READ: usage.cache_read_tokens,
            NS.TOKENS_CACHE_WRITE: usage.cache_write_tokens,
            NS.CACHE_SAVING: float(attempt.cache_saving_usd),
            NS.BATCH_CALLS: attempt.batch_calls,
            NS.BATCH_SAVING: float(attempt.batch_saving_usd),
        }
    )
    if attempt.worker is not None:  # run on a remote executor's worker
        span.set_attribute(NS.WORKER, attempt.worker)
    verdict = attempt.verdict
    if verdict is not None:
        event: dict[str, Any] = {
            sc.EVALUATION_NAME: verdict.verifier or "verifier",
            sc.EVALUATION_SCORE_LABEL: "pass" if verdict.passed else "fail",
            sc.EVALUATION_EXPLANATION: short(verdict.reason),
            NS.VERDICT_PASSED: verdict.passed,
        }
        if verdict.score is not None:
            event[sc.EVALUATION_SCORE_VALUE] = verdict.score
        span.add_event(sc.EVALUATION_RESULT_EVENT, event)
        span.set_attributes(
            {NS.VERDICT_PASSED: verdict.passed, NS.VERDICT_REASON: short(verdict.reason)}
        )
    if attempt.tool_wait is not None:  # not a failure: it waits for a person
        span.set_attribute(NS.WAITS_FOR, list(attempt.tool_wait.tools))
    elif attempt.error is not None:
        span.set_attribute(NS.ATTEMPT_ERROR, short(attempt.error))
        span.set_attribute(sc.ERROR_TYPE, str(attempt.error_type or "error"))
        span.set_status(Status(StatusCode.ERROR, short(attempt.error)))
    elif not attempt.passed:
        span.set_attribute(sc.ERROR_TYPE, Outcome.VERIFICATION_FAILED.value)
        reason = verdict.reason if verdict is not None else "no verdict"
        span.set_status(Status(StatusCode.ERROR, short(f"rejected: {reason}")))
    span.end()
