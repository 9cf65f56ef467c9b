"""Properties of every run, whatever the plan, costs, concurrency, faults and budget.

Hypothesis draws a plan (a random DAG, some tasks checked for a section the model may
leave out), answer sizes, a fault rate, a concurrency cap and a budget; the goal is
planned inside the run by the LLM planner (its answer is the drawn plan), then run. For
every draw: the run ends, never spends past its budget (planning included), accounts for
every node (succeeded, failed, not run or skipped, each with its reason), and the store
holds exactly what the engine returned.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator import Budget, Engine, Goal, NodeStatus, Plan, RunResult, RunStatus
from orchestrator.exceptions import ModelAPIError
from orchestrator.goal import AttemptHook
from orchestrator.models.base import ModelRequest
from orchestrator.planners.llm import LLMPlanner
from orchestrator.results import PLANNING_NODE
from orchestrator.store import MemoryStore, StoreListener
from orchestrator.testing import FunctionModel
from orchestrator.tiers import default_ladder

EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Draw:
    """One random run."""

    tasks: list[dict[str, Any]]
    answer_chars: int
    section_rate: float
    fault_rate: float
    concurrency: int
    budget: Decimal | None
    seed: int


@st.composite
def draws(draw: st.DrawFn) -> Draw:
    size = draw(st.integers(1, 10))
    tasks = []
    for index in range(size):
        depends_on = (
            draw(st.lists(st.integers(0, index - 1), unique=True, max_size=3)) if index else []
        )
        checked = draw(st.booleans())
        tasks.append(
            {
                "id": f"t{index}",
                "instruction": f"Task {index}.",
                "depends_on": [f"t{dep}" for dep in depends_on],
                "needs": {"reasoning": draw(st.integers(0, 3))},
                "required_sections": ["Done"] if checked else [],
            }
        )
    budget = draw(
        st.none() | st.decimals(min_value=0, max_value=Decimal("0.6"), places=6, allow_nan=False)
    )
    return Draw(
        tasks=tasks,
        answer_chars=draw(st.integers(1, 20_000)),
        section_rate=draw(st.floats(0, 1)),
        fault_rate=draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])),
        concurrency=draw(st.integers(1, 8)),
        budget=budget,
        seed=draw(st.integers(0, 2**16)),
    )


def _model(spec: Draw) -> FunctionModel:
    rng = random.Random(spec.seed)

    def answer(request: ModelRequest) -> str:
        if rng.random() < spec.fault_rate:
            raise ModelAPIError("injected fault", error_type="overloaded_error")
        if request.purpose == "plan":
            return json.dumps({"tasks": spec.tasks})
        text = "x" * rng.randint(1, spec.answer_chars)
        return text + ("\n## Done\nyes" if rng.random() < spec.section_rate else "")

    return FunctionModel(answer)


async def _run(spec: Draw) -> tuple[RunResult, MemoryStore, Budget]:
    store = MemoryStore()
    client = _model(spec)
    ladder = default_ladder()
    budgets: list[Budget] = []

    async def plan(goal: str, budget: Budget, on_attempt: AttemptHook) -> Plan:
        budgets.append(budget)
        planner = LLMPlanner(client, ladder, budget=budget, max_tasks=20)
        return await planner.plan(goal, on_attempt=on_attempt)

    engine = Engine(client, ladder, listeners=[StoreListener(store)])
    run = engine.prepare(
        Goal("a random plan", plan),
        budget_usd=spec.budget,
        max_concurrency=spec.concurrency,
    )
    with anyio.fail_after(30):  # the run ends: nothing waits for ever
        result = await run.execute()
    return result, store, run.budget


@EXAMPLES
@given(spec=draws())
def test_every_run_ends_within_budget_and_accounts_for_every_node(spec: Draw) -> None:
    result, store, budget = anyio.run(_run, spec)
    event(f"status {result.status.value}")
    event(f"planning {'failed' if result.planning and result.planning.error else 'ok'}")

    # Never past the budget, planning included; the budget's tally is the result's.
    if spec.budget is not None:
        assert result.cost_usd <= spec.budget
    assert budget.spent_usd == result.cost_usd
    assert budget.reserved_usd == 0
    node_costs = sum((a.cost_usd for n in result.nodes for a in n.attempts), Decimal(0))
    assert result.planning is not None
    assert result.cost_usd == node_costs + result.planning.cost_usd

    # Every node is accounted for, with a reason when it did not succeed.
    if result.planning.error is None:
        assert [n.id for n in result.nodes] == [t["id"] for t in spec.tasks]
    else:
        assert result.nodes == []
        assert result.status in (RunStatus.FAILED, RunStatus.BUDGET_EXHAUSTED)
    by_id = {n.id: n for n in result.nodes}
    for node in result.nodes:
        assert node.status in set(NodeStatus)
        if node.status is NodeStatus.SUCCEEDED:
            assert node.attempts[-1].passed
        else:
            assert node.reason
        if node.status is NodeStatus.SKIPPED:
            assert any(by_id[dep].status is not NodeStatus.SUCCEEDED for dep in node.depends_on)
        for attempt in node.attempts:
            assert attempt.finished_at is not None
            assert attempt.in_flight_usd == 0
    if all(n.status is NodeStatus.SUCCEEDED for n in result.nodes) and result.nodes:
        assert result.status is RunStatus.SUCCEEDED

    # The store agrees with the result.
    stored = anyio.run(store.load_run, result.run_id)
    assert stored.result == result
    assert stored.summary.status == result.status.value
    assert stored.summary.cost_usd == result.cost_usd
    stored_planning = stored.attempts.get(PLANNING_NODE, [])
    assert len(stored_planning) == result.planning.rounds
