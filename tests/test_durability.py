"""Durable runs, end to end: real processes killed with SIGKILL and resumed through the CLI
against one local Messages-API server; the store under many concurrent writers; a run under
injected faults and tight per-tier rate limits.

The kill points are driven by events, not sleeps: the server's brain notes which plan node
each request is for, and sets an event when the k-th request arrives; the test kills the
child then, while that request is in flight (its answer is delayed by simulated latency).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from orchestrator import Engine, NodeStatus, Plan, RunStatus, Task
from orchestrator.cli.render import render_summary
from orchestrator.events import Event, NodeFinished, NodeStarted
from orchestrator.models import anthropic as anthropic_client
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.ratelimit import RateLimiter
from orchestrator.models.retry import RetryPolicy
from orchestrator.plan import JudgeSpec, NonEmptySpec, RequiredSectionsSpec
from orchestrator.pricing import Usage
from orchestrator.results import Attempt, NodeResult, RunResult
from orchestrator.store import SQLiteStore, StoredRun, StoreListener
from orchestrator.store.base import spent_on
from orchestrator.testing import TestModel
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator_sim import BrainReply, BrainRequest, DefaultBrain, SimConfig, serve

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())"]
SEED = 7
TIME_SCALE = 0.1  # a haiku answer takes >= 25 ms: the kill lands while it is in flight
NODE_MARK = re.compile(r"Item ([a-z0-9]+):")


# -- helpers ------------------------------------------------------------------------------


def _task(
    task_id: str,
    text: str,
    deps: Sequence[str] = (),
    *,
    difficulty: int = 1,
    reasoning: int = 1,
    verify: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": task_id,
        "instruction": f"Item {task_id}: [difficulty={difficulty}] {text}",
        "depends_on": list(deps),
        "needs": {"reasoning": reasoning},
    }
    if verify:
        task["verify"] = list(verify)
    return task


def _sections(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "required_sections", "sections": list(names)}]


JUDGED = [{"kind": "non_empty"}, {"kind": "llm_judge"}]

KILL_PLAN = {
    "goal": "survive SIGKILL",
    "tasks": [
        _task("a1", "List three properties of water."),
        _task(
            "a2",
            "Explain evaporation. Required sections: Cause, Effect",
            difficulty=2,
            verify=_sections("Cause", "Effect"),
        ),
        _task("a3", "Name two kinds of clouds.", verify=JUDGED),
        _task(
            "a4",
            "Explain condensation. Required sections: Process, Examples",
            difficulty=3,
            reasoning=2,
            verify=_sections("Process", "Examples"),
        ),
        _task("b1", "Combine the properties and evaporation notes.", ["a1", "a2"]),
        _task(
            "b2",
            "Describe cloud formation. Required sections: Stages, Risks",
            ["a3"],
            difficulty=2,
            verify=_sections("Stages", "Risks"),
        ),
        _task("b3", "Relate evaporation to condensation.", ["a2", "a4"], verify=JUDGED),
        _task("c1", "Summarise the first findings.", ["b1", "b2"]),
        _task(
            "c2",
            "Outline the cycle. Required sections: Steps, Gaps",
            ["b2", "b3"],
            difficulty=2,
            verify=_sections("Steps", "Gaps"),
        ),
        _task(
            "final",
            "Write the report. Required sections: Summary, Details",
            ["c1", "c2"],
            difficulty=2,
            reasoning=2,
            verify=_sections("Summary", "Details"),
        ),
    ],
}


def _user_text(request: BrainRequest) -> str:
    content = request.messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


class TaggingBrain:
    """The default brain; it also notes the plan node of every request it answers.

    Task prompts start with the node's instruction and judge prompts with ``Task:`` and
    that instruction, so the first ``Item <id>:`` in the last user turn names the node.
    ``arrived`` is set when the ``kill_at``-th request arrives.
    """

    def __init__(self, config: SimConfig, kill_at: int | None = None) -> None:
        self._inner = DefaultBrain(config)
        self.node_of_hash: dict[str, str] = {}
        self.nodes: list[str] = []
        self.kill_at = kill_at
        self.arrived = anyio.Event()

    def respond(self, request: BrainRequest) -> BrainReply:
        reply = self._inner.respond(request)
        match = NODE_MARK.search(_user_text(request))
        assert match is not None, f"a request for no plan node: {_user_text(request)[:200]}"
        self.node_of_hash[reply.task_hash] = match.group(1)
        self.nodes.append(match.group(1))
        if len(self.nodes) == self.kill_at:
            self.arrived.set()
        return reply


def _env(base_url: str) -> dict[str, str]:
    """The CLI's online path, pointed at the local server (its key is not a secret)."""
    return {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "offline-test"}


@dataclass
class StoreRows:
    runs: int
    attempts: int
    nodes: int


def _check_store_file(path: Path) -> StoreRows:
    """Open the file read-only: SQLite's integrity checks pass and every row parses."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        runs = db.execute("SELECT run_id, status, plan, result FROM runs").fetchall()
        for run_id, status, plan, result in runs:
            Plan.model_validate_json(plan)
            if result is not None:
                parsed = RunResult.model_validate_json(result)
                assert (parsed.run_id, parsed.status.value) == (run_id, status)
        attempts = db.execute("SELECT number, cost_usd, body FROM attempts").fetchall()
        for number, cost, body in attempts:
            attempt = Attempt.model_validate_json(body)
            assert (attempt.number, float(spent_on(attempt))) == (number, cost)
        nodes = db.execute("SELECT node_id, status, body FROM nodes").fetchall()
        for node_id, status, body in nodes:
            node = NodeResult.model_validate_json(body)
            assert (node.id, node.status.value) == (node_id, status)
        return StoreRows(len(runs), len(attempts), len(nodes))
    finally:
        db.close()


async def check_store_file(path: Path) -> StoreRows:
    return await anyio.to_thread.run_sync(_check_store_file, path)


async def load_only_run(path: Path) -> StoredRun:
    store = await SQLiteStore.open(path)
    try:
        (summary,) = await store.list_runs()
        return await store.load_run(summary.run_id)
    finally:
        await store.aclose()


async def run_cli(args: Sequence[str], base_url: str) -> dict[str, Any]:
    done = await anyio.run_process([*CLI, *args, "--json"], env=_env(base_url), check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    document: dict[str, Any] = json.loads(done.stdout)
    return document


# -- SIGKILL at many points, resume, compare ----------------------------------------------


@dataclass
class Kill:
    """What one killed process left in the store."""

    run_id: str
    succeeded: set[str]
    """Nodes the store had as succeeded when the process died."""
    recorded: dict[str, NodeResult]
    """Their results as stored."""
    in_flight: str
    """The node whose request was in flight at the kill."""
    marker: int
    """Requests the server had seen when the process died."""
    cost_usd: Decimal
    """What the store had recorded as spent."""


async def run_until_killed(
    sim: Any, brain: TaggingBrain, command: Sequence[str], home: Path, after: int
) -> Kill:
    """Start ``orchestrator COMMAND``, SIGKILL it when its ``after``-th request arrives."""
    brain.kill_at, brain.arrived = len(brain.nodes) + after, anyio.Event()
    stderr = home / f"stderr-{len(brain.nodes)}.txt"
    err = await anyio.to_thread.run_sync(stderr.open, "wb")
    try:
        process = await anyio.open_process(
            [*CLI, *command, "--json"],
            env=_env(sim.base_url),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            with anyio.fail_after(40):
                await brain.arrived.wait()
        finally:
            process.kill()  # SIGKILL: no handler, no cleanup, no last write
            await process.wait()
    finally:
        await anyio.to_thread.run_sync(err.close)
    assert process.returncode == -signal.SIGKILL, await anyio.Path(stderr).read_text()
    in_flight = brain.nodes[brain.kill_at - 1]

    # What the killed process left: a sound file holding only finished work.
    store_file = home / "runs.db"
    await check_store_file(store_file)
    stored = await load_only_run(store_file)
    assert stored.summary.status == "running", "the kill came after the run ended"
    succeeded = {n for n, r in stored.nodes.items() if r.status is NodeStatus.SUCCEEDED}
    assert in_flight not in succeeded
    assert any(a.finished_at is None for a in stored.attempts[in_flight])
    for node_id in stored.attempts:  # a result is durable before its dependents start
        assert set(stored.plan.task(node_id).depends_on) <= succeeded, (node_id, succeeded)
    recorded = {n: stored.nodes[n] for n in succeeded}
    return Kill(
        stored.summary.run_id, succeeded, recorded, in_flight, len(sim.requests),
        stored.summary.cost_usd,
    )  # fmt: skip


async def crash_and_resume(
    steps: Sequence[int], home: Path, plan_file: Path, baseline: Mapping[str, Any]
) -> list[Kill]:
    """Run the plan, killing the process (first the run, then each resume) after each
    step's number of requests; a last resume finishes. All against one server."""
    home.mkdir()
    config = SimConfig(seed=SEED, time_scale=TIME_SCALE)
    brain = TaggingBrain(config)
    kills: list[Kill] = []
    async with serve(config, brain=brain) as sim:
        command = ["run", "--plan", str(plan_file), "--home", str(home)]
        for step in steps:
            kills.append(await run_until_killed(sim, brain, command, home, step))
            command = ["resume", kills[-1].run_id, "--home", str(home)]
        resumed = await run_cli(command, sim.base_url)
        requests = list(sim.requests)
    all_nodes = {t["id"] for t in KILL_PLAN["tasks"]}

    # The resumed run ends as an uninterrupted one does.
    assert (resumed["run_id"], resumed["status"]) == (kills[0].run_id, "succeeded")
    # Same nodes, all succeeded. Not the same words: a resumed node starts above a tier
    # that already failed it (no second payment), so its prompt, and the simulated text
    # that follows from it, may differ from the uninterrupted run's.
    assert _node_view(resumed) == _node_view(baseline)
    assert resumed["output"]

    # The request log: after each kill, nothing that had succeeded was asked for again.
    nodes = {node["id"]: node for node in resumed["nodes"]}
    for kill in kills:
        asked = {brain.node_of_hash[r.task_hash] for r in requests[kill.marker :] if r.task_hash}
        assert not asked & kill.succeeded, (steps, asked & kill.succeeded)
        for node_id, recorded in kill.recorded.items():  # their attempts are as recorded
            assert nodes[node_id]["attempts"] == recorded.model_dump(mode="json")["attempts"]
    asked_last = {
        brain.node_of_hash[r.task_hash] for r in requests[kills[-1].marker :] if r.task_hash
    }
    assert asked_last == all_nodes - kills[-1].succeeded  # and everything else was

    # Each attempt in flight at a kill is kept, marked interrupted, its cost an upper
    # bound: the worst case of the call it had in flight (which the server may have billed).
    # An attempt killed before it sent anything (waiting for a slot) cost exactly $0.
    for node_id, killed_during in Counter(kill.in_flight for kill in kills).items():
        interrupted = [a for a in nodes[node_id]["attempts"] if a["error_type"] == "interrupted"]
        billed_unseen = [a for a in interrupted if a["cost_unknown"]]
        assert len(billed_unseen) >= killed_during, (node_id, nodes[node_id]["attempts"])
        assert all(a["cost_usd"] > 0 for a in billed_unseen)
    for attempt in (a for node in resumed["nodes"] for a in node["attempts"]):
        if attempt["error_type"] == "interrupted" and not attempt["cost_unknown"]:
            assert attempt["cost_usd"] == 0, attempt
            assert attempt["calls"] == 0, attempt
    assert resumed["cost_usd"] == pytest.approx(
        sum(a["cost_usd"] for node in resumed["nodes"] for a in node["attempts"])
    )

    # The store afterwards: sound, complete, and holding what was printed.
    rows = await check_store_file(home / "runs.db")
    assert (rows.runs, rows.nodes) == (1, len(all_nodes))
    final = await load_only_run(home / "runs.db")
    assert final.summary.status == "succeeded"
    assert float(final.summary.cost_usd) == pytest.approx(resumed["cost_usd"])
    assert all(kill.cost_usd <= final.summary.cost_usd for kill in kills)  # spend carried on
    # Never below what the server billed: calls cut off by a kill count at their worst case.
    billed = billed_usd(requests)
    assert final.summary.cost_usd >= billed > 0, (final.summary.cost_usd, billed)
    assert final.result is not None
    assert final.result.model_dump(mode="json") == resumed
    return kills


def billed_usd(requests: Sequence[Any]) -> Decimal:
    """What the server billed: every answered request's usage at its model's prices."""
    tiers = {tier.model: tier for tier in default_ladder().tiers}
    billed = Decimal(0)
    for record in requests:
        if record.usage is None or record.model not in tiers:
            continue
        usage = Usage(
            input_tokens=record.usage.get("input_tokens", 0),
            output_tokens=record.usage.get("output_tokens", 0),
            cache_write_tokens=record.usage.get("cache_creation_input_tokens") or 0,
            cache_read_tokens=record.usage.get("cache_read_input_tokens") or 0,
        )
        billed += tiers[record.model].cost(usage)
    return billed


def _node_view(document: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    return {n["id"]: (n["status"], bool(n["output"])) for n in document["nodes"]}


async def uninterrupted_run() -> tuple[dict[str, Any], int]:
    """The plan run once, start to end, on the same ladder against a fresh server."""
    config = SimConfig(seed=SEED, time_scale=TIME_SCALE)
    brain = TaggingBrain(config)
    async with (
        serve(config, brain=brain) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-test") as client,
    ):
        result = await Engine(client).run(Plan.model_validate(KILL_PLAN))
    assert result.status is RunStatus.SUCCEEDED
    return result.model_dump(mode="json"), len(brain.nodes)


async def test_sigkill_at_many_points_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    await anyio.Path(plan_file).write_text(json.dumps(KILL_PLAN))
    with anyio.fail_after(100):
        baseline, total = await uninterrupted_run()
        # One process killed halfway, one at its last request, and one run killed three
        # times in a row (the run at its first request, then each resume at its fourth).
        scenarios = [[total // 2], [total - 1], [1, 4, 4]]
        outcomes: list[list[Kill]] = []

        async def scenario(index: int, steps: list[int]) -> None:
            home = tmp_path / f"scenario-{index}"
            outcomes.append(await crash_and_resume(steps, home, plan_file, baseline))

        async with anyio.create_task_group() as tg:
            for index, steps in enumerate(scenarios):
                tg.start_soon(scenario, index, steps)

    kills = [kill for chain in outcomes for kill in chain]
    assert len(kills) == 5
    # The points differ: from nothing finished to most of the plan finished.
    finished = sorted(len(kill.succeeded) for kill in kills)
    assert finished[0] == 0
    assert finished[-1] >= len(KILL_PLAN["tasks"]) // 2
    assert len({kill.in_flight for kill in kills}) >= 3


# -- many concurrent writers --------------------------------------------------------------


class ConcurrencyGauge:
    """A listener measuring how many nodes run (and write to the store) at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            self.now += 1
            self.peak = max(self.peak, self.now)
        elif isinstance(event, NodeFinished):
            self.now -= 1


def wide_plan(width: int, goal: str) -> Plan:
    tasks = [Task(id=f"w{i}", instruction=f"Write fact number {i}.") for i in range(width)]
    tasks.append(Task(id="join", instruction="Join them.", depends_on=[t.id for t in tasks]))
    return Plan(goal=goal, tasks=tasks)


def roomy_ladder(per_tier: int) -> TierLadder:
    tiers = default_ladder().tiers
    return TierLadder(
        tiers=tuple(t.model_copy(update={"max_concurrency": per_tier}) for t in tiers)
    )


def _stored_rows(path: Path, run_id: str) -> tuple[dict[str, NodeResult], list[Attempt]]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        nodes = {
            node_id: NodeResult.model_validate_json(body)
            for node_id, body in db.execute(
                "SELECT node_id, body FROM nodes WHERE run_id=?", (run_id,)
            )
        }
        attempts = [
            Attempt.model_validate_json(body)
            for (body,) in db.execute("SELECT body FROM attempts WHERE run_id=?", (run_id,))
        ]
        return nodes, attempts
    finally:
        db.close()


def assert_all_recorded(
    result: RunResult, nodes: dict[str, NodeResult], attempts: list[Attempt]
) -> None:
    assert result.status is RunStatus.SUCCEEDED
    assert nodes == {node.id: node for node in result.nodes}  # every node, exactly as run
    expected = sorted((a.number, a.started_at) for node in result.nodes for a in node.attempts)
    assert sorted((a.number, a.started_at) for a in attempts) == expected
    assert all(a.finished_at is not None for a in attempts)


async def test_two_hundred_nodes_fifty_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    gauge = ConcurrencyGauge()
    try:
        with anyio.fail_after(60):
            async with (
                serve(SimConfig(seed=3, time_scale=0.1)) as sim,
                AnthropicClient(base_url=sim.base_url, api_key="offline-test") as client,
            ):
                engine = Engine(client, roomy_ladder(64), listeners=[StoreListener(store), gauge])
                result = await engine.run(wide_plan(200, "fill"), run_id="fill", max_concurrency=50)
    finally:
        await store.aclose()
    assert gauge.peak == 50  # the store really had fifty writers at once
    nodes, attempts = await anyio.to_thread.run_sync(_stored_rows, path, "fill")
    assert len(nodes) == 201
    assert_all_recorded(result, nodes, attempts)
    rows = await check_store_file(path)
    assert (rows.runs, rows.nodes, rows.attempts) == (1, 201, len(attempts))


async def test_two_connections_writing_one_file_at_once_lose_nothing(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would have) under heavy concurrent writes."""
    path = tmp_path / "runs.db"
    stores = [await SQLiteStore.open(path), await SQLiteStore.open(path)]
    results: dict[str, RunResult] = {}

    async def run(index: int) -> None:
        engine = Engine(TestModel("ok"), listeners=[StoreListener(stores[index])])
        run_id = f"writer{index}"
        results[run_id] = await engine.run(
            wide_plan(150, run_id), run_id=run_id, max_concurrency=50
        )

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(2):
                    tg.start_soon(run, index)
    finally:
        for store in stores:
            await store.aclose()
    for run_id, result in results.items():
        nodes, attempts = await anyio.to_thread.run_sync(_stored_rows, path, run_id)
        assert_all_recorded(result, nodes, attempts)
    rows = await check_store_file(path)
    assert (rows.runs, rows.nodes) == (2, 302)


# -- faults and tight rate limits ---------------------------------------------------------


class MinuteIsASecond(RateLimiter):
    """The production rate limiter with its minute shortened to one second, so that a
    per-minute limit binds within a test's seconds. ``retry-after`` stays in real seconds.
    It notes when it let each request go (on its clock, in its seconds), per limiter made."""

    made: ClassVar[list[MinuteIsASecond]] = []

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        super().__init__(
            requests_per_minute,
            tokens_per_minute,
            clock=lambda: anyio.current_time() * 60,
            sleep=lambda seconds: anyio.sleep(seconds / 60),
        )
        self.granted: list[float] = []
        MinuteIsASecond.made.append(self)

    async def acquire(self, tokens: int) -> None:
        await super().acquire(tokens)
        self.granted.append(self.clock())

    def pause(self, seconds: float) -> None:
        super().pause(seconds * 60)


RATE_LIMITS = {"haiku": 20, "sonnet": 8, "opus": 5}  # requests per (shortened) minute


def fifty_node_plan() -> Plan:
    """Five layers of ten; each node after the first layer reads two of the layer before.
    A third need Markdown sections, a third are judged by another model, a third must be
    non-empty; some are hard enough that the cheapest tier's answer is flawed."""
    tasks = []
    for i in range(50):
        layer, slot = divmod(i, 10)
        deps = [] if layer == 0 else [f"n{(layer - 1) * 10 + s}" for s in (slot, (slot + 3) % 10)]
        difficulty = 1 + (i % 3 == 2) + (i % 7 == 6)
        if i % 3 == 0:
            text = f"describe part {i}. Required sections: Answer, Caveats"
            verify: list[Any] = [RequiredSectionsSpec(sections=["Answer", "Caveats"])]
        elif i % 3 == 1:
            text, verify = f"check claim {i}.", [NonEmptySpec(), JudgeSpec()]
        else:
            text, verify = f"list facts about {i}.", [NonEmptySpec()]
        instruction = f"Step {i} [difficulty={difficulty}]: {text}"
        tasks.append(Task(id=f"n{i}", instruction=instruction, depends_on=deps, verify=verify))
    return Plan(goal="fifty nodes under faults", tasks=tasks)


def _error_type(record: Any) -> str | None:
    """The error type the client names a faulted request by (see docs/sim.md, Faults)."""
    by_status = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}
    by_fault = {
        "drop_connection": "connection_error",
        "slow": "timeout",
        "truncated_body": "invalid_response",
    }
    return by_status.get(record.status) or by_fault.get(record.fault or "")


async def test_fifty_nodes_under_faults_and_rate_limits_all_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(anthropic_client, "RateLimiter", MinuteIsASecond)
    monkeypatch.setattr(MinuteIsASecond, "made", [])
    ladder = TierLadder(
        tiers=tuple(
            t.model_copy(update={"requests_per_minute": RATE_LIMITS[t.name]})
            for t in default_ladder().tiers
        )
    )
    config = SimConfig(seed=11, time_scale=0.01, fault_rate=0.3, slow_response_s=3.0)
    retry = RetryPolicy(max_retries=10, base_delay_s=0.01, max_delay_s=0.2)
    with anyio.fail_after(60):
        async with (
            serve(config) as sim,
            AnthropicClient(
                base_url=sim.base_url, api_key="offline-test", retry=retry, timeout_s=1.5
            ) as client,
        ):
            result = await Engine(client, ladder).run(fifty_node_plan(), max_concurrency=16)
            records = list(sim.requests)

    # Every node finished, each on an attempt its verifiers accepted.
    assert result.status is RunStatus.SUCCEEDED
    assert len(result.nodes) == 50
    for node in result.nodes:
        last = node.attempts[-1]
        assert last.passed, (node.id, last)
        assert last.verdict is not None
        assert last.verdict.verifier != "none"

    # The faults really happened, and the run reports exactly what the server did.
    faulted = Counter(kind for record in records if (kind := _error_type(record)))
    assert sum(faulted.values()) >= 0.2 * len(records)
    assert result.api_errors == dict(faulted)
    assert result.api_errors["rate_limit_error"] > 0
    assert result.model_dump(mode="json")["api_errors"] == dict(faulted)  # in --json
    assert f"429s: {faulted['rate_limit_error']}" in render_summary(result)  # in the summary

    # The limits bound: every request the server saw was let go by its tier's limiter, more
    # of them than a minute's allowance, and no stretch of time let more go than the
    # allowance plus what refilled during it.
    models = {tier.model: tier.name for tier in ladder.tiers}
    seen = Counter(models[r.model] for r in records if r.model in models)
    limiters = {limiter.requests_per_minute: limiter for limiter in MinuteIsASecond.made}
    for tier, limit in RATE_LIMITS.items():
        granted = limiters[limit].granted
        assert len(granted) == seen[tier]
        if tier != "opus":
            assert len(granted) > 2 * limit, (tier, len(granted))
        excess = max(
            (j - i + 1 - limit * (1 + (granted[j] - granted[i]) / 60) for i in range(len(granted))
             for j in range(i, len(granted))),
            default=0,
        )  # fmt: skip
        assert excess <= 1, (tier, excess)
