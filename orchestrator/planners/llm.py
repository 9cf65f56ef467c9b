"""The LLM planner: goal -> validated :class:`~orchestrator.plan.Plan`, with a repair loop.

The model answers through structured output into :class:`PlanDraft` (a compact schema made
for models; it becomes a full ``Plan``). A draft that is not valid JSON, does not fit the
schema, or fails plan validation (cycle, unknown dependency, unknown tool or capability,
empty, too many tasks) goes back to the model with every problem listed, a bounded number
of times; then :class:`~orchestrator.exceptions.PlanValidationError` lists every problem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.budget import Budget, Meter, collect_earlier
from orchestrator.capabilities import CAPABILITY_DIMENSIONS, LEVEL_MEANINGS, MAX_LEVEL, Needs
from orchestrator.dag import plan_problems
from orchestrator.exceptions import (
    BudgetExhausted,
    ModelAPIError,
    ModelAPIUserError,
    PlanProblem,
    PlanValidationError,
)
from orchestrator.models.base import Message, ModelClient, ModelRequest, ModelResponse
from orchestrator.models.instrumented import instrumented
from orchestrator.plan import NonEmptySpec, Plan, RequiredSectionsSpec, Task, VerifierSpec
from orchestrator.pricing import ZERO_USD, Usage
from orchestrator.results import Attempt, Outcome, PlanningRecord, Verdict
from orchestrator.spend import settle
from orchestrator.tiers import Tier, TierLadder
from orchestrator.tool import Tool, Toolset

__all__ = ["AttemptHook", "DraftTask", "LLMPlanner", "PlanDraft", "PlanningReport"]


class DraftNeeds(BaseModel):
    """Capability levels (0-3) and context size a task needs."""

    model_config = ConfigDict(extra="forbid")

    reasoning: int = 0
    long_context: int = 0
    coding: int = 0
    tool_use: int = 0
    context_tokens: int = 0


class DraftTask(BaseModel):
    """One task as the planner model writes it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="short unique id, letters, digits and _ only")
    instruction: str = Field(description="what to do, self-contained")
    depends_on: list[str] = Field(default_factory=list, description="ids whose outputs it needs")
    needs: DraftNeeds = Field(default_factory=DraftNeeds)
    tools: list[str] = Field(default_factory=list, description="tools it may call")
    required_sections: list[str] = Field(
        default_factory=list, description="Markdown sections its answer must have"
    )


class PlanDraft(BaseModel):
    """A plan as the planner model writes it (schema title ``Plan``)."""

    model_config = ConfigDict(extra="forbid", title="Plan")

    tasks: list[DraftTask]
    output_task: str | None = Field(default=None, description="the task whose output is final")


AttemptHook = Callable[[Attempt], Awaitable[None]]
"""Awaited with a planning round's attempt record whenever it changes: when the round
starts, when a call's worst case is reserved (before the request leaves) and when it ends."""


@dataclass
class PlanningReport:
    """What planning cost and how many rounds it took.

    Attributes:
        tier: The tier that planned.
        rounds: Rounds made (1 + repairs + rounds the API failed).
        usage: Tokens of every call.
        cost_usd: Their cost.
        wasted_cost_usd: The cost of rounds whose plan was rejected or that failed.
        problems: The problems of each rejected round, in order.
        simulated: Whether any answer came from a simulator.
        attempts: Every round as an attempt record (what a store keeps).
        error: Why planning failed, if it did.
    """

    tier: str
    model: str = ""
    rounds: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = ZERO_USD
    wasted_cost_usd: Decimal = ZERO_USD
    problems: list[list[str]] = field(default_factory=list)
    simulated: bool = False
    wall_s: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None

    def record(self) -> PlanningRecord:
        """The report as the run result carries it."""
        return PlanningRecord(
            tier=self.tier, model=self.model, rounds=self.rounds,
            input_tokens=self.usage.prompt_tokens, output_tokens=self.usage.output_tokens,
            cost_usd=self.cost_usd, wasted_cost_usd=self.wasted_cost_usd,
            problems=[list(p) for p in self.problems], simulated=self.simulated,
            wall_s=self.wall_s, error=self.error,
        )  # fmt: skip


class LLMPlanner:
    """Asks a model for a plan and repairs it until it validates.

    Every round is a model call reserved in ``budget`` like any other, so planning never
    spends past the run's budget: a budget that cannot cover even the first round's worst
    case fails with :class:`~orchestrator.exceptions.BudgetExhausted` before anything is
    sent. A round the API fails (after the client's own retries) is tried again, up to
    ``max_api_failures`` times, with the same conversation.

    Args:
        client: The model client.
        ladder: The ladder; the planner runs on ``tier``.
        tier: Tier name to plan on; default: the cheapest tier with reasoning 2 or more.
        tools: Tools tasks may use (their names and descriptions go into the prompt); a
            toolset (an MCP server) gives the tools it has when the planner runs.
        max_tasks: Largest plan accepted.
        max_repairs: Repair rounds after the first answer.
        budget: Budget charged for planning calls (default: unlimited); the run's, when
            planning is part of a run.
        max_api_failures: Rounds the API may fail before planning gives up.
        max_output_tokens: ``max_tokens`` of each round (at most the tier's): what the
            budget reserves for the plan's text. A plan of 20 tasks fits in the default.
        cache: Whether its requests mark prompt-cache breakpoints (the run's ``cache``).
        batch: Send its rounds in Message Batches at the batch price (the run's ``batch``:
            work that can wait waits for its plan too).
    """

    def __init__(
        self,
        client: ModelClient,
        ladder: TierLadder,
        *,
        tier: str | None = None,
        tools: Sequence[Tool | Toolset] = (),
        max_tasks: int = 20,
        max_repairs: int = 2,
        budget: Budget | None = None,
        max_api_failures: int = 2,
        max_output_tokens: int = 4096,
        cache: bool = True,
        batch: bool = False,
    ) -> None:
        self.client = instrumented(client)  # a chat span per round
        self.ladder = ladder
        self.tier = ladder.get(tier) if tier else _default_tier(ladder)
        self.tools = list(tools)
        self.max_tasks = max_tasks
        self.max_repairs = max_repairs
        self.max_api_failures = max_api_failures
        self.max_output_tokens = min(max_output_tokens, self.tier.max_output_tokens)
        self.budget = budget or Budget()
        self.cache = cache
        self.batch = batch
        self.last_report: PlanningReport | None = None

    async def plan(
        self, goal: str, context: str | None = None, *, on_attempt: AttemptHook | None = None
    ) -> Plan:
        """Return a validated plan for ``goal``.

        Args:
            goal: What the plan is for.
            context: Extra instructions for the planner model.
            on_attempt: Awaited with each round's attempt record as it changes.

        Raises:
            PlanValidationError: If no round produced a valid plan (last round's problems).
            ModelAPIError: If the API failed more than ``max_api_failures`` rounds, or
                failed in a way retrying cannot fix (a bad key, a bad request).
            BudgetExhausted: If the budget cannot cover the next round's worst case.
        """
        report = PlanningReport(tier=self.tier.name, model=self.tier.model)
        self.last_report = report
        started = anyio.current_time()
        try:
            return await self._rounds(goal, context, report, on_attempt or _ignore)
        except (PlanValidationError, ModelAPIError, BudgetExhausted) as exc:
            report.error = str(exc)
            raise
        finally:
            report.wall_s = anyio.current_time() - started

    async def _rounds(
        self, goal: str, context: str | None, report: PlanningReport, on_attempt: AttemptHook
    ) -> Plan:
        messages = [Message(role="user", content=_goal_message(goal, context))]
        problems: list[PlanProblem] = []
        repairs = failures = 0
        while True:
            attempt = Attempt(
                number=len(report.attempts) + 1, tier=self.tier.name, model=self.tier.model,
                started_at=_now(), route_reason="planning" if not repairs else "repair",
            )  # fmt: skip
            report.attempts.append(attempt)
            response = await self._round(messages, attempt, report, on_attempt)
            if response is None:  # the API failed this round
                failures += 1
                if failures > self.max_api_failures:
                    raise ModelAPIError(
                        f"the API failed {failures} planning rounds; the last: {attempt.error}",
                        error_type=attempt.error_type or "api_error",
                    )
                continue
            plan, problems = self._check(goal, response.data)
            if plan is not None:
                attempt.verdict = Verdict(passed=True, verifier="planner", reason="valid plan")
                await on_attempt(attempt)
                return plan
            listed = [str(p) for p in problems]
            attempt.verdict = Verdict(passed=False, verifier="planner", reason="\n".join(listed))
            report.wasted_cost_usd += attempt.cost_usd
            report.problems.append(listed)
            await on_attempt(attempt)
            repairs += 1
            if repairs > self.max_repairs:
                raise PlanValidationError(problems)
            messages += [
                Message(role="assistant", content=response.text or "(empty answer)"),
                Message(role="user", content=_repair_message(problems)),
            ]

    async def _round(
        self,
        messages: list[Message],
        attempt: Attempt,
        report: PlanningReport,
        on_attempt: AttemptHook,
    ) -> ModelResponse | None:
        """One model call: the response, or ``None`` if the API failed (retryably)."""

        async def reserved(meter: Meter) -> None:
            attempt.cost_usd, attempt.in_flight_usd = meter.cost_usd, meter.in_flight_usd
            attempt.batch_pending = tuple(meter.pending)  # stored before results are awaited
            await on_attempt(attempt)

        meter = Meter(self.tier, self.budget, on_reserve=reserved)
        collect_earlier(meter, on_attempt)  # resumed: a round a killed process batched
        await on_attempt(attempt)
        try:
            response = await self.client.complete(self._request(messages), meter)
            attempt.simulated = response.simulated
            return response
        except ModelAPIUserError as exc:  # retrying cannot fix it
            attempt.error, attempt.error_type = str(exc), exc.error_type
            raise
        except ModelAPIError as exc:
            attempt.error, attempt.error_type = str(exc), exc.error_type
            return None
        except BudgetExhausted as exc:
            attempt.error, attempt.error_type = str(exc), Outcome.BUDGET_EXHAUSTED
            raise
        finally:
            settle(attempt, [meter])
            report.rounds += 1
            report.usage = report.usage + meter.usage
            report.cost_usd += meter.cost_usd
            report.simulated = report.simulated or attempt.simulated
            if attempt.error is not None:
                report.wasted_cost_usd += meter.cost_usd
                with anyio.CancelScope(shield=True):
                    await on_attempt(attempt)

    def _request(self, messages: list[Message]) -> ModelRequest:
        return ModelRequest(
            tier=self.tier,
            system=system_prompt(self._catalogue(), self.max_tasks),
            messages=messages,
            max_output_tokens=self.max_output_tokens,
            output_schema=PlanDraft.model_json_schema(),
            purpose="plan",
            cache=self.cache,
            batch=self.batch,
        )

    def _catalogue(self) -> list[Tool]:
        """The tools, a toolset's (an open MCP server's) in its place."""
        return [t for i in self.tools for t in (i.tools if isinstance(i, Toolset) else [i])]

    def _check(self, goal: str, data: object) -> tuple[Plan | None, list[PlanProblem]]:
        if data is None:
            return None, [
                PlanProblem(None, "the answer was not JSON; answer with the plan JSON only")
            ]
        try:
            draft = PlanDraft.model_validate(data)
        except ValidationError as exc:
            return None, [
                PlanProblem(None, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                for e in exc.errors(include_url=False)
            ]
        plan, problems = to_plan(goal, draft)
        if plan is None:
            return None, problems
        problems = plan_problems(
            plan, known_tools={t.name for t in self._catalogue()}, max_tasks=self.max_tasks
        )
        return (None, problems) if problems else (plan, [])


async def _ignore(attempt: Attempt) -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def to_plan(goal: str, draft: PlanDraft) -> tuple[Plan | None, list[PlanProblem]]:
    """Turn a draft into a plan; field problems (bad ids, levels out of range) are named."""
    tasks, problems = [], []
    for item in draft.tasks:
        verify: list[VerifierSpec] = [NonEmptySpec()]
        if item.required_sections:
            verify.append(RequiredSectionsSpec(sections=item.required_sections))
        try:
            needs = Needs.model_validate(item.needs.model_dump())
            tasks.append(
                Task(
                    id=item.id, instruction=item.instruction, depends_on=item.depends_on,
                    needs=needs, tools=item.tools, verify=verify,
                )
            )  # fmt: skip
        except ValidationError as exc:
            problems += [
                PlanProblem(item.id, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                for e in exc.errors(include_url=False)
            ]
    if problems:
        return None, problems
    return Plan(goal=goal, tasks=tasks, output_task=draft.output_task), []


def _default_tier(ladder: TierLadder) -> Tier:
    for tier in ladder.tiers:
        if tier.capabilities.reasoning >= 2:
            return tier
    return ladder[len(ladder) - 1]


def system_prompt(tools: Sequence[Tool], max_tasks: int) -> str:
    """The planner's system prompt: the job, the capability vocabulary, the tools."""
    dims = "\n".join(f"- {name}: {what}" for name, what in CAPABILITY_DIMENSIONS.items())
    levels = "\n".join(f"- {level}: {meaning}" for level, meaning in LEVEL_MEANINGS.items())
    catalogue = "\n".join(f"- {t.name}: {t.description}" for t in tools) or "- (no tools)"
    return (
        "You are a planner. Break the user's goal into a plan: a DAG of tasks that other "
        "models will carry out.\n\n"
        "Maximise independent work: prefer several parallel sub-questions that each depend "
        "on nothing, then one task that synthesises them, over a chain where each step waits "
        "for the previous one. Every task must be self-contained: its instruction is all its "
        "model sees besides the outputs of the tasks it depends on.\n\n"
        f"Use at most {max_tasks} tasks. Ids are short, unique, letters, digits and _.\n\n"
        f"Annotate each task's needs, a level 0-{MAX_LEVEL} per dimension (be honest: cheap "
        "models run low-need tasks, strong models run high-need ones):\n"
        f"{dims}\nLevels:\n{levels}\n"
        "- context_tokens: tokens of input the task must read\n\n"
        f"Tools a task may list (only these):\n{catalogue}\n\n"
        "Answer with the plan as JSON only."
    )


def _goal_message(goal: str, context: str | None) -> str:
    text = f"Goal: {goal}"
    if context:
        text += f"\n\nContext:\n{context}"
    return text


def _repair_message(problems: Sequence[PlanProblem]) -> str:
    listed = "\n".join(f"- {p}" for p in problems)
    return f"The plan has these problems:\n{listed}\nReturn a corrected plan as JSON only."
