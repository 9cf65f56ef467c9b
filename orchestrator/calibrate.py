"""Calibration: every tier on a sample of your tasks, and where each one fails.

The field's advice, built in: run every tier on a sample of real tasks and look at where
each fails. :func:`calibrate` runs a plan (a file of tasks, or a sample of recorded tasks,
see :func:`sample_tasks`) once on the top tier, then once on each cheaper tier, one attempt
per task and no escalation. The top tier's accepted answers are the reference: a cheaper
tier's answer that passes the task's own checks is compared with it (equal data, equal
short labels; for other text a judge on the top tier decides whether the two say the same,
paid for like any judge). So each
answer of a cheaper tier is one of

* **agreed**: passed its checks and says what the top tier said;
* **caught**: rejected by the task's own checks (the engine would have escalated it);
* **missed**: passed its checks but contradicts the top tier: a silent failure;
* **unchecked**: no reference (the top tier's answer did not pass) or an error.

:class:`CalibrationReport` gives that per family of task and tier (the failure shape: "the
failure shape tells you more than the success rate"), with each tier's silent-failure rate
and the share of its wrong answers the checks catch. The runs are ordinary runs: recorded
by the engine's listeners (a store), so a :class:`~orchestrator.routing.CalibratedRouter`
learning from the store learns their rejections and their catch rate (their attempts'
``route_reason`` starts with :data:`CALIBRATION_ROUTE`), and their cost is every other run's.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.citations import PassageLookup
from orchestrator.engine import Engine
from orchestrator.events import Listener
from orchestrator.exceptions import UserError
from orchestrator.models.base import ModelClient
from orchestrator.node import Node, default_prompt, node_from_task, same_answer
from orchestrator.plan import Plan, Task
from orchestrator.pricing import USD, ZERO_USD
from orchestrator.results import NodeResult, NodeStatus, RunResult, RunStatus, Verdict
from orchestrator.routing.features import task_family
from orchestrator.routing.rules import (
    CALIBRATION_ROUTE,
    REFERENCE_CHECK,
    RouteDecision,
    RouteRequest,
)
from orchestrator.store.base import RunStore
from orchestrator.tiers import TierLadder
from orchestrator.tool import Tool
from orchestrator.verifier import JudgeRequest, VerificationContext

__all__ = ["CALIBRATION_ROUTE", "CalibrationReport", "FailureShape", "calibrate", "sample_tasks"]

REFERENCE = REFERENCE_CHECK
NO_REFERENCE = "no reference answer"

_LABEL = 40  # one-line answers up to this long are labels (a letter, a number): equal or not


class FailureShape(BaseModel):
    """How one tier did on one family of tasks."""

    model_config = ConfigDict(extra="forbid")

    family: str
    tier: str
    tasks: int = 0
    agreed: int = 0
    """Passed its checks and said what the top tier said (the top tier: passed)."""
    caught: int = 0
    """Rejected by the task's own checks."""
    missed: int = 0
    """Passed its checks, contradicted the top tier: silently wrong."""
    unchecked: int = 0
    """No reference to compare with, or the attempt errored."""
    cost_usd: USD = ZERO_USD

    @property
    def silent_rate(self) -> float:
        """Share of the checked answers that were silently wrong."""
        checked = self.agreed + self.caught + self.missed
        return self.missed / checked if checked else 0.0

    @property
    def catch_rate(self) -> float | None:
        """Share of the wrong answers the checks rejected (``None``: none was wrong)."""
        wrong = self.caught + self.missed
        return self.caught / wrong if wrong else None


class CalibrationReport(BaseModel):
    """Every tier on the same tasks: the failure shape, per family of task and tier."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[str]
    """The tiers run, cheapest first; the last is the reference."""
    rows: list[FailureShape] = Field(default_factory=list)
    run_ids: dict[str, str] = Field(default_factory=dict)
    """Each tier's run, by tier name (recorded like any run)."""
    cost_usd: USD = ZERO_USD
    simulated: bool = False
    """True when any answer came from a simulator or test double, not a model."""
    stopped: str | None = None
    """Why calibration stopped before every tier ran (the budget), else ``None``."""

    def totals(self) -> list[FailureShape]:
        """One row per tier, over every family."""
        out: dict[str, FailureShape] = {}
        for row in self.rows:
            total = out.setdefault(row.tier, FailureShape(family="(all)", tier=row.tier))
            for name in ("tasks", "agreed", "caught", "missed", "unchecked", "cost_usd"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
        return [out[t] for t in self.tiers if t in out]


class ReferenceCheck:
    """Passes an answer that says what the reference tier's answer to the task said."""

    name = REFERENCE

    def __init__(self, answers: Mapping[str, Any], tier: str) -> None:
        self.answers, self.tier = answers, tier

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Equal text or data passes; a long text is judged on the reference tier."""
        if context.task.id not in self.answers:
            return Verdict(passed=True, reason=NO_REFERENCE, verifier=self.name)
        reference = self.answers[context.task.id]
        if same_answer(output, reference):
            return Verdict(passed=True, reason=f"says what {self.tier} said", verifier=self.name)
        texts = isinstance(output, str) and isinstance(reference, str)
        if not texts or _label(output, reference):
            return Verdict(passed=False, reason=f"differs from {self.tier}'s answer",
                           verifier=self.name)  # fmt: skip
        verdict = await context.judge(
            JudgeRequest(
                criteria="The answer says the same as this reference answer on every point "
                f"that matters (wording and order aside):\n\n{reference}",
                answer=output,
                tier=self.tier,
            )
        )
        return Verdict(passed=verdict.passed, reason=verdict.reason, verifier=self.name)


def _label(*answers: str) -> bool:
    return all(len(a) <= _LABEL and "\n" not in a.strip() for a in answers)


class _Pinned:
    """Starts every task on one tier (a calibration run)."""

    def __init__(self, index: int, reason: str) -> None:
        self.index, self.reason = index, reason

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        tier = ladder[self.index]
        covered = not request.needs.shortfalls(tier.capabilities, tier.context_window)
        return RouteDecision(self.index, covered, self.reason)


class _Checked:
    """A plan whose nodes also pass a :class:`ReferenceCheck` after their own checks."""

    def __init__(self, plan: Plan, check: ReferenceCheck, passages: PassageLookup | None):
        self.plan, self.check, self.passages = plan, check, passages

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        nodes = [node_from_task(task, passages=self.passages) for task in self.plan.tasks]
        return self.plan, [replace(n, verifiers=(*n.verifiers, self.check)) for n in nodes]


async def calibrate(
    client: ModelClient,
    ladder: TierLadder,
    plan: Plan,
    *,
    listeners: Sequence[Listener] = (),
    tools: Iterable[Tool | Any] = (),
    passages: PassageLookup | None = None,
    budget_usd: Decimal | None = None,
    max_concurrency: int = 16,
) -> CalibrationReport:
    """Run ``plan`` on every tier of ``ladder`` (the top first) and compare the answers.

    ``budget_usd`` covers all the runs: each runs with what the earlier ones left, and
    calibration stops (``stopped`` says so) when nothing is left.
    """
    top = len(ladder) - 1
    report = CalibrationReport(tiers=[t.name for t in ladder.tiers])
    spent = ZERO_USD
    reference: dict[str, Any] = {}
    order = [top, *range(top)]
    for index in order:
        tier = ladder[index]
        left = None if budget_usd is None else budget_usd - spent
        if left is not None and left <= 0:
            report.stopped = f"the budget ran out before {tier.name} ran"
            break
        is_reference = index == top
        reason = (
            f"{CALIBRATION_ROUTE}{'reference, ' if is_reference else ''}every task on {tier.name}"
        )
        engine = Engine(
            client, ladder, router=_Pinned(index, reason), listeners=listeners, tools=tools,
            passages=passages,
        )  # fmt: skip
        named = plan.model_copy(update={"goal": f"calibration on {tier.name}: {plan.goal}"})
        work: Plan | _Checked = (
            named
            if is_reference
            else _Checked(named, ReferenceCheck(reference, tier.name), passages)
        )
        result = await engine.run(
            work, max_attempts=1, budget_usd=left, max_concurrency=max_concurrency,
            max_tier=tier.name,
        )  # fmt: skip
        spent += result.cost_usd
        report.run_ids[tier.name] = result.run_id
        report.simulated = report.simulated or result.simulated
        if is_reference:
            reference.update(_accepted(result))
        report.rows.extend(_shapes(result, tier.name, reference=is_reference))
        if result.status is RunStatus.BUDGET_EXHAUSTED:
            report.stopped = f"the budget ran out during {tier.name}'s run"
            break
    report.cost_usd = spent
    report.rows.sort(key=lambda r: (r.family, report.tiers.index(r.tier)))
    return report


def _accepted(result: RunResult) -> dict[str, Any]:
    return {n.id: n.output for n in result.nodes if n.status is NodeStatus.SUCCEEDED}


def _shapes(result: RunResult, tier: str, *, reference: bool) -> list[FailureShape]:
    rows: dict[str, FailureShape] = defaultdict(lambda: FailureShape(family="", tier=tier))
    for node in result.nodes:
        if node.final_tier == "python" or not node.attempts:
            continue
        row = rows[task_family(node.id)]
        row.family = task_family(node.id)
        row.tasks += 1
        row.cost_usd += node.cost_usd
        _count(row, node, reference=reference)
    return list(rows.values())


def _count(row: FailureShape, node: NodeResult, *, reference: bool) -> None:
    verdict = node.attempts[0].verdict
    if node.attempts[0].error is not None or verdict is None:
        row.unchecked += 1
    elif verdict.passed:
        if reference or verdict.reason != NO_REFERENCE:
            row.agreed += 1
        else:
            row.unchecked += 1
    elif verdict.verifier == REFERENCE:
        row.missed += 1
    else:
        row.caught += 1


async def sample_tasks(
    store: RunStore, *, size: int, runs: int = 500, seed: int = 0
) -> Plan | None:
    """A plan of ``size`` tasks drawn from the last ``runs`` recorded runs (``None``: none).

    Each drawn task stands alone: its inputs (the outputs its dependencies had in that run)
    are written into its instruction as the engine's prompt would show them, its checks and
    needs kept. Tasks whose inputs are not all recorded, and Python tasks, are not drawn;
    tasks of the same instruction and inputs are drawn once.
    """
    if size < 1:
        raise UserError(f"the sample size must be at least 1, got {size}")
    seen: dict[str, Task] = {}
    for summary in await store.list_runs(runs):
        stored = await store.load_run(summary.run_id)
        if stored.plan is None or summary.goal.startswith("calibration"):
            continue
        outputs = {i: n.output for i, n in stored.nodes.items() if n.status is NodeStatus.SUCCEEDED}
        for task in stored.plan.tasks:
            node = stored.nodes.get(task.id)
            if node is None or node.final_tier == "python" or not node.attempts:
                continue
            if any(d not in outputs for d in task.depends_on):
                continue
            prompt = default_prompt(task, {d: outputs[d] for d in task.depends_on})
            standalone = task.model_copy(update={"instruction": prompt, "depends_on": ()})
            seen.setdefault(prompt, standalone)
    if not seen:
        return None
    drawn = random.Random(seed).sample(
        sorted(seen.values(), key=lambda t: t.id), min(size, len(seen))
    )
    ids: dict[str, int] = defaultdict(int)
    tasks = []
    for task in drawn:  # ids stay unique (the same task id from two runs) and keep their family
        ids[task.id] += 1
        suffix = "" if ids[task.id] == 1 else f"_{ids[task.id]}"
        tasks.append(task.model_copy(update={"id": f"{task.id}{suffix}"}))
    return Plan(goal="calibration sample", tasks=tasks)
