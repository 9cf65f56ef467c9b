"""The README's hard promises, tried from the command line as a user hits them.

The budget covers the whole run, planning included, and a budgeted run always ends; a run
is recorded before its planner's first call, and planning that fails ends the run (with
its cost, printed, resumable) instead of crashing the command; what a killed process may
have been billed is counted; ``show`` needs none of a run's tools; ``resume`` keeps the
budget the run was started with.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

from orchestrator.cli import main
from orchestrator.cli.render import LiveProgress
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.plan import Plan, Task
from orchestrator.research import ResearchAgent
from orchestrator.results import PLANNING_NODE, Attempt, Verdict
from orchestrator.store import SQLiteStore
from orchestrator.tools.corpus import Corpus
from orchestrator_sim import BrainReply, BrainRequest, DefaultBrain, SimConfig, serve

GOAL = "How do Python context managers and the with statement handle exceptions?"
CLI = [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())"]


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def _runs(home: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["runs", "--json", "--home", str(home)]) == 0
    runs: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return runs


def test_a_budget_below_planning_stops_before_spending_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Planning used to run outside the budget: this run cost $0.006162, 12x its budget.
    args = ["run", GOAL, "--offline", "--json", "--budget", "0.0005", "--home", str(tmp_path)]
    assert main(args) == 1
    result = _json(capsys)
    assert result["status"] == "budget_exhausted"
    assert result["cost_usd"] == 0  # refused before the first planning call was sent
    assert "budget exhausted" in result["planning"]["error"]
    assert "0.000500 remains" in result["planning"]["error"]
    (stored,) = _runs(tmp_path, capsys)
    assert (stored["run_id"], stored["status"]) == (result["run_id"], "budget_exhausted")


@pytest.mark.parametrize(
    ("goal", "budget"),
    [
        ("Compare generators and iterators in Python", "0.027826550000000002"),  # hung
        (GOAL, "0.07"),  # planning fits; the nodes reserve and settle until it is spent
        (GOAL, "0.12"),
    ],
)
def test_a_budgeted_run_ends_within_its_budget(tmp_path: Path, goal: str, budget: str) -> None:
    command = [*CLI, "run", goal, "--offline", "--json", "--budget", budget]
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path)}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode in (0, 1), done.stderr
    result = json.loads(done.stdout)
    assert Decimal(str(result["cost_usd"])) <= Decimal(budget)
    assert result["status"] in ("succeeded", "budget_exhausted", "partial")
    accounted = {node["status"] for node in result["nodes"]}
    assert accounted <= {"succeeded", "failed", "not_run", "skipped"}


def test_api_errors_in_planning_end_the_run_failed_printed_and_resumable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was a ModelAPIError traceback, exit 1, empty stdout and no run stored.
    home = ["--home", str(tmp_path)]
    faulty = ["--offline", "--fault-rate", "0.98", "--seed", "3", "--json"]
    assert main(["run", GOAL, *faulty, *home]) == 1
    failed = _json(capsys)
    assert failed["status"] == "failed"
    assert failed["nodes"] == []
    assert failed["planning"]["rounds"] == 3  # the first round and two retries of it
    assert "the API failed 3 planning rounds" in failed["planning"]["error"]
    assert sum(failed["api_errors"].values()) >= 3  # planning's errors are counted
    (stored,) = _runs(tmp_path, capsys)
    assert (stored["run_id"], stored["status"]) == (failed["run_id"], "failed")

    assert main(["resume", failed["run_id"], "--offline", "--json", *home]) == 0
    resumed = _json(capsys)
    assert (resumed["run_id"], resumed["status"]) == (failed["run_id"], "succeeded")
    assert resumed["planning"]["rounds"] == 4  # the failed rounds are kept, with their cost
    spent = sum(a["cost_usd"] for n in resumed["nodes"] for a in n["attempts"])
    assert resumed["cost_usd"] == pytest.approx(spent + resumed["planning"]["cost_usd"])


class _FirstRequestBrain:
    """The default brain; ``arrived`` is set when the first request (planning's) arrives."""

    def __init__(self, config: SimConfig) -> None:
        self._inner = DefaultBrain(config)
        self.arrived = anyio.Event()

    def respond(self, request: BrainRequest) -> BrainReply:
        self.arrived.set()
        return self._inner.respond(request)


@pytest.mark.anyio
async def test_a_kill_during_planning_leaves_a_run_to_show_and_resume(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path)]
    slow = SimConfig(seed=1, time_scale=0.5)  # the planning answer takes seconds
    brain = _FirstRequestBrain(slow)
    async with serve(slow, brain=brain) as sim:
        process = await anyio.open_process(
            [*CLI, "run", GOAL, "--json", *home], env=_env(sim.base_url), stdout=subprocess.DEVNULL
        )
        try:
            with anyio.fail_after(60):
                await brain.arrived.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have died on its own
                process.kill()  # SIGKILL during planning's first call
            await process.wait()
    assert process.returncode == -signal.SIGKILL, "the CLI ended before planning's first call"

    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        (summary,) = await store.list_runs()
        stored = await store.load_run(summary.run_id)
    finally:
        await store.aclose()
    assert (stored.summary.status, stored.plan) == ("planning", None)
    (in_flight,) = stored.attempts[PLANNING_NODE]
    assert in_flight.finished_at is None
    assert in_flight.in_flight_usd > 0  # reserved, and durable before the call was sent
    assert stored.summary.cost_usd == in_flight.in_flight_usd  # counted: an upper bound

    async with serve(SimConfig(seed=1, time_scale=0)) as sim:
        env = _env(sim.base_url)
        shown = await anyio.run_process([*CLI, "show", summary.run_id, "--json", *home], env=env)
        resumed = await anyio.run_process(
            [*CLI, "resume", summary.run_id, "--json", *home], env=env, check=False
        )
    assert json.loads(shown.stdout)["planning"]["cost_usd"] == float(in_flight.in_flight_usd)
    assert resumed.returncode == 0, resumed.stderr.decode()
    result = json.loads(resumed.stdout)
    assert (result["run_id"], result["status"]) == (summary.run_id, "succeeded")
    assert result["planning"]["rounds"] == 2  # the interrupted round, then a whole one
    assert result["cost_usd"] >= float(in_flight.in_flight_usd)


def _env(base_url: str) -> dict[str, str]:
    """The CLI's online path, pointed at the local server (its key is not a secret)."""
    return {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "offline-test"}


@pytest.mark.anyio
async def test_the_live_table_counts_planning_as_the_summary_does() -> None:
    # The live total left planning out: $0.0222 live, $0.0286 in the summary.
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    corpus = await Corpus.load_default()
    async with (
        serve(SimConfig(seed=0, time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline") as client,
    ):
        with LiveProgress(console) as live:
            agent = ResearchAgent(client, corpus, listeners=[live])
            result = await agent.run(GOAL)
    assert result.planning is not None
    assert result.planning.cost_usd > 0
    total = sum((row.cost_usd for row in live.rows.values()), Decimal(0))
    assert total == result.cost_usd
    assert live.rows[PLANNING_NODE].cost_usd == result.planning.cost_usd


class _CountingBrain:
    """The default brain; ``arrived`` is set at each request (replaced after each wait)."""

    def __init__(self, config: SimConfig) -> None:
        self._inner = DefaultBrain(config)
        self.arrived = anyio.Event()
        self.requests = 0

    def respond(self, request: BrainRequest) -> BrainReply:
        self.requests += 1
        self.arrived.set()
        return self._inner.respond(request)

    async def next_request(self) -> None:
        with anyio.fail_after(60):
            await self.arrived.wait()
        self.arrived = anyio.Event()


@pytest.mark.anyio
async def test_a_run_has_one_owner_and_a_dead_owners_lease_is_taken_over(
    tmp_path: Path,
) -> None:
    # Two resumes of one run both ran it: 12 requests instead of 6, paid twice.
    plan_file = tmp_path / "plan.json"
    tasks = [{"id": f"t{i}", "instruction": f"Name {i + 2} uses of a queue."} for i in range(3)]
    plan_file.write_text(json.dumps({"goal": "queues", "tasks": tasks}))
    home = ["--home", str(tmp_path)]
    slow = SimConfig(seed=2, time_scale=20)  # an answer takes far longer than the test
    brain = _CountingBrain(slow)
    async with serve(slow, brain=brain) as sim:
        env = _env(sim.base_url)
        first = await anyio.open_process(
            [*CLI, "run", "--plan", str(plan_file), "--json", *home],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            await brain.next_request()  # the run is under way: it holds the lease
            run_id = (await _only_run_id(tmp_path))[0]
            with anyio.fail_after(60):  # refused at once, not run beside the first
                second = await anyio.run_process(
                    [*CLI, "resume", run_id, "--json", *home], env=env, check=False
                )
        finally:
            first.kill()  # SIGKILL: its lease stays behind, held by a dead process
            await first.wait()
    assert second.returncode == 2
    message = second.stderr.decode()
    assert f"pid {first.pid}" in message, message
    assert second.stdout == b""  # it ran nothing

    async with serve(SimConfig(seed=2, time_scale=0)) as sim:
        resumed = await anyio.run_process(
            [*CLI, "resume", run_id, "--json", *home], env=_env(sim.base_url), check=False
        )
    assert resumed.returncode == 0, resumed.stderr.decode()  # the dead owner's lease: taken
    assert json.loads(resumed.stdout)["status"] == "succeeded"


async def _only_run_id(home: Path) -> list[str]:
    store = await SQLiteStore.open(home / "runs.db")
    try:
        return [summary.run_id for summary in await store.list_runs()]
    finally:
        await store.aclose()


async def _record_interrupted_research_run(home: Path) -> str:
    """What a research run leaves when its process dies mid-run: planned, a node in flight.

    Recorded through the store's API as :class:`~orchestrator.store.StoreListener` records
    a run: planning first, then the plan (its tasks use the corpus tools, which the
    ``show`` process never has), the planning round, and an attempt cut off in flight.
    """
    run_id = "run_20250101T000000_deadbeef"
    plan = Plan(
        goal=GOAL,
        tasks=[
            Task(id="find", instruction="Find passages.", tools=("search_corpus", "read_passage")),
            Task(id="answer", instruction="Answer from them.", depends_on=("find",)),
        ],
    )
    started = datetime(2025, 1, 1, tzinfo=UTC)
    planned = Attempt(
        number=1, tier="sonnet", model="m", started_at=started, finished_at=started,
        cost_usd=Decimal("0.002"), calls=1,
        verdict=Verdict(passed=True, verifier="planner", reason="1 round(s)"),
    )  # fmt: skip
    cut_off = Attempt(
        number=1, tier="haiku", model="m", started_at=started, in_flight_usd=Decimal("0.004")
    )
    store = await SQLiteStore.open(home / "runs.db")
    try:
        await store.start_planning(run_id, GOAL, started, budget_usd=Decimal("0.5"))
        await store.record_attempt(run_id, PLANNING_NODE, planned)
        await store.start_run(run_id, plan, started, budget_usd=Decimal("0.5"))
        await store.record_attempt(run_id, "find", cut_off)
    finally:
        await store.aclose()  # and no finish_run: the process died
    return run_id


def test_show_and_runs_of_an_interrupted_research_run_need_none_of_its_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was exit 2: "plan is invalid ... unknown tool 'search_corpus'".
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path))
    run_id = anyio.run(_record_interrupted_research_run, tmp_path)

    assert main(["show", run_id, "--json"]) == 0
    shown = _json(capsys)
    assert (shown["run_id"], shown["goal"]) == (run_id, GOAL)
    nodes = {node["id"]: node for node in shown["nodes"]}
    assert set(nodes) == {"find", "answer"}
    (attempt,) = nodes["find"]["attempts"]
    assert (attempt["error_type"], attempt["cost_unknown"]) == ("interrupted", True)
    assert shown["cost_usd"] == pytest.approx(0.006)  # the cut-off call at its worst case
    assert shown["budget_usd"] == pytest.approx(0.5)  # as stored, though it never finished

    assert main(["show", run_id]) == 0  # the summary, as a user reads it
    assert run_id in capsys.readouterr().out
    (listed,) = _runs(tmp_path, capsys)
    assert (listed["run_id"], listed["status"]) == (run_id, "running")
    assert listed["cost_usd"] == pytest.approx(0.006)


def _queue_plan(path: Path) -> Path:
    """Eight small independent tasks: $0.00021 unbudgeted offline, $0.000078 worst case each."""
    tasks = [
        {"id": f"t{i}", "instruction": f"Name {i + 2} uses of a queue.", "max_output_tokens": 64}
        for i in range(8)
    ]
    path.write_text(json.dumps({"goal": "queues", "tasks": tasks}))
    return path


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home)}
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, timeout=120, env=env
    )


def _within(result: dict[str, Any], budget: str) -> None:
    assert result["budget_usd"] is not None, "resumed with no budget"
    assert Decimal(str(result["budget_usd"])) == Decimal(budget)
    assert Decimal(str(result["cost_usd"])) <= Decimal(budget)


def test_resume_keeps_the_budget_of_a_run_that_ran_out(tmp_path: Path) -> None:
    # `resume` without --budget used to run on with no budget ("budget_usd": null) and
    # finish the plan at $0.00021, twice the $0.0001 the run was started with.
    plan = _queue_plan(tmp_path / "plan.json")
    started = _cli(tmp_path, "run", "--plan", str(plan), "--offline", "--json",
                   "--budget", "0.0001", "--max-concurrency", "1")  # fmt: skip
    assert started.returncode == 1, started.stderr
    first = json.loads(started.stdout)
    assert first["status"] == "budget_exhausted"
    assert any(node["status"] == "succeeded" for node in first["nodes"])  # it got somewhere

    again = _cli(tmp_path, "resume", first["run_id"], "--offline", "--json")
    assert again.returncode == 1, again.stderr
    resumed = json.loads(again.stdout)
    assert (resumed["run_id"], resumed["status"]) == (first["run_id"], "budget_exhausted")
    _within(resumed, "0.0001")

    # An explicit --budget replaces it: the most the whole run may spend, what was spent
    # before included.
    raised = _cli(tmp_path, "resume", first["run_id"], "--offline", "--json", "--budget", "0.01")
    assert raised.returncode == 0, raised.stderr
    finished = json.loads(raised.stdout)
    assert finished["status"] == "succeeded"
    _within(finished, "0.01")
    assert finished["cost_usd"] > resumed["cost_usd"]


@pytest.mark.anyio
async def test_resume_keeps_the_budget_of_a_killed_run(tmp_path: Path) -> None:
    # A run killed in its first call has no result stored, so no budget in it either.
    budget = "0.0002"
    plan = _queue_plan(tmp_path / "plan.json")
    home = ["--home", str(tmp_path)]
    slow = SimConfig(seed=2, time_scale=20)  # an answer takes far longer than the test
    brain = _CountingBrain(slow)
    async with serve(slow, brain=brain) as sim:
        process = await anyio.open_process(
            [*CLI, "run", "--plan", str(plan), "--json", "--budget", budget,
             "--max-concurrency", "1", *home],
            env=_env(sim.base_url), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await brain.next_request()  # the first node's call is in flight
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL, "the CLI ended before its first call"
    (run_id,) = await _only_run_id(tmp_path)

    with anyio.fail_after(120):
        again = await anyio.run_process(
            [*CLI, "resume", run_id, "--offline", "--json", *home], check=False
        )
    assert again.returncode == 1, again.stderr.decode()
    resumed = json.loads(again.stdout)
    # Unbudgeted, it finished all eight nodes: $0.00029 with the killed call's worst case.
    assert (resumed["run_id"], resumed["status"]) == (run_id, "budget_exhausted")
    _within(resumed, budget)
