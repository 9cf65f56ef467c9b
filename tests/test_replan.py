"""Replanning: tasks that fail for good get the planner to revise the rest of the plan.

Through the real client against the simulator, which answers a revision brief as a
planner would (keeping what succeeded, narrowing what failed: docs/sim.md). The runs are
capped at the cheapest tier, so that tasks do fail on every tier they may try.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator import RunConfig
from orchestrator.cli import main
from orchestrator.event_json import event_json
from orchestrator.events import Event, PlanRevised
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.replan import brief, merge
from orchestrator.research import ResearchAgent
from orchestrator.results import NodeResult, NodeStatus, RunResult, RunStatus
from orchestrator.store import MemoryStore, StoreListener
from orchestrator.tiers import default_ladder
from orchestrator.tools.corpus import Corpus
from orchestrator.wire import parse_revision
from orchestrator_sim import SimConfig, serve

GOAL = "How do Python context managers handle exceptions?"


async def _research(
    replan: int, events: list[Event], store: MemoryStore, resume: str | None = None
) -> RunResult:
    corpus = await Corpus.load_default()
    async with (
        serve(SimConfig(seed=0, time_scale=0)) as sim,
        AnthropicClient(api_key="offline-test") as client,
    ):
        agent = ResearchAgent(
            client, corpus, default_ladder().with_endpoint(sim.base_url),
            config=RunConfig(replan=replan, max_tier="haiku"),
            listeners=[events.append, StoreListener(store)],
        )  # fmt: skip
        if resume is None:
            return await agent.run(GOAL)
        stored = await store.load_run(resume)  # as `orchestrator resume` does: its plan
        assert stored.plan is not None
        return await agent.engine.prepare(stored.plan, resume=stored).execute()


@pytest.mark.anyio
async def test_tasks_that_fail_for_good_are_replanned_keeping_what_succeeded() -> None:
    events: list[Event] = []
    store = MemoryStore()
    without = await _research(0, [], MemoryStore())
    assert without.status is RunStatus.PARTIAL  # q3 fails on haiku; the rest is skipped

    result = await _research(3, events, store)
    assert result.status is RunStatus.SUCCEEDED
    assert result.replans == 3
    revisions = [e for e in events if isinstance(e, PlanRevised)]
    assert len(revisions) == 3
    first = revisions[0]
    told = parse_revision(first.brief)
    assert told is not None
    kept, failed, _ = told
    assert [t[0] for t in failed] == ["q3"]  # what failed, and why, is what it was told
    assert "cited passage(s) that do not exist" in first.brief
    document = event_json(first)  # on the event stream and --json-stream
    assert (document["type"], document["replaced"]) == (
        "plan_revised",
        ["q3", "synthesis", "check"],
    )
    # What succeeded ran once, before any revision; the replaced nodes keep their spend.
    for task_id, _, _ in kept:
        assert len(result.node(task_id).attempts) == 1
    assert {n.id for n in result.replaced} >= {"q3", "synthesis", "check"}
    spent = sum(
        (a.cost_usd for n in (*result.nodes, *result.replaced) for a in n.attempts), Decimal(0)
    )
    assert result.planning is not None
    assert result.planning.rounds == 4  # the plan and its three revisions
    assert result.cost_usd == spent + result.planning.cost_usd
    # The store holds the revised plan: a resume runs on what the run ran on.
    stored = await store.load_run(result.run_id)
    assert stored.plan is not None
    assert [t.id for t in stored.plan.tasks] == [n.id for n in result.nodes]
    again = await _research(3, [], store, resume=result.run_id)
    assert again.status is RunStatus.SUCCEEDED  # nothing left to run, nothing paid again
    assert again.cost_usd == result.cost_usd
    assert {n.id for n in again.replaced} == {n.id for n in result.replaced}


def test_merge_keeps_what_succeeded_as_it_ran_whatever_the_revision_says() -> None:
    from orchestrator import Plan, Task

    plan = Plan(goal="g", tasks=[
        Task(id="a", instruction="first"),
        Task(id="b", instruction="second", depends_on=("a",)),
        Task(id="c", instruction="third", depends_on=("b",)),
    ])  # fmt: skip
    results = {
        "a": NodeResult(id="a", status=NodeStatus.SUCCEEDED, output="A"),
        "b": NodeResult(id="b", status=NodeStatus.FAILED, reason="rejected: too vague"),
        "c": NodeResult(id="c", status=NodeStatus.SKIPPED),
    }
    revised = Plan(goal="g", tasks=[
        Task(id="a", instruction="the planner rewrote it"),  # ignored: it already ran
        Task(id="b2", instruction="narrower second", depends_on=("a",)),
        Task(id="c", instruction="third", depends_on=("b2",)),
    ])  # fmt: skip
    merged, replaced = merge(plan, revised, results)
    assert [(t.id, t.instruction) for t in merged.tasks] == [
        ("a", "first"), ("b2", "narrower second"), ("c", "third"),
    ]  # fmt: skip
    assert [r.id for r in replaced] == ["b", "c"]
    told = parse_revision(brief(plan, results))
    assert told == (
        [("a", "first", [])],
        [("b", "second", ["a"])],
        [("c", "third", ["b"])],
    )


def _haiku_only(path: Path) -> Path:
    haiku = default_ladder()[0]
    price = haiku.prices[-1]
    path.write_text(
        "replace_defaults = true\n[tiers.haiku]\n"
        f'model = "{haiku.model}"\nrank = 10\ncontext_window = {haiku.context_window}\n'
        "capabilities = { reasoning = 1, long_context = 1, coding = 1, tool_use = 2 }\n"
        f"prices = [{{ input = {price.input}, output = {price.output} }}]\n"
    )
    return path


def test_the_cli_replans_within_the_budget_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = _haiku_only(tmp_path / "tiers.toml")
    common = ["--offline", "--tiers", str(tiers), "--home", str(tmp_path), "--budget", "0.05"]
    assert main(["run", GOAL, *common, "--replan", "3", "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert result["status"] == "succeeded"
    assert result["replans"] >= 1
    assert Decimal(str(result["cost_usd"])) <= Decimal("0.05")
    assert main(["show", result["run_id"], "--home", str(tmp_path)]) == 0
    assert "replanned" in capsys.readouterr().out
    assert main(["run", GOAL, *common, "--replan", "-1"]) == 2
    assert "--replan" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_goal_resumed_from_python_goes_on_from_its_stored_plan() -> None:
    # It planned again (and paid for it) when resumed through ResearchAgent.start.
    store = MemoryStore()
    corpus = await Corpus.load_default()
    async with (
        serve(SimConfig(seed=0, time_scale=0)) as sim,
        AnthropicClient(api_key="offline-test") as client,
    ):
        agent = ResearchAgent(
            client, corpus, default_ladder().with_endpoint(sim.base_url),
            config=RunConfig(replan=3, max_tier="haiku"), listeners=[StoreListener(store)],
        )  # fmt: skip
        first = await agent.run(GOAL)
        planned = sum(r.kind == "plan" for r in sim.requests)
        again = await agent.start(GOAL, resume=await store.load_run(first.run_id)).execute()
        assert sum(r.kind == "plan" for r in sim.requests) == planned
    assert again.status is RunStatus.SUCCEEDED
    assert again.cost_usd == first.cost_usd
