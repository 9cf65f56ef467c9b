"""Batch mode: tasks' calls in Message Batches at half price, through the real SDK.

Every test talks to the local Messages-API server (``orchestrator_sim``) through
:class:`~orchestrator.models.anthropic.AnthropicClient`, the client production uses; the
resume test kills a real CLI process while its calls wait in a batch whose end the test
controls (the server's injectable clock).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import Engine, Plan, Task
from orchestrator.budget import Budget, Meter
from orchestrator.exceptions import BudgetExhausted
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.batch import BatchOutcome, BatchQueue
from orchestrator.results import PLANNING_NODE, RunResult
from orchestrator.store import SQLiteStore, StoredRun
from orchestrator.tiers import default_ladder
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())"]


def _plan() -> Plan:
    """Three independent tasks and one that reads them (two waves of ready nodes)."""
    leaves = [
        Task(id=f"t{i}", instruction=f"List {i + 2} uses of a priority queue.",
             max_output_tokens=128)
        for i in range(3)
    ]  # fmt: skip
    summary = Task(
        id="summary", instruction="Summarise the uses above in one paragraph.",
        depends_on=("t0", "t1", "t2"), max_output_tokens=128,
    )  # fmt: skip
    return Plan(goal="priority queues", tasks=[*leaves, summary])


async def _run(base_url: str, **config: Any) -> RunResult:
    client = AnthropicClient(
        base_url=base_url, api_key="offline-test", batch_collect_s=0.05, batch_poll_s=0.01
    )
    async with client:
        return await Engine(client=client).run(_plan(), **config)


async def test_batch_mode_sends_each_wave_of_ready_calls_as_one_batch_at_half_price() -> None:
    async with serve(SimConfig(seed=3, time_scale=0)) as sim:
        batched = await _run(sim.base_url, batch=True, cache=False)
        batch_requests = list(sim.requests)
        sim.requests.clear()
        interactive = await _run(sim.base_url, cache=False)

    assert batched.status == interactive.status == "succeeded"
    assert batched.outputs == interactive.outputs  # the same answers, only cheaper
    # No call went to POST /v1/messages: each wave of ready nodes was one batch (the three
    # leaves together, then the summary that reads them).
    assert not [r for r in batch_requests if r.path == "/v1/messages"]
    created = [r for r in batch_requests if r.notes.get("action") == "create"]
    assert len(created) == 2
    entries = [r for r in batch_requests if r.custom_id is not None]
    assert len({r.batch_id for r in entries if r.task_hash}) == 2
    # Half price, to the last digit, and the summary's saving is the other half.
    calls = sum(a.calls for n in batched.nodes for a in n.attempts)
    assert batched.batch_calls == calls == len(entries)
    assert batched.cost_usd * 2 == interactive.cost_usd
    assert batched.batch_saving_usd == batched.cost_usd
    assert interactive.batch_calls == 0
    assert interactive.batch_saving_usd == 0


async def test_the_budget_reserves_a_batch_call_at_the_batch_price() -> None:
    tier = default_ladder()[1]
    worst = tier.worst_case_cost(4000, 1000)
    budget = Budget(worst * Decimal("0.6"))  # the batch worst case fits, the other does not
    meter = Meter(tier, budget)
    with pytest.raises(BudgetExhausted):
        async with meter.call(4000, 1000):
            pass
    async with meter.call(4000, 1000, batch="call_1") as ticket:
        assert ticket.reserved_usd == worst * tier.batch_price
        assert budget.reserved_usd == worst / 2


class _Batches:
    """A batch endpoint whose batch ends when the test says so."""

    def __init__(self) -> None:
        self.created: list[list[str]] = []
        self.ended_now = anyio.Event()
        self.polled = anyio.Event()

    async def create(self, requests: Any) -> str:
        self.created.append([custom_id for custom_id, _ in requests])
        return f"msgbatch_{len(self.created)}"

    async def ended(self, batch_id: str) -> bool:
        self.polled.set()
        return self.ended_now.is_set()

    async def results(self, batch_id: str) -> dict[str, BatchOutcome]:
        index = int(batch_id.removeprefix("msgbatch_")) - 1
        return {cid: BatchOutcome("succeeded", message=cid) for cid in self.created[index]}


async def test_calls_made_together_share_a_batch_and_a_cancelled_poller_hands_over() -> None:
    batches = _Batches()
    queue = BatchQueue(batches, collect_s=0.01, poll_s=0.01, poll_max_s=0.01)
    ids: list[str] = []

    async def submit(custom_id: str) -> None:
        ids.append(await queue.submit(custom_id, {}))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for custom_id in ("a", "b", "a"):  # "a" twice: the same call, one request
                tg.start_soon(submit, custom_id)
    assert batches.created == [["a", "b"]]
    (batch_id,) = set(ids)

    outcomes: dict[str, BatchOutcome] = {}

    async def read(name: str, custom_id: str) -> None:
        outcomes[name] = await queue.result(batch_id, custom_id)

    first = anyio.CancelScope()

    async def read_first() -> None:
        with first:
            await read("first", "a")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_first)  # the first reader polls for everyone...
            await batches.polled.wait()
            tg.start_soon(read, "second", "b")
            await anyio.wait_all_tasks_blocked()
            first.cancel()  # ...and goes away: the second must poll on its own
            await anyio.wait_all_tasks_blocked()
            batches.ended_now.set()
    assert "first" not in outcomes
    assert outcomes["second"] == BatchOutcome("succeeded", message="b")
    assert queue.waiting == 0


# -- durable batches, from the CLI ---------------------------------------------------------


class _Clock:
    """Seconds since the epoch, stopped until the test lets it run (the server's clock)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self._since: float | None = None

    def run(self, ahead_s: float) -> None:
        """Jump ``ahead_s`` seconds, then run as the real clock does."""
        self.now += ahead_s
        self._since = time.monotonic()

    def __call__(self) -> float:
        return self.now + (time.monotonic() - self._since if self._since is not None else 0.0)


def _env(base_url: str) -> dict[str, str]:
    return {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "offline-test"}


async def _killed_while_batched(
    work: list[str], home: Path, base_url: str, waiting: int
) -> StoredRun:
    """``run WORK --batch``, SIGKILLed once ``waiting`` calls wait in a batch; what it stored."""
    process = await anyio.open_process(
        [*CLI, "run", *work, "--batch", "--home", str(home)],  # progress on stderr
        env=_env(base_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen = ""
    try:
        assert process.stderr is not None
        with anyio.fail_after(60):
            while seen.count("waiting in message batch") < waiting:
                seen += (await process.stderr.receive()).decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    assert process.returncode == -signal.SIGKILL, seen
    store = await SQLiteStore.open(home / "runs.db")
    try:
        (summary,) = await store.list_runs()
        return await store.load_run(summary.run_id)
    finally:
        await store.aclose()


async def test_a_killed_batch_run_resumes_by_reading_the_same_batch_and_pays_once(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.json"
    tasks = [{"id": f"t{i}", "instruction": f"Name {i + 2} uses of a heap.",
              "max_output_tokens": 64} for i in range(2)]  # fmt: skip
    plan.write_text(json.dumps({"goal": "heaps", "tasks": tasks}))
    home = ["--home", str(tmp_path)]
    clock = _Clock()
    async with serve(SimConfig(seed=4), clock=clock) as sim:
        # both tasks wait in the batch, which cannot end
        stored = await _killed_while_batched(["--plan", str(plan)], tmp_path, sim.base_url, 2)
        summary = stored.summary
        pending = {c.batch_id for node in stored.attempts.values() for a in node
                   for c in a.batch_pending}  # fmt: skip
        (batch_id,) = pending  # stored before the results were awaited

        clock.run(60)  # a minute later, the batch has ended
        with anyio.fail_after(120):
            again = await anyio.run_process(
                [*CLI, "resume", summary.run_id, "--json", *home],
                env=_env(sim.base_url), check=False,
            )  # fmt: skip
        created = [r for r in sim.requests if r.notes.get("action") == "create"]
        interactive = [r for r in sim.requests if r.path == "/v1/messages"]

    assert again.returncode == 0, again.stderr.decode()
    result = json.loads(again.stdout)
    assert result["status"] == "succeeded"
    assert len(created) == 1, "the resumed run sent its calls again"
    assert not interactive
    attempts = [a for node in result["nodes"] for a in node["attempts"]]
    killed = [a for a in attempts if a["error_type"] == "interrupted"]
    collected = [a for a in attempts if a["error_type"] is None]
    assert len(killed) == len(collected) == 2
    # Paid once: the killed attempts' worst case moved to the attempts that read the batch,
    # which settled it to the batch price of what the calls really used.
    assert all(a["cost_usd"] == 0 and not a["batch_pending"] for a in killed)
    assert all(a["batch_calls"] == a["calls"] == 1 and a["cost_usd"] > 0 for a in collected)
    assert Decimal(str(result["cost_usd"])) == sum(
        (Decimal(str(a["cost_usd"])) for a in collected), Decimal(0)
    )
    assert Decimal(str(result["batch_saving_usd"])) == Decimal(str(result["cost_usd"]))
    assert batch_id.startswith("msgbatch_")


async def test_batch_calls_keep_cache_prefixes_an_hour_and_pay_for_them_at_batch_price() -> None:
    from orchestrator.models.base import Message, ModelRequest

    tier = default_ladder()[1]
    system = " ".join(f"Rule {i}: cite every passage you use by its id." for i in range(400))
    budget = Budget()
    meters: dict[str, Meter] = {}
    async with (
        serve(SimConfig(seed=5, time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-test",
                        batch_collect_s=0.05, batch_poll_s=0.01) as client,
    ):  # fmt: skip
        tier = tier.model_copy(update={"base_url": sim.base_url})

        async def ask(question: str) -> None:
            meters[question] = meter = Meter(tier, budget)
            request = ModelRequest(
                tier=tier, system=system, max_output_tokens=64, batch=True,
                messages=[Message(role="user", content=question)],
            )  # fmt: skip
            await client.complete(request, meter)

        async with anyio.create_task_group() as tg:  # one batch: its requests run at once
            tg.start_soon(ask, "What is a heap?")
            tg.start_soon(ask, "What is a trie?")
        await ask("What is a deque?")  # the next batch
    created = [r for r in sim.requests if r.notes.get("action") == "create"]
    assert len(created) == 2
    heap, trie, deque = (meters[q].usage for q in meters)
    # In one batch, neither request read what the other wrote: both wrote the prefix...
    assert heap.cache_write_tokens == trie.cache_write_tokens > 0
    assert heap.cache_read_tokens == trie.cache_read_tokens == 0
    assert heap.cache_write_1h_tokens == heap.cache_write_tokens  # ...for an hour
    assert deque.cache_read_tokens == heap.cache_write_tokens  # and the next batch read it
    assert meters["What is a heap?"].cost_usd == tier.batch_cost(heap)  # 1 h writes, half price
    assert budget.spent_usd == sum((m.cost_usd for m in meters.values()), Decimal(0))


@pytest.mark.parametrize(
    ("config", "error_type"),
    [
        (SimConfig(seed=6, time_scale=0, batch_error_rate=1.0), "api_error"),
        (
            SimConfig(seed=6, time_scale=1, batch_delay_s=0.02, batch_expiry_s=0.001),
            "batch_expired",
        ),
    ],
)
async def test_errored_and_expired_batch_entries_are_retried_and_never_billed(
    config: SimConfig, error_type: str
) -> None:
    from orchestrator.models.retry import RetryPolicy

    client = AnthropicClient(
        api_key="offline-test", batch_collect_s=0.01, batch_poll_s=0.01,
        retry=RetryPolicy(max_retries=1, base_delay_s=0.01),
    )  # fmt: skip
    plan = Plan(goal="g", tasks=[Task(id="t", instruction="Name a heap use.")])
    with anyio.fail_after(60):
        async with serve(config) as sim, client:
            ladder = default_ladder().with_endpoint(sim.base_url)
            result = await Engine(client, ladder).run(plan, batch=True, max_tier="haiku")
            created = [r for r in sim.requests if r.notes.get("action") == "create"]
    (node,) = result.nodes
    assert node.status == "failed"
    (attempt,) = node.attempts
    assert attempt.error_type == error_type
    assert len(created) == 2  # sent, then retried once in the next batch
    assert client.errors_seen[error_type] == 2
    assert result.cost_usd == 0  # an entry that did not run is not billed
    assert not attempt.cost_unknown


async def test_a_run_killed_while_its_plan_waits_in_a_batch_collects_that_plan(
    tmp_path: Path,
) -> None:
    home = ["--home", str(tmp_path)]
    clock = _Clock()
    goal = "How do Python context managers handle exceptions?"
    config = SimConfig(seed=7, time_scale=0.02)
    async with serve(config, clock=clock) as sim:
        # planning's round waits in a batch that cannot end
        stored = await _killed_while_batched([goal], tmp_path, sim.base_url, 1)
        summary = stored.summary
        clock.run(60)
        (killed,) = stored.attempts[PLANNING_NODE]
        (waiting,) = killed.batch_pending  # stored before the plan was awaited
        with anyio.fail_after(120):
            again = await anyio.run_process(
                [*CLI, "resume", summary.run_id, "--batch", "--json", *home],
                env=_env(sim.base_url), check=False,
            )  # fmt: skip
        planned = [r for r in sim.requests if r.custom_id is not None and r.kind == "plan"]
    assert again.returncode == 0, again.stderr.decode()
    result = json.loads(again.stdout)
    assert result["status"] == "succeeded"
    assert [r.batch_id for r in planned] == [waiting.batch_id], "the resumed run planned again"
    planning = result["planning"]
    assert planning["rounds"] == 2  # the killed round (now $0) and the one that read it
    assert all(a["batch_calls"] for n in result["nodes"] for a in n["attempts"])


async def test_a_task_can_choose_batch_or_not_whatever_the_run_says() -> None:
    plan = Plan(goal="mixed", tasks=[
        Task(id="later", instruction="List 2 uses of a heap.", batch=True),
        Task(id="now", instruction="List 2 uses of a trie."),
        Task(id="never", instruction="List 2 uses of a deque.", batch=False),
    ])  # fmt: skip
    async with serve(SimConfig(seed=8, time_scale=0)) as sim:
        client = AnthropicClient(
            base_url=sim.base_url, api_key="offline-test", batch_collect_s=0.01, batch_poll_s=0.01
        )
        async with client:
            engine = Engine(client)
            alone = await engine.run(plan)
            batched = await engine.run(plan, batch=True)
    calls = {r.id: r.attempts[0].batch_calls for r in alone.nodes}
    assert calls == {"later": 1, "now": 0, "never": 0}
    calls = {r.id: r.attempts[0].batch_calls for r in batched.nodes}
    assert calls == {"later": 1, "now": 1, "never": 0}
