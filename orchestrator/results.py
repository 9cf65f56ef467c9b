"""What a run produced: the run, each node, each attempt. This is what ``--json`` prints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.capabilities import Needs
from orchestrator.paused import ToolWait
from orchestrator.pricing import USD, ZERO_USD

__all__ = [
    "Attempt",
    "BatchCall",
    "NodeResult",
    "NodeStatus",
    "Outcome",
    "RunResult",
    "RunStatus",
    "Verdict",
]


class Verdict(BaseModel):
    """A verifier's judgement of one attempt's output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    """Whether the output is accepted."""
    reason: str = ""
    """Why, in words the next attempt can act on."""
    score: float | None = None
    """Optional score in [0, 1]."""
    verifier: str = ""
    """Which verifier decided."""


class Outcome(StrEnum):
    """Why the engine itself ended an attempt, or left a node unrun.

    The values of :attr:`Attempt.error_type` and :attr:`NodeResult.reason` that the
    engine writes (an API error keeps the API's own type, ``overloaded_error`` say), and of
    the spans' ``error.type``. A member compares equal to its string.
    """

    BUDGET_EXHAUSTED = "budget_exhausted"
    """The budget could not cover the next call."""
    CANCELLED = "cancelled"
    """The run was cancelled during it."""
    INTERRUPTED = "interrupted"
    """The process ended during it (found so on resume)."""
    WORKER_LOST = "worker_lost"
    """The executor's worker running it died (the node runs again on another)."""
    VERIFICATION_FAILED = "verification_failed"
    """Its answer was rejected by a verifier."""
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    """A person has yet to approve the task (or its answer)."""


class BatchCall(BaseModel):
    """A call waiting in a Message Batch: stored before its result is awaited.

    A resumed run that makes the same call again collects it from this batch instead of
    sending it again (it is billed once).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    """The Message Batch's id (``msgbatch_...``)."""
    custom_id: str
    """The request's id within the batch (a digest of the request: the same call, the same id)."""
    reserved_usd: USD
    """The call's worst case, which the budget holds until its result is read."""


class Attempt(BaseModel):
    """One try at a node on one tier."""

    model_config = ConfigDict(extra="forbid")

    number: int
    """1 for the first attempt of the node, then 2, 3..."""
    tier: str
    """Tier name (``python`` for a plain Python task)."""
    model: str | None
    """Model id, ``None`` for a plain Python task."""
    started_at: datetime
    """When the attempt started (UTC)."""
    finished_at: datetime | None = None
    """When it ended (UTC); ``None`` while running."""
    route_reason: str = ""
    """Why this tier: the routing decision, or the verdict that escalated to it."""
    needs_covered: bool = True
    """False when this tier does not cover the node's needs: none does and the strongest
    was used anyway, or a calibrated router started lower on evidence (``route_reason``
    says which)."""
    escalated_from: int | None = None
    """The number of the attempt this one escalates from."""
    input_tokens: int = 0
    """Uncached input tokens of every call of the attempt (judge calls included)."""
    output_tokens: int = 0
    """Output tokens."""
    cache_write_tokens: int = 0
    """Tokens written to the prompt cache."""
    cache_read_tokens: int = 0
    """Tokens read from the prompt cache."""
    cache_saving_usd: USD = ZERO_USD
    """What prompt caching saved on this attempt's calls (their cost uncached, less their
    cost; negative when cache writes were never read back)."""
    batch_calls: int = 0
    """Calls sent in Message Batches (at the batch price), of :attr:`calls`."""
    batch_saving_usd: USD = ZERO_USD
    """What batching saved on this attempt's calls: their cost sent one by one, less their
    cost in batches."""
    batch_pending: tuple[BatchCall, ...] = ()
    """While it runs: its calls waiting in a Message Batch (empty once their results are read)."""
    cost_usd: USD = ZERO_USD
    """What the attempt cost, judge calls included (while it runs: its settled calls)."""
    in_flight_usd: USD = ZERO_USD
    """While it runs: the worst case of its calls in flight, which the budget holds and the
    store counts as spent until they settle (0 once the attempt ended)."""
    cost_unknown: bool = False
    """True when the exact cost is unknown and ``cost_usd`` is an upper bound: the process
    died during the attempt (the calls in flight count at their worst case), or a call
    may have been billed with no usage read back (a timeout or dropped connection after
    sending, a body that did not parse, a cancelled call: counted at its worst case)."""
    calls: int = 0
    """Model calls made (tool-loop steps and judge calls included)."""
    verdict: Verdict | None = None
    """The verification verdict; ``None`` when the attempt errored before one was reached."""
    error: str | None = None
    """What went wrong, in plain words; ``None`` when the attempt produced an output."""
    error_type: str | None = None
    """Machine-readable kind of error (exception class or API error type)."""
    simulated: bool = False
    """True when the answer came from a simulator or test double, not a real model."""
    shadow: bool = False
    """A shadow attempt: the top tier answering a node that had passed below it, paid for
    and recorded so a learning router can compare, never the node's answer."""
    agrees: bool | None = None
    """On a shadow attempt that passed verification: whether its answer says what the
    node's accepted answer says (text up to case and spacing, structured data equal)."""
    classify: bool = False
    """A classifier call before routing (:class:`~orchestrator.routing.TaskClassifier`):
    a cheap tier labelling the task, paid for, never the node's answer, never verified."""
    label: str | None = None
    """On a classify attempt: the label it answered (``None``: it named none, or failed)."""
    worker: str | None = None
    """The remote executor's worker that ran it (``host:pid``); ``None``: the driver did."""

    @property
    def passed(self) -> bool:
        """Whether the attempt produced an accepted output."""
        return self.error is None and self.verdict is not None and self.verdict.passed

    approval: Literal["before", "after", "tool"] | None = None
    """A person's decision (tier ``human``, no model, no cost): on the task ``before`` it
    ran, ``after``: on the answer of attempt :attr:`approves`, or on the ``tool`` calls
    that attempt waits on; ``verdict`` says which way (``passed``: approved) and why."""
    approves: int | None = None
    """On an ``after`` or ``tool`` decision: the number of the attempt it judged."""
    tool_wait: ToolWait | None = None
    """Its tool loop stopped for a person's decision on tool calls: the conversation so
    far, where ``resume`` goes on (:mod:`orchestrator.tool_approval`)."""

    @property
    def answering(self) -> bool:
        """An attempt at the node's answer: not a shadow run, a classifier call or a decision."""
        return not (self.shadow or self.classify or self.approval)


class NodeStatus(StrEnum):
    """How a node ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"
    WAITING = "waiting"
    """It waits for a person's approval (before it runs, or of its answer)."""


_NO_NEEDS = Needs()
"""The default needs, shared (frozen)."""


class NodeResult(BaseModel):
    """How one node of the plan went."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """The task id."""
    depends_on: tuple[str, ...] = ()
    """The task's dependencies."""
    needs: Needs = _NO_NEEDS
    """What the task needs."""
    status: NodeStatus
    """How it ended."""
    reason: str | None = None
    """Why it did not succeed: the last error or verdict, the failed dependency, or
    ``budget_exhausted`` / ``cancelled`` for nodes that did not run."""
    final_tier: str | None = None
    """Tier of the last attempt."""
    attempts: list[Attempt] = Field(default_factory=list)
    """Every attempt, in order."""
    output: Any = None
    """The accepted output (``None`` unless succeeded)."""
    shadowed: bool = False
    """The router sampled this node for a shadow run: had it passed below the top tier,
    the top tier answered it too (a shadow attempt). A learning router compares those
    answers, and counts the sampled nodes whose start was rejected, to learn the share of
    wrong answers its checks catch."""

    @property
    def cost_usd(self) -> Decimal:
        """What every attempt of the node cost."""
        return sum((attempt.cost_usd for attempt in self.attempts), ZERO_USD)

    @property
    def wasted_cost_usd(self) -> Decimal:
        """What answering attempts that did not pass cost (shadow and classify aside)."""
        return sum((a.cost_usd for a in self.attempts if not a.passed and a.answering), ZERO_USD)

    @property
    def shadow_cost_usd(self) -> Decimal:
        """What shadow attempts cost (included in :attr:`cost_usd`)."""
        return sum((a.cost_usd for a in self.attempts if a.shadow), ZERO_USD)

    @property
    def classify_cost_usd(self) -> Decimal:
        """What classifier calls cost (included in :attr:`cost_usd`)."""
        return sum((a.cost_usd for a in self.attempts if a.classify), ZERO_USD)


# -- the engine's hot path --------------------------------------------------------------
# Validating a Python node's attempt (about 3 µs) was a fifth of what a no-op Python node
# cost the engine; the engine builds it with ``python_attempt`` instead, which leaves it in
# exactly the state validation would (``tests/test_results.py`` compares the two).

PYTHON_TIER = "python"
"""The pseudo-tier of a plain Python node's attempt: no model, nothing to pay."""

_PYTHON_ATTEMPT_STATE: dict[str, Any] = {
    name: field.get_default(call_default_factory=True) if not field.is_required() else None
    for name, field in Attempt.model_fields.items()
} | {"number": 1, "tier": PYTHON_TIER, "model": None}
"""A Python node's attempt, ``started_at`` left to fill: every field in declaration order
(serialisation follows it), immutable values only (each attempt gets a shallow copy)."""

_PYTHON_ATTEMPT_SET = frozenset({"number", "tier", "model", "started_at"})


def python_attempt(started_at: datetime) -> Attempt:
    """A Python node's attempt as it starts, built without validation.

    Equal to ``Attempt(number=1, tier="python", model=None, started_at=started_at)``,
    field set included. ``Attempt.model_construct`` skips validation too, but is slower
    than validating (it looks up aliases and defaults field by field, about 12 against
    3 µs); this sets the instance's state as it does, from defaults computed once.
    """
    attempt = _new(Attempt)
    state = _PYTHON_ATTEMPT_STATE.copy()
    state["started_at"] = started_at
    _set_state(attempt, state)
    _set_fields_set(attempt, set(_PYTHON_ATTEMPT_SET))
    _set_extra(attempt, None)
    _set_private(attempt, None)
    return attempt


_UNRUN_NODE_SET = frozenset({"id", "depends_on", "needs", "status"})


def unrun_node(node_id: str, depends_on: tuple[str, ...], needs: Needs) -> NodeResult:
    """A node's result before it runs, built without validation (from a validated task).

    Equal to ``NodeResult(id=..., depends_on=..., needs=..., status=NodeStatus.NOT_RUN)``,
    field set included (``tests/test_results.py`` compares the two); a run makes one per
    node as it is prepared, where validating cost about 2 µs a node.
    """
    result = _new(NodeResult)
    _set_state(
        result,
        {
            "id": node_id,
            "depends_on": depends_on,
            "needs": needs,
            "status": NodeStatus.NOT_RUN,
            "reason": None,
            "final_tier": None,
            "attempts": [],
            "output": None,
            "shadowed": False,
        },
    )
    _set_fields_set(result, set(_UNRUN_NODE_SET))
    _set_extra(result, None)
    _set_private(result, None)
    return result


def assign(model: BaseModel, name: str, value: Any) -> None:
    """Set field ``name`` of ``model`` as ``model.name = value`` does, about 6x faster.

    For the engine's hot path only, on models that do not validate assignment (neither
    does this): pydantic's ``__setattr__`` finds a handler by name (about 600 ns), which
    then does just this, write the value and mark the field as set (about 90 ns).
    """
    model.__dict__[name] = value
    model.__pydantic_fields_set__.add(name)


# The four slots every pydantic model instance fills (as ``model_construct`` does), set
# through their descriptors: a third faster than ``object.__setattr__`` by name.
_new = object.__new__
_set_state = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class RunStatus(StrEnum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"
    CANCELLED = "cancelled"
    BUDGET_EXHAUSTED = "budget_exhausted"
    WAITING = "waiting"
    """Paused: a task waits for a person's approval and nothing else can run until it has
    it (``orchestrator approve``, then ``resume``)."""


class PlanningRecord(BaseModel):
    """What planning the run cost, when a model planned it."""

    model_config = ConfigDict(extra="forbid")

    tier: str
    """The tier that planned."""
    model: str
    """Its model id."""
    rounds: int
    """Rounds made: 1 + repair rounds + rounds the API failed."""
    input_tokens: int = 0
    """Input tokens of every round (cache reads and writes included)."""
    output_tokens: int = 0
    """Output tokens of every round."""
    cost_usd: USD = ZERO_USD
    """What every round cost."""
    wasted_cost_usd: USD = ZERO_USD
    """What rounds whose plan was rejected (or failed) cost."""
    problems: list[list[str]] = Field(default_factory=list)
    """The problems of each rejected round, in order."""
    wall_s: float = 0.0
    """How long planning took (part of the run's ``wall_s`` when the run planned its goal;
    not when the plan was made before the run)."""
    simulated: bool = False
    """True when the planner's answers came from a simulator."""
    error: str | None = None
    """Why planning failed (no valid plan, the API kept failing, the budget could not cover
    it); ``None`` when it produced the plan."""


PLANNING_NODE = "(planning)"
"""The pseudo node id under which a store records planning: one attempt per round."""


def planning_attempt(record: PlanningRecord, at: datetime) -> Attempt:
    """Planning done before the run, as one stored attempt (so stored spend includes it).

    For ``Engine.prepare(planning=...)``: planning inside the run stores each round.
    """
    return Attempt(
        number=record.rounds, tier=record.tier, model=record.model, started_at=at,
        finished_at=at, input_tokens=record.input_tokens, output_tokens=record.output_tokens,
        cost_usd=record.cost_usd, calls=record.rounds, simulated=record.simulated,
        verdict=Verdict(
            passed=True, verifier="planner",
            reason=f"{record.rounds} round(s), {len(record.problems)} plan(s) rejected",
        ),
    )  # fmt: skip


def planning_from_attempts(attempts: list[Attempt], *, error: str | None = None) -> PlanningRecord:
    """The planning record of a run from its planning attempts (one per round).

    A round whose plan was rejected has a failed verdict whose reason lists its problems,
    one a line. Earlier stores kept planning as one attempt numbered by its rounds: read
    as such.
    """
    last = attempts[-1]
    rounds = last.number if len(attempts) == 1 and last.calls > 1 else len(attempts)
    wasted = [a for a in attempts if not a.passed]
    return PlanningRecord(
        tier=last.tier, model=last.model or "", rounds=rounds,
        input_tokens=sum(a.input_tokens + a.cache_read_tokens + a.cache_write_tokens
                         for a in attempts),
        output_tokens=sum(a.output_tokens for a in attempts),
        cost_usd=sum((a.cost_usd for a in attempts), ZERO_USD),
        wasted_cost_usd=sum((a.cost_usd for a in wasted), ZERO_USD),
        problems=[a.verdict.reason.splitlines() for a in wasted if a.verdict is not None],
        simulated=any(a.simulated for a in attempts), error=error,
    )  # fmt: skip


class RunResult(BaseModel):
    """Everything a run produced."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """Unique id of the run."""
    status: RunStatus
    """How the run ended."""
    goal: str
    """The plan's goal."""
    output: Any = None
    """The output task's output, when it succeeded."""
    output_task: str | None = None
    """Which task's output is the run's output."""
    cost_usd: USD = ZERO_USD
    """Total spend, planning included."""
    wasted_cost_usd: USD = ZERO_USD
    """Spend on answering attempts that did not pass (shadow and classify attempts aside)."""
    shadow_cost_usd: USD = ZERO_USD
    """Spend on shadow attempts (included in ``cost_usd``): a learning router's checks of
    what the verifiers miss, see :class:`~orchestrator.routing.CalibratedRouter`."""
    classify_cost_usd: USD = ZERO_USD
    """Spend on classifier calls before routing (included in ``cost_usd``), see
    :class:`~orchestrator.routing.TaskClassifier`."""
    cache_read_tokens: int = 0
    """Prompt tokens read from the cache, over every attempt (planning included)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the cache, over every attempt (planning included)."""
    cache_saving_usd: USD = ZERO_USD
    """What prompt caching saved: the run's calls uncached, less what they cost (planning
    included; negative when cache writes were never read back)."""
    batch_calls: int = 0
    """Model calls sent in Message Batches (``--batch``), over every attempt."""
    batch_saving_usd: USD = ZERO_USD
    """What batching saved: the batched calls' cost sent one by one, less their batch cost."""
    budget_usd: USD | None = None
    """The run's budget, if it had one."""
    started_at: datetime
    """When the run started (UTC)."""
    finished_at: datetime
    """When it ended (UTC)."""
    wall_s: float
    """Wall-clock duration in seconds."""
    trace_id: str | None = None
    """OpenTelemetry trace id (32 hex chars), ``None`` when tracing is off."""
    simulated: bool = False
    """True when any answer came from a simulator or test double rather than a real model."""
    planning: PlanningRecord | None = None
    """Planning's rounds and cost (included in ``cost_usd``), when a model planned."""
    api_errors: dict[str, int] = Field(default_factory=dict)
    """Failed API calls during the run by error type (``rate_limit_error`` counts 429s),
    retried ones included; from the model client's ``errors_seen`` tally, so a client shared
    by runs executing at the same time counts theirs too."""
    nodes: list[NodeResult] = Field(default_factory=list)
    """Every node, in plan order."""
    replans: int = 0
    """How many times the planner revised the plan after tasks failed for good."""
    replaced: list[NodeResult] = Field(default_factory=list)
    """Nodes a revision of the plan dropped or ran afresh, with their attempts (their cost
    is in ``cost_usd``)."""

    def node(self, node_id: str) -> NodeResult:
        """Return the result of node ``node_id`` (``KeyError`` if there is none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the nodes that succeeded, by id."""
        return {n.id: n.output for n in self.nodes if n.status is NodeStatus.SUCCEEDED}


def discount_totals(attempts: list[Attempt]) -> dict[str, Any]:
    """The prompt cache's tokens and saving, and the batched calls', over ``attempts``."""
    return {
        "batch_calls": sum(a.batch_calls for a in attempts),
        "batch_saving_usd": sum((a.batch_saving_usd for a in attempts), ZERO_USD),
        "cache_read_tokens": sum(a.cache_read_tokens for a in attempts),
        "cache_write_tokens": sum(a.cache_write_tokens for a in attempts),
        "cache_saving_usd": sum((a.cache_saving_usd for a in attempts), ZERO_USD),
    }
