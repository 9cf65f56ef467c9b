"""The LLM planner: goal -> validated :class:`~orchestrator.plan.Plan`, with a repair loop.

The model answers through structured output into :class:`PlanDraft` (a compact schema made
for models; it becomes a full ``Plan``). A draft that is not valid JSON, does not fit the
schema, or fails plan validation (cycle, unknown dependency, unknown tool or capability,
empty, too many tasks) goes back to the model with every problem listed, a bounded number
of times; then :class:`~orchestrator.exceptions.PlanValidationError` lists every problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.budget import Budget, Meter
from orchestrator.capabilities import CAPABILITY_DIMENSIONS, LEVEL_MEANINGS, MAX_LEVEL, Needs
from orchestrator.dag import plan_problems
from orchestrator.exceptions import PlanProblem, PlanValidationError
from orchestrator.models.base import Message, ModelClient, ModelRequest
from orchestrator.plan import NonEmptySpec, Plan, RequiredSectionsSpec, Task, VerifierSpec
from orchestrator.pricing import Usage
from orchestrator.results import PlanningRecord
from orchestrator.tiers import Tier, TierLadder
from orchestrator.tool import Tool

__all__ = ["DraftTask", "LLMPlanner", "PlanDraft", "PlanningReport"]


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


@dataclass
class PlanningReport:
    """What planning cost and how many rounds it took.

    Attributes:
        tier: The tier that planned.
        rounds: Model calls made (1 + repairs).
        usage: Tokens of every call.
        cost_usd: Their cost.
        wasted_cost_usd: The cost of rounds whose plan was rejected.
        problems: The problems of each rejected round, in order.
        simulated: Whether any answer came from a simulator.
    """

    tier: str
    model: str = ""
    rounds: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    wasted_cost_usd: float = 0.0
    problems: list[list[str]] = field(default_factory=list)
    simulated: bool = False
    wall_s: float = 0.0

    def record(self) -> PlanningRecord:
        """The report as the run result carries it."""
        return PlanningRecord(
            tier=self.tier, model=self.model, rounds=self.rounds,
            input_tokens=self.usage.prompt_tokens, output_tokens=self.usage.output_tokens,
            cost_usd=self.cost_usd, wasted_cost_usd=self.wasted_cost_usd,
            problems=[list(p) for p in self.problems], simulated=self.simulated,
            wall_s=self.wall_s,
        )  # fmt: skip


class LLMPlanner:
    """Asks a model for a plan and repairs it until it validates.

    Args:
        client: The model client.
        ladder: The ladder; the planner runs on ``tier``.
        tier: Tier name to plan on; default: the cheapest tier with reasoning 2 or more.
        tools: Tools tasks may use (their names and descriptions go into the prompt).
        max_tasks: Largest plan accepted.
        max_repairs: Repair rounds after the first answer.
        budget: Budget charged for planning calls (default: unlimited).
    """

    def __init__(
        self,
        client: ModelClient,
        ladder: TierLadder,
        *,
        tier: str | None = None,
        tools: Sequence[Tool] = (),
        max_tasks: int = 20,
        max_repairs: int = 2,
        budget: Budget | None = None,
    ) -> None:
        self.client = client
        self.ladder = ladder
        self.tier = ladder.get(tier) if tier else _default_tier(ladder)
        self.tools = list(tools)
        self.max_tasks = max_tasks
        self.max_repairs = max_repairs
        self.budget = budget or Budget()
        self.last_report: PlanningReport | None = None

    async def plan(self, goal: str, context: str | None = None) -> Plan:
        """Return a validated plan for ``goal``.

        Raises:
            PlanValidationError: If no round produced a valid plan (last round's problems).
        """
        report = PlanningReport(tier=self.tier.name, model=self.tier.model)
        self.last_report = report
        started = anyio.current_time()
        try:
            return await self._rounds(goal, context, report)
        finally:
            report.wall_s = anyio.current_time() - started

    async def _rounds(self, goal: str, context: str | None, report: PlanningReport) -> Plan:
        messages = [Message(role="user", content=_goal_message(goal, context))]
        problems: list[PlanProblem] = []
        for _ in range(self.max_repairs + 1):
            meter = Meter(self.tier, self.budget)
            response = await self.client.complete(self._request(messages), meter)
            report.rounds += 1
            report.usage = report.usage + meter.usage
            report.cost_usd += meter.cost_usd
            report.simulated = report.simulated or response.simulated
            plan, problems = self._check(goal, response.data)
            if plan is not None:
                return plan
            report.wasted_cost_usd += meter.cost_usd
            report.problems.append([str(p) for p in problems])
            messages += [
                Message(role="assistant", content=response.text or "(empty answer)"),
                Message(role="user", content=_repair_message(problems)),
            ]
        raise PlanValidationError(problems)

    def _request(self, messages: list[Message]) -> ModelRequest:
        return ModelRequest(
            tier=self.tier,
            system=system_prompt(self.tools, self.max_tasks),
            messages=messages,
            max_output_tokens=self.tier.max_output_tokens,
            output_schema=PlanDraft.model_json_schema(),
            purpose="plan",
        )

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
            plan, known_tools={t.name for t in self.tools}, max_tasks=self.max_tasks
        )
        return (None, problems) if problems else (plan, [])


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
