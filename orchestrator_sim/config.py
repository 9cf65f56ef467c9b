"""Configuration of the local Messages-API server: the models it knows, latency, faults.

Everything here is plain pydantic data so a config can be built in code, loaded from JSON,
or derived from CLI flags. Times are seconds of *simulated* model work; ``time_scale``
multiplies them (``0`` answers instantly, for tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FAULT_KINDS", "FaultKind", "SimConfig", "SimModel", "default_models"]

FaultKind = Literal[
    "rate_limit", "overloaded", "server_error", "drop_connection", "slow", "truncated_body"
]
"""What an injected fault does:

* ``rate_limit``: HTTP 429 ``rate_limit_error`` with a ``retry-after`` header;
* ``overloaded``: HTTP 529 ``overloaded_error``;
* ``server_error``: HTTP 500 ``api_error``;
* ``drop_connection``: the connection is closed without a response (streaming requests:
  after the first events);
* ``slow``: the answer comes only after ``SimConfig.slow_response_s``, past a client timeout;
* ``truncated_body``: a 200 whose body is cut short, as a flaky proxy cuts it (its
  ``content-length`` matches what is sent, so only parsing finds out); a streamed answer
  ends cleanly before ``message_stop``. The request is billed (its usage is logged).
"""

FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",
    "overloaded",
    "server_error",
    "drop_connection",
    "slow",
    "truncated_body",
)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
ByCapability = tuple[Unit, Unit, Unit]


class SimModel(BaseModel):
    """One simulated model id.

    Attributes:
        capability: How hard a task it answers correctly (1..3); see docs/sim.md.
        ttft_s: Seconds to the first token.
        tokens_per_s: Output speed.
        rejects_forced_tool_choice: Answer a forced ``tool_choice`` (``tool`` or ``any``)
            with HTTP 400, as the newest Sonnet and Opus models do.
        max_output_tokens: Largest ``max_tokens`` accepted.
        context_window: Largest prompt plus ``max_tokens``, in tokens.
        cache_min_tokens: Shortest prefix that prompt caching stores (shorter: not cached).
        display_name: Name shown by ``GET /v1/models``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    capability: Annotated[int, Field(ge=1, le=3)]
    ttft_s: Annotated[float, Field(ge=0.0)] = 0.3
    tokens_per_s: Annotated[float, Field(gt=0.0)] = 100.0
    rejects_forced_tool_choice: bool = False
    max_output_tokens: Annotated[int, Field(gt=0)] = 64_000
    context_window: Annotated[int, Field(gt=0)] = 200_000
    cache_min_tokens: Annotated[int, Field(ge=0)] = 1024
    display_name: str | None = None


def default_models() -> dict[str, SimModel]:
    """Return the model ids of the default tier ladder (Haiku < Sonnet < Opus 5.5)."""
    return {
        "claude-haiku-5-5": SimModel(
            capability=1, ttft_s=0.25, tokens_per_s=180.0, display_name="Claude Haiku 5.5"
        ),
        "claude-sonnet-5-5": SimModel(
            capability=2,
            ttft_s=0.5,
            tokens_per_s=90.0,
            rejects_forced_tool_choice=True,
            context_window=1_000_000,
            display_name="Claude Sonnet 5.5",
        ),
        "claude-opus-5-5": SimModel(
            capability=3,
            ttft_s=1.0,
            tokens_per_s=45.0,
            rejects_forced_tool_choice=True,
            context_window=1_000_000,
            max_output_tokens=128_000,
            display_name="Claude Opus 5.5",
        ),
    }


def _default_fault_kinds() -> dict[FaultKind, float]:
    return {
        "rate_limit": 3.0,
        "overloaded": 2.0,
        "server_error": 1.0,
        "drop_connection": 1.0,
        "slow": 1.0,
        "truncated_body": 1.0,
    }


class SimConfig(BaseModel):
    """Settings of one simulated server.

    Attributes:
        seed: Seeds every decision (faults, answers, flaws, judge rolls).
        time_scale: Multiplies simulated latency and ``retry-after``; ``0`` is instant.
        fault_rate: Probability that a request gets a fault (0..1).
        fault_kinds: Relative weights of the fault kinds drawn when a fault happens.
        slow_response_s: Delay of a ``slow`` fault, in real seconds (not scaled).
        retry_after_s: ``retry-after`` of a 429, before ``time_scale``.
        request_log: File that gets one JSON line per request; ``None`` for none.
        models: Model ids served; any other id gets HTTP 404.
        broken_plans: The first N plan requests get a broken plan (cycle, unknown
            dependency, prose, then again), to exercise a planner's repair loop.
        subtle_flaw_rate: Share of flawed answers whose flaw is subtle (weak checks miss it).
        judge_detection: Chance a judge catches a visible flaw, by judge capability 1..3.
        judge_subtle_detection: Chance a judge catches a subtle flaw, by capability.
        judge_false_reject: Chance a judge rejects a sound answer, by capability.
        classifier_accuracy: Chance a classifier call names the task's true label (from
            its difficulty), by the classifying model's capability; else another label.
        max_tool_calls: Tool calls the brain makes in one conversation before answering
            (unless ``tool_choice`` forces another).
        cache_entries: Prompt-cache prefixes remembered (least recently used dropped).
        max_body_bytes: Largest request body accepted: the real Messages API's 32 MB
            (32,000,000 bytes); above it, HTTP 413 ``request_too_large``.
        batch_max_bytes: Largest body of ``POST /v1/messages/batches``: the real API's
            256 MB (256,000,000 bytes); above it, HTTP 413.
        batch_delay_s: Simulated seconds a Message Batch request takes: each one ends
            between 0.5x and 1.5x this after the batch is created (seeded), times
            ``time_scale``; the batch ends with its last request.
        batch_expiry_s: Simulated seconds after which a batch stops processing (the real
            API's 24 hours): requests that would end later are ``expired``.
        batch_error_rate: Probability that a valid batch request ends ``errored`` with a
            500 ``api_error`` (seeded per batch and ``custom_id``).
        max_batches: Message Batches kept in memory; creating one more forgets the oldest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    time_scale: Annotated[float, Field(ge=0.0)] = 1.0
    fault_rate: Unit = 0.0
    fault_kinds: dict[FaultKind, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=_default_fault_kinds
    )
    slow_response_s: Annotated[float, Field(ge=0.0)] = 30.0
    retry_after_s: Annotated[float, Field(ge=0.0)] = 1.0
    request_log: Path | None = None
    models: dict[str, SimModel] = Field(default_factory=default_models)
    broken_plans: Annotated[int, Field(ge=0)] = 0
    subtle_flaw_rate: Unit = 0.15
    judge_detection: ByCapability = (0.6, 0.85, 0.97)
    judge_subtle_detection: ByCapability = (0.25, 0.55, 0.85)
    judge_false_reject: ByCapability = (0.06, 0.03, 0.01)
    classifier_accuracy: ByCapability = (0.75, 0.85, 0.95)
    max_tool_calls: Annotated[int, Field(ge=1)] = 2
    cache_entries: Annotated[int, Field(gt=0)] = 512
    max_body_bytes: Annotated[int, Field(gt=0)] = 32_000_000
    batch_max_bytes: Annotated[int, Field(gt=0)] = 256_000_000
    batch_delay_s: Annotated[float, Field(ge=0.0)] = 5.0
    batch_expiry_s: Annotated[float, Field(ge=0.0)] = 86_400.0
    batch_error_rate: Unit = 0.0
    max_batches: Annotated[int, Field(gt=0)] = 1000

    @model_validator(mode="after")
    def _faults_drawable(self) -> SimConfig:
        if self.fault_rate > 0 and sum(self.fault_kinds.values()) <= 0:
            raise ValueError("fault_rate > 0 needs at least one fault kind with a positive weight")
        return self

    def scaled(self, seconds: float) -> float:
        """Return ``seconds`` of simulated work in real seconds (times ``time_scale``)."""
        return seconds * self.time_scale
