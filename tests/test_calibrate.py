"""Calibration: every tier on the same tasks; what the checks catch and what they miss."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from orchestrator import CalibratedRouter, Needs, Plan, Task, TierLadder, default_ladder
from orchestrator.calibrate import calibrate, sample_tasks
from orchestrator.cli import main
from orchestrator.models.base import ModelRequest
from orchestrator.plan import NonEmptySpec
from orchestrator.routing import RouteRequest
from orchestrator.store.listener import StoreListener
from orchestrator.store.memory import MemoryStore
from orchestrator.testing import FunctionModel

pytestmark = pytest.mark.anyio

COUNT = 20
PLAN = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"


def two_tiers() -> TierLadder:
    ladder = default_ladder()
    return TierLadder(tiers=(ladder.get("haiku"), ladder.get("opus")))


def answer(request: ModelRequest) -> str:
    """Haiku: hard tasks empty (caught by non_empty) or wrong (passes it); Opus: all right."""
    task = request.task_id or ""
    number = int(task.rsplit("_", 1)[1])
    if task.startswith("hard") and request.tier.name == "haiku":
        return "" if number % 2 else f"wrong answer to {task}"
    return f"right answer to {task}"


def plan() -> Plan:
    tasks = [
        Task(id=f"{family}_{i}", instruction=f"A {family} question, number {i}.",
             needs=Needs(reasoning=1), verify=(NonEmptySpec(),), max_output_tokens=16)
        for family in ("easy", "hard") for i in range(COUNT)
    ]  # fmt: skip
    return Plan(goal="questions", tasks=tasks)


async def test_the_failure_shape_separates_what_the_checks_catch_from_what_they_miss() -> None:
    store = MemoryStore()
    with anyio.fail_after(30):
        report = await calibrate(
            FunctionModel(answer), two_tiers(), plan(), listeners=[StoreListener(store)]
        )
    shape = {(row.family, row.tier): row for row in report.rows}
    easy, hard, top = shape["easy", "haiku"], shape["hard", "haiku"], shape["hard", "opus"]
    assert (easy.agreed, easy.caught, easy.missed) == (COUNT, 0, 0)
    assert (hard.agreed, hard.caught, hard.missed) == (0, COUNT // 2, COUNT // 2)
    assert hard.silent_rate == 0.5
    assert hard.catch_rate == 0.5
    assert (top.agreed, top.tasks) == (COUNT, COUNT)
    assert report.simulated
    assert set(report.run_ids) == {"haiku", "opus"}
    assert report.cost_usd == sum((row.cost_usd for row in report.rows), Decimal(0)) > 0
    [haiku_total, opus_total] = report.totals()
    assert (haiku_total.tier, haiku_total.tasks, haiku_total.missed) == ("haiku", 2 * COUNT, 10)
    assert opus_total.tier == "opus"

    # The runs are recorded: a router learning from the store learns what the checks miss.
    router = CalibratedRouter(fit="inline", seed=0)
    await router.learn_from_store(store)
    assert router.quality is not None
    counted = (router.quality.caught, router.quality.silent)  # decayed counts: near 10 each
    assert counted == pytest.approx((COUNT // 2, COUNT // 2), rel=0.05)
    hard_task = RouteRequest.of(
        Needs(reasoning=1), "A hard question, number 99.", task_id="hard_99"
    )
    easy_task = RouteRequest.of(
        Needs(reasoning=1), "An easy question, number 99.", task_id="easy_99"
    )
    hard_estimate = router.estimates(hard_task, two_tiers())
    easy_estimate = router.estimates(easy_task, two_tiers())
    assert hard_estimate is not None
    assert easy_estimate is not None
    assert hard_estimate["haiku"] > easy_estimate["haiku"] + 0.1


async def test_the_budget_covers_every_tier_and_stops_calibration_when_spent() -> None:
    with anyio.fail_after(30):
        full = await calibrate(FunctionModel(answer), two_tiers(), plan())
        [_, reference] = full.totals()
        budget = reference.cost_usd / 2  # half of the reference run
        report = await calibrate(FunctionModel(answer), two_tiers(), plan(), budget_usd=budget)
    assert report.cost_usd <= budget
    assert report.stopped == "the budget ran out during opus's run"
    assert set(report.run_ids) == {"opus"}  # no cheaper tier ran past the budget
    [partial] = report.totals()
    assert 0 < partial.tasks < reference.tasks  # what ran is reported; what did not, is not


async def test_a_sample_of_recorded_tasks_stands_alone_with_its_inputs() -> None:
    store = MemoryStore()
    first = Task(id="outline", instruction="Outline the release.")
    second = Task(id="write", instruction="Write the notes.", depends_on=("outline",))
    from orchestrator import Engine

    def reply(request: ModelRequest) -> str:
        return f"the {request.task_id}"

    engine = Engine(FunctionModel(reply), listeners=[StoreListener(store, durability="sync")])
    with anyio.fail_after(30):
        await engine.run(Plan(goal="release", tasks=[first, second]))
        sample = await sample_tasks(store, size=5)
    assert sample is not None
    tasks = {task.id: task for task in sample.tasks}
    assert set(tasks) == {"outline", "write"}
    assert tasks["write"].depends_on == ()
    assert "Write the notes." in tasks["write"].instruction
    assert "the outline" in tasks["write"].instruction  # the input it had, as the prompt showed it


def test_calibrate_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert main(["calibrate", "--offline", "--home", home]) == 2
    assert "no recorded tasks" in capsys.readouterr().err
    assert main(["calibrate", "--offline", "--home", home, "--sample", "0"]) == 2
    assert "--sample" in capsys.readouterr().err
    assert main(["run", "--plan", str(PLAN), "--offline", "--home", home, "--json"]) == 0
    capsys.readouterr()
    plot = tmp_path / "shape.png"
    code = main(["calibrate", "--offline", "--home", home, "--json", "--plot", str(plot)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tiers"] == ["haiku", "sonnet", "opus"]
    assert report["simulated"] is True
    assert {row["tier"] for row in report["rows"]} == {"haiku", "sonnet", "opus"}
    assert plot.stat().st_size > 1000
    assert main(["runs", "--home", home, "--json"]) == 0
    goals = [run["goal"] for run in json.loads(capsys.readouterr().out)]
    assert sum(goal.startswith("calibration on ") for goal in goals) == 3  # recorded runs
