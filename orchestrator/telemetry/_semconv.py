"""Every OpenTelemetry attribute name we use, in one place.

The GenAI names come from ``opentelemetry-semantic-conventions`` (pinned in pyproject):
its ``gen_ai`` module is marked as moved to the GenAI conventions repository, so nothing
else imports it directly and a future move is a one-file change. Names the package does
not have yet (the ``plan`` operation, the ``gen_ai.evaluation.result`` event) are spelled
here, once. Our own attributes (tiers, attempts, cost, verdicts) live under
``orchestrator.``; docs/tracing.md lists them. :func:`short` bounds the free-text values
we write into them (reasons, errors).
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import error_attributes as _error

__all__ = [
    "AGENT_NAME",
    "ERROR_TYPE",
    "EVALUATION_EXPLANATION",
    "EVALUATION_NAME",
    "EVALUATION_RESULT_EVENT",
    "EVALUATION_SCORE_LABEL",
    "EVALUATION_SCORE_VALUE",
    "NS",
    "OPERATION_NAME",
    "OPERATION_PLAN",
    "PROVIDER_ANTHROPIC",
    "TEXT_LIMIT",
    "short",
]

OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
AGENT_NAME: Final = _gen_ai.GEN_AI_AGENT_NAME
ERROR_TYPE: Final = _error.ERROR_TYPE
EVALUATION_NAME: Final = _gen_ai.GEN_AI_EVALUATION_NAME
EVALUATION_SCORE_VALUE: Final = _gen_ai.GEN_AI_EVALUATION_SCORE_VALUE
EVALUATION_SCORE_LABEL: Final = _gen_ai.GEN_AI_EVALUATION_SCORE_LABEL
EVALUATION_EXPLANATION: Final = _gen_ai.GEN_AI_EVALUATION_EXPLANATION
PROVIDER_ANTHROPIC: Final = _gen_ai.GenAiProviderNameValues.ANTHROPIC.value

EVALUATION_RESULT_EVENT: Final = "gen_ai.evaluation.result"
"""Span event of one evaluation (a verdict); newer than the package's constants."""
OPERATION_PLAN: Final = "plan"
"""The conventions' planning operation (span ``plan {agent}``); newer than the package."""

TEXT_LIMIT: Final = 500
"""Our own free-text attribute values (reasons, errors) stay this short."""


def short(text: str) -> str:
    """``text`` cut to :data:`TEXT_LIMIT` characters, ending in an ellipsis when cut."""
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


class NS:
    """Our own attribute names: everything the conventions do not standardise."""

    RUN_ID: Final = "orchestrator.run.id"
    RUN_GOAL: Final = "orchestrator.run.goal"
    RUN_STATUS: Final = "orchestrator.run.status"
    RUN_TASKS: Final = "orchestrator.run.tasks"
    COST: Final = "orchestrator.cost_usd"
    WASTED_COST: Final = "orchestrator.wasted_cost_usd"
    SIMULATED: Final = "orchestrator.simulated"
    NODE_ID: Final = "orchestrator.node.id"
    NODE_STATUS: Final = "orchestrator.node.status"
    NODE_REASON: Final = "orchestrator.node.reason"
    NODE_FINAL_TIER: Final = "orchestrator.node.final_tier"
    NODE_DEPENDS_ON: Final = "orchestrator.node.depends_on"
    NEEDS_PREFIX: Final = "orchestrator.node.needs."
    TIER: Final = "orchestrator.tier"
    MODEL: Final = "orchestrator.model"
    ATTEMPT_NUMBER: Final = "orchestrator.attempt.number"
    ATTEMPT_ESCALATED_FROM: Final = "orchestrator.attempt.escalated_from"
    ATTEMPT_ROUTE_REASON: Final = "orchestrator.attempt.route_reason"
    ATTEMPT_PASSED: Final = "orchestrator.attempt.passed"
    ATTEMPT_CALLS: Final = "orchestrator.attempt.calls"
    ATTEMPT_ERROR: Final = "orchestrator.attempt.error"
    WORKER: Final = "orchestrator.worker"
    WAITS_FOR: Final = "orchestrator.attempt.waits_for"
    """The tools whose calls (or results) the attempt waits on a person's approval for."""
    VERDICT_PASSED: Final = "orchestrator.verdict.passed"
    VERDICT_REASON: Final = "orchestrator.verdict.reason"
    VERIFIER: Final = "orchestrator.verdict.verifier"
    PURPOSE: Final = "orchestrator.call.purpose"
    TASK_ID: Final = "orchestrator.call.task_id"
    RETRY_EVENT: Final = "orchestrator.retry"
    RETRY_NUMBER: Final = "orchestrator.retry.number"
    RETRY_DELAY: Final = "orchestrator.retry.delay_s"
    HTTP_STATUS: Final = "http.response.status_code"
    TOKENS_INPUT: Final = "orchestrator.tokens.input"
    TOKENS_OUTPUT: Final = "orchestrator.tokens.output"
    TOKENS_CACHE_READ: Final = "orchestrator.tokens.cache_read"
    TOKENS_CACHE_WRITE: Final = "orchestrator.tokens.cache_write"
    CACHE_SAVING: Final = "orchestrator.cache.saving_usd"
    BATCH_CALLS: Final = "orchestrator.batch.calls"
    BATCH_SAVING: Final = "orchestrator.batch.saving_usd"
