"""When each record reaches the store: paid work at once, free work written behind.

``StoreListener(durability="async")``, the default, writes the records of plain Python
nodes behind, together with the next paid record or at the run's end; everything that costs
money is durable before the engine moves on, with everything queued before it.
``durability="sync"`` writes every record at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Engine, JudgeVerdict, LLMJudge, Workflow
from orchestrator.results import Attempt, NodeResult
from orchestrator.store import MemoryStore, SQLiteStore, StoreListener
from orchestrator.testing import TestModel

pytestmark = pytest.mark.anyio


class LoggingStore(MemoryStore):
    """A memory store that logs each write call: which records, in which call."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, ...]] = []

    async def record_attempt(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        self.log.append(("attempt", f"{node_id}/{attempt.tier}"))
        await super().record_attempt(run_id, node_id, attempt)

    async def record_node(self, run_id: str, result: NodeResult) -> None:
        self.log.append(("node", result.id))
        await super().record_node(run_id, result)

    async def record_many(
        self,
        run_id: str,
        attempts: Sequence[tuple[str, Attempt]] = (),
        nodes: Sequence[NodeResult] = (),
    ) -> None:
        records = [f"attempt {n}/{a.tier}" for n, a in attempts] + [f"node {r.id}" for r in nodes]
        self.log.append(("many", *records))
        for node_id, attempt in attempts:
            await MemoryStore.record_attempt(self, run_id, node_id, attempt)
        for result in nodes:
            await MemoryStore.record_node(self, run_id, result)


def python_then_model() -> Workflow:
    """A Python node, a second one after it, then an LLM node that reads the second."""
    workflow = Workflow("parse then summarise")

    @workflow.task
    def fetch() -> str:
        return "raw text"

    @workflow.task
    def parse(fetch: str) -> str:
        return fetch.upper()

    @workflow.llm()
    def summarise(parse: str) -> str:
        return f"Summarise: {parse}"

    return workflow


def writes(log: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [entry for entry in log if entry[0] in ("attempt", "node", "many")]


async def test_free_work_is_written_with_the_next_paid_record() -> None:
    store = LoggingStore()
    engine = Engine(TestModel("a summary"), listeners=[StoreListener(store)])
    result = await engine.run(python_then_model())
    assert result.status == "succeeded"

    log = writes(store.log)
    # nothing of the Python nodes was written on its own: the LLM attempt's first record
    # carried them, in order, in one call, before the model was called
    assert log[0] == (
        "many",
        "attempt fetch/python",
        "attempt parse/python",
        "attempt summarise/haiku",
        "node fetch",
        "node parse",
    )
    assert all(entry[0] != "node" or entry[1] == "summarise" for entry in log)
    stored = await store.load_run(result.run_id)
    assert set(stored.nodes) == {"fetch", "parse", "summarise"}


async def test_sync_durability_writes_each_record_before_the_engine_moves_on() -> None:
    store = LoggingStore()
    engine = Engine(TestModel("a summary"), listeners=[StoreListener(store, durability="sync")])
    await engine.run(python_then_model())

    log = writes(store.log)
    assert log[:4] == [
        ("attempt", "fetch/python"),  # started
        ("many", "attempt fetch/python", "node fetch"),  # its answer with its result, at once
        ("attempt", "parse/python"),
        ("many", "attempt parse/python", "node parse"),
    ]
    # each write carries one record, or a node's answer with its result
    assert all(entry[0] != "many" or len(entry) == 3 for entry in log)


async def test_a_python_only_run_is_written_in_batches_and_completely_by_its_end(
    tmp_path: Path,
) -> None:
    workflow = Workflow("a chain of Python steps")
    previous: Any = None
    for index in range(9):
        depends = [previous] if previous is not None else []
        previous = workflow.task(name=f"step{index}", depends_on=depends)(_step)

    logged = LoggingStore()
    listener = StoreListener(logged, max_deferred=4, max_delay_s=3600)
    result = await Engine(TestModel("unused"), listeners=[listener]).run(workflow)
    batches = [entry for entry in writes(logged.log) if entry[0] == "many"]
    # each step finishes an attempt and a node: a batch every 4 records, the rest at the end
    assert [len(batch) - 1 for batch in batches] == [4, 4, 4, 4, 2]
    assert not [entry for entry in writes(logged.log) if entry[0] != "many"]

    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        result = await Engine(TestModel("unused"), listeners=[StoreListener(store)]).run(workflow)
        stored = await store.load_run(result.run_id)
    finally:
        await store.aclose()
    assert stored.result is not None
    assert stored.result.status == "succeeded"
    assert sorted(stored.nodes) == sorted(f"step{index}" for index in range(9))
    assert all(len(stored.attempts[f"step{index}"]) == 1 for index in range(9))


async def _step() -> None:
    return None


def test_a_listener_refuses_an_unknown_durability() -> None:
    with pytest.raises(ValueError, match="durability must be 'async' or 'sync'"):
        StoreListener(MemoryStore(), durability="eventually")  # type: ignore[arg-type]


async def test_a_python_node_whose_verifier_asks_a_judge_is_paid_work() -> None:
    workflow = Workflow("checked by a judge")

    @workflow.task(verify=[LLMJudge("is a greeting")])
    def greet() -> str:
        return "hello"

    judge = JudgeVerdict(passed=True, reason="it greets", score=0.9).model_dump_json()
    store = LoggingStore()
    engine = Engine(TestModel(judge), listeners=[StoreListener(store)])
    result = await engine.run(workflow)
    assert result.status == "succeeded"
    assert result.cost_usd > 0

    log = writes(store.log)
    # the judge's reserved call, then the attempt with its cost and the node together: at once
    assert ("attempt", "greet/python") in log
    assert log[-1] == ("many", "attempt greet/python", "node greet")
    assert [entry for entry in log if entry[0] == "many"] == [log[-1]]
