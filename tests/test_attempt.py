"""A Python node's attempt record: what it holds while running, when it ends, on events."""

from __future__ import annotations

import json

import anyio
import pytest

from orchestrator import (
    Attempt,
    AttemptFinished,
    AttemptStarted,
    Engine,
    NodeFinished,
    NodeStatus,
    Predicate,
    RunResult,
    RunStatus,
    Workflow,
)
from orchestrator.events import Event
from orchestrator.testing import TestModel

pytestmark = pytest.mark.anyio


async def test_running_python_node_shows_its_open_attempt_and_a_cancelled_one_records_it() -> None:
    started, release = anyio.Event(), anyio.Event()
    wf = Workflow("cancel a python node")

    @wf.task
    async def wait() -> str:
        started.set()
        await release.wait()
        return "never"

    run = Engine(TestModel()).prepare(wf)  # no listener: the engine's quiet path
    results: list[RunResult] = []

    async def execute() -> None:
        results.append(await run.execute())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            await started.wait()
            running = run.snapshot().node("wait")
            assert running.final_tier == "python"
            [open_attempt] = running.attempts
            assert open_attempt.started_at is not None
            assert open_attempt.finished_at is None
            assert open_attempt.verdict is None
            run.cancel()
    node = results[0].node("wait")
    assert results[0].status is RunStatus.CANCELLED
    assert node.status is NodeStatus.NOT_RUN
    assert node.reason == "cancelled"
    [attempt] = node.attempts
    assert (attempt.error, attempt.error_type) == ("cancelled", "cancelled")
    assert attempt.finished_at is not None
    assert attempt.finished_at >= attempt.started_at
    assert not attempt.passed


async def test_listeners_see_the_attempt_open_then_settled() -> None:
    wf = Workflow("watched")

    @wf.task(verify=[Predicate(lambda total: total > 0, "total must be positive")])
    async def total() -> int:
        return 5

    seen: list[tuple[str, bool, bool]] = []

    def listener(event: Event) -> None:
        if isinstance(event, AttemptStarted | AttemptFinished):
            attempt = event.attempt
            seen.append(
                (type(event).__name__, attempt.finished_at is not None, attempt.verdict is not None)
            )
        elif isinstance(event, NodeFinished):
            seen.append(("NodeFinished", event.result.status is NodeStatus.SUCCEEDED, True))

    result = await Engine(TestModel(), listeners=[listener]).run(wf)
    assert seen == [
        ("AttemptStarted", False, False),
        ("AttemptFinished", True, True),
        ("NodeFinished", True, True),
    ]
    [attempt] = result.node("total").attempts
    assert attempt.passed
    assert attempt.verdict is not None
    assert attempt.verdict.verifier != "none"


async def test_failed_python_node_records_the_error_and_serialises_like_any_attempt() -> None:
    wf = Workflow("broken")

    @wf.task
    async def load() -> str:
        raise FileNotFoundError("data.csv")

    @wf.task
    async def fine() -> int:
        return 1

    result = await Engine(TestModel()).run(wf)
    failed, succeeded = result.node("load"), result.node("fine")
    assert failed.status is NodeStatus.FAILED
    assert failed.reason == "FileNotFoundError: data.csv"
    [attempt] = failed.attempts
    assert attempt.error_type == "FileNotFoundError"
    assert attempt.verdict is None
    assert attempt.finished_at is not None
    assert succeeded.status is NodeStatus.SUCCEEDED
    assert succeeded.attempts[0].verdict is not None
    assert succeeded.attempts[0].verdict.verifier == "none"
    document = json.loads(result.model_dump_json())
    for node in document["nodes"]:
        [stored] = node["attempts"]
        assert list(stored) == list(Attempt.model_fields)  # field order, as validated
        assert stored["tier"] == "python"
        assert stored["model"] is None
    assert RunResult.model_validate(document) == result
