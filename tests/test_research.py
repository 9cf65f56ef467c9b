"""The research agent offline: planner repair on the server's broken plans, cited reports,
citation checks catching the simulator's planted flaws, and the mission visible in the result.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.cli import main
from orchestrator.exceptions import PlanValidationError
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.plan import CitationsSpec, JudgeSpec, Plan, Task
from orchestrator.planners.llm import LLMPlanner
from orchestrator.research import ResearchAgent, render_report, research_checks
from orchestrator.results import NodeStatus, RunResult, RunStatus
from orchestrator.store import MemoryStore, StoreListener
from orchestrator.telemetry import Telemetry, use_telemetry
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tools.corpus import Corpus, corpus_tools
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

BROKEN_PLANS = SimConfig(seed=0, time_scale=0, broken_plans=3)
BROKEN_PLANS_FIRST = pytest.mark.parametrize(
    "offline", [SimConfig(seed=0, time_scale=0, broken_plans=3)], indirect=True
)
"""The simulator answers the first three plan requests with a cycle, an unknown dependency
and prose, in that order."""
GOAL = "How do Python context managers and the with statement handle exceptions?"


def _ladder(base_url: str) -> TierLadder:
    return default_ladder().with_endpoint(base_url)


@pytest.fixture
async def offline(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, AnthropicClient]]:
    config: SimConfig = getattr(request, "param", SimConfig(seed=0, time_scale=0))
    async with serve(config) as server, AnthropicClient(api_key="offline") as client:
        yield server, client


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.default()


def _planner(
    offline: tuple[Any, AnthropicClient], corpus: Corpus, *, max_repairs: int
) -> LLMPlanner:
    server, client = offline
    ladder = _ladder(server.base_url)
    return LLMPlanner(client, ladder, tools=corpus_tools(corpus), max_repairs=max_repairs)


@BROKEN_PLANS_FIRST
async def test_planner_repairs_the_servers_broken_plans(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    planner = _planner(offline, corpus, max_repairs=3)
    with anyio.fail_after(30):
        plan = await planner.plan(GOAL)
    report = planner.last_report
    assert report is not None
    assert report.rounds == 4
    problems = ["\n".join(round_) for round_ in report.problems]
    assert "dependency cycle" in problems[0]
    assert "unknown task 'background_notes'" in problems[1]
    assert "not JSON" in problems[2]
    assert report.wasted_cost_usd > 0
    assert report.simulated
    # the fourth plan is the good one: parallel research, then synthesis, then a check
    roots = [task for task in plan.tasks if not task.depends_on]
    assert len(roots) >= 3
    assert all("search_corpus" in task.tools for task in roots)


@BROKEN_PLANS_FIRST
async def test_planner_gives_up_with_every_problem_listed(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    planner = _planner(offline, corpus, max_repairs=1)
    with anyio.fail_after(30), pytest.raises(PlanValidationError, match="unknown task"):
        await planner.plan(GOAL)


def test_research_checks_cover_researching_tasks_and_everything_downstream() -> None:
    plan = Plan(
        goal="g",
        tasks=[
            Task(id="a", instruction="x", tools=["search_corpus"]),
            Task(id="b", instruction="x"),
            Task(id="s", instruction="x", depends_on=["a", "b"]),
            Task(id="c", instruction="x", depends_on=["s"], verify=[CitationsSpec()]),
        ],
    )
    checked = research_checks(plan, tools=["search_corpus", "read_passage"], judge=True)
    kinds = {t.id: [spec.kind for spec in t.verify] for t in checked.tasks}
    assert kinds["a"].count("citations") == 1
    assert "citations" not in kinds["b"]  # no tools and nothing cited upstream
    assert "citations" in kinds["s"]
    assert kinds["c"].count("citations") == 1  # not added twice
    assert all(any(isinstance(s, JudgeSpec) for s in t.verify) for t in checked.tasks)


async def _research(client: AnthropicClient, base_url: str, corpus: Corpus) -> RunResult:
    agent = ResearchAgent(client, corpus, _ladder(base_url))
    with anyio.fail_after(60):
        return await agent.run(GOAL)


async def test_offline_research_run_shows_the_mission(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    server, client = offline
    result = await _research(client, server.base_url, corpus)
    assert result.status is RunStatus.SUCCEEDED, [
        (n.id, n.status, n.reason, [(a.tier, a.error) for a in n.attempts]) for n in result.nodes
    ]
    assert result.simulated
    assert result.planning is not None
    assert result.planning.cost_usd > 0
    node_cost = sum(node.cost_usd for node in result.nodes)
    assert result.cost_usd == pytest.approx(node_cost + result.planning.cost_usd)

    # independent nodes overlapped in time
    roots = [node for node in result.nodes if not node.depends_on]
    spans = [(n.attempts[0].started_at, n.attempts[-1].finished_at) for n in roots]
    assert len(spans) >= 2
    assert max(start for start, _ in spans) < min(end for _, end in spans if end)

    # some nodes finished on a cheaper tier than the synthesis
    rank = {tier.name: i for i, tier in enumerate(default_ladder().tiers)}
    synthesis = result.node(result.output_task or "")
    cheaper = [
        n for n in result.nodes if rank[n.final_tier or "opus"] < rank[synthesis.final_tier or ""]
    ]
    assert cheaper

    # at least one escalation after a flaw the citation check caught
    caught = [
        (node.id, a)
        for node in result.nodes
        for a in node.attempts[:-1]
        if a.verdict is not None and a.verdict.verifier == "citations" and not a.verdict.passed
    ]
    assert caught
    for node_id, attempt in caught:
        later = result.node(node_id).attempts[attempt.number]
        assert rank[later.tier] == rank[attempt.tier] + 1


async def test_every_planted_visible_flaw_is_caught(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    server, client = offline
    result = await _research(client, server.base_url, corpus)
    answers = [r for r in server.requests if r.get("flawed") is not None and r.get("status") == 200]
    attempts = [a for node in result.nodes for a in node.attempts]
    assert len(answers) == len(attempts)  # one final answer per attempt
    visible = [r for r in answers if r.get("flawed") and not r.get("subtle")]
    rejected = [a for a in attempts if a.verdict and not a.verdict.passed]
    assert visible, "the simulator planted no visible flaw: the test would prove nothing"
    # the citation check rejects exactly the visibly flawed answers: none slips through,
    # and no sound answer is rejected
    assert len(rejected) == len(visible)
    assert {a.verdict.verifier for a in rejected if a.verdict} == {"citations"}


async def test_report_cites_only_real_passages(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    server, client = offline
    result = await _research(client, server.base_url, corpus)
    report = render_report(result, corpus)
    assert report.startswith(f"# {GOAL}")
    assert "**Simulated.**" in report
    references = report.split("## References", 1)[1]
    ids = [line.split("`")[1].strip("[]") for line in references.splitlines() if line]
    assert ids
    assert all(corpus.passage_exists(pid) for pid in ids)
    for section in ("## Summary", "## Findings"):
        assert section in report


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value!r} has no time zone"
    return parsed


def test_cli_json_has_the_documented_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["run", GOAL, "--offline", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # stdout is one JSON document and nothing else
    assert code == (0 if document["status"] == "succeeded" else 1)
    assert document["status"] in {"succeeded", "failed", "partial", "cancelled", "budget_exhausted"}
    for key in ("run_id", "goal", "output", "cost_usd", "wasted_cost_usd", "wall_s", "trace_id"):
        assert key in document, key
    assert document["goal"] == GOAL
    assert document["trace_id"] is None or len(document["trace_id"]) == 32
    assert document["simulated"] is True
    assert document["nodes"]
    for node in document["nodes"]:
        for key in ("id", "depends_on", "needs", "status", "final_tier", "attempts"):
            assert key in node, key
        assert node["status"] in {s.value for s in NodeStatus}
        for attempt in node["attempts"]:
            for key in ("tier", "model", "input_tokens", "output_tokens", "cost_usd", "error"):
                assert key in attempt, key
            assert _iso(attempt["started_at"]) <= _iso(attempt["finished_at"])
            assert set(attempt["verdict"]) >= {"passed", "reason"}
    assert (out / "result.json").is_file()
    report = (out / "report.md").read_text()
    assert "## References" in report


def test_cli_run_needs_a_goal_or_a_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--offline"]) == 2
    assert "give a GOAL" in capsys.readouterr().err


def test_cli_corpus_that_is_not_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", GOAL, "--offline", "--corpus", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_plan_prints_json_tree_and_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", GOAL, "--offline", "--format", "json"]) == 0
    plan = Plan.model_validate_json(capsys.readouterr().out)
    assert len(plan.tasks) >= 3
    assert main(["plan", GOAL, "--offline", "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart TD")
    for task in plan.tasks:
        for dep in task.depends_on:
            assert f"t_{dep} --> t_{task.id}" in mermaid
    assert main(["plan", GOAL, "--offline"]) == 0
    captured = capsys.readouterr()
    assert all(task.id in captured.out for task in plan.tasks)
    assert "SIMULATED" in captured.err


def test_cli_research_run_on_a_users_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tides.md").write_text(
        "# Tides\n\nTides are caused by the gravitational pull of the moon and the sun on "
        "the oceans of the earth.\n\nSpring tides happen when the sun and moon align.\n"
    )
    (docs / "moon.txt").write_text(
        "The moon orbits the earth every 27.3 days; its gravity raises the ocean tides.\n"
    )
    code = main(["run", "What causes ocean tides on earth?", "--offline", "--corpus", str(docs)])
    out = capsys.readouterr().out
    assert code == 0
    references = out.split("## References", 1)[1]
    assert "[tides.md#" in references or "[moon.txt#" in references


async def test_research_run_is_one_trace_with_planning_under_the_run(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server, client = offline
    with use_telemetry(Telemetry(provider)):
        result = await _research(client, server.base_url, corpus)
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {result.trace_id}
    root = next(s for s in spans if s.parent is None)
    planning = next(s for s in spans if s.name == "plan research")
    assert planning.parent is not None
    assert planning.parent.span_id == root.context.span_id
    planning_calls = [s for s in spans if s.parent and s.parent.span_id == planning.context.span_id]
    assert planning_calls  # the planner's model call sits under the planning span


async def test_planning_spend_is_stored_and_never_paid_twice_on_resume(
    offline: tuple[Any, AnthropicClient], corpus: Corpus
) -> None:
    server, client = offline
    store = MemoryStore()
    ladder = _ladder(server.base_url)
    agent = ResearchAgent(client, corpus, ladder, listeners=[StoreListener(store)])
    with anyio.fail_after(60):
        plan = await agent.plan(GOAL)
        run = agent.prepare(plan)
        run.cancel()  # stopped before any node ran: only planning was paid
        stopped = await run.execute()
    assert stopped.status is RunStatus.CANCELLED
    assert stopped.planning is not None
    stored = await store.load_run(stopped.run_id)
    assert stored.summary.cost_usd == pytest.approx(stopped.planning.cost_usd)

    resumer = ResearchAgent(client, corpus, ladder, listeners=[StoreListener(store)])
    with anyio.fail_after(60):
        resumed = await resumer.engine.prepare(stored.plan, resume=stored).execute()
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.planning is not None
    assert resumed.planning.cost_usd == pytest.approx(stopped.planning.cost_usd)
    nodes = sum(node.cost_usd for node in resumed.nodes)
    assert resumed.cost_usd == pytest.approx(nodes + stopped.planning.cost_usd)
    again = await store.load_run(stopped.run_id)
    assert again.summary.cost_usd == pytest.approx(resumed.cost_usd)  # no second planning row
