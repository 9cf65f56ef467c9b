"""Streaming to the caller: ``async for event in run.events()`` and ``run --json-stream``.

Through the real client (the SDK over HTTP) against the simulator, which streams its
answers as server-sent events when a run wants their text.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import (
    AttemptFinished,
    AttemptStarted,
    CostUpdated,
    Engine,
    Escalated,
    Event,
    Goal,
    NodeFinished,
    NodeStarted,
    Plan,
    RequiredSectionsSpec,
    RunFinished,
    RunStatus,
    Task,
    TextDelta,
    ToolCalled,
    ToolReturned,
    VerdictGiven,
)
from orchestrator.cli import main
from orchestrator.cli.stream import json_stream
from orchestrator.event_json import EVENT_TYPES, event_json
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.retry import RetryPolicy
from orchestrator.store import MemoryStore, StoreListener
from orchestrator.testing import EventCapture, TestModel
from orchestrator.tools import tool
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

PLAN_FILE = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"


@tool
def search_notes(query: str) -> str:
    """Search the team's notes; returns matching notes with their ids."""
    return json.dumps({"results": [{"id": "note1", "text": f"the queue drops jobs ({query})"}]})


@tool
def read_note(note_id: str) -> str:
    """Read one note in full by its id."""
    return f"Note {note_id}: the queue drops jobs when the worker restarts."


def plan() -> Plan:
    """A tool call (``look``) and an escalation (``write``: Haiku omits a section)."""
    return Plan(
        goal="queue incident",
        tasks=[
            Task(id="look", instruction="Find what the notes say. [difficulty=1]",
                 tools=("search_notes", "read_note")),
            Task(id="write", depends_on=("look",),
                 instruction="Write the incident report. [difficulty=2]\n"
                 "Required sections: Summary, Risks",
                 verify=[RequiredSectionsSpec(sections=["Summary", "Risks"])]),
        ],
    )  # fmt: skip


async def planned(goal: str, budget: Any, on_attempt: Any) -> Plan:
    """A planner that needs no model: the goal is planned inside the run all the same."""
    return plan()


@pytest.fixture
async def client() -> AsyncIterator[AnthropicClient]:
    config = SimConfig(time_scale=0, seed=1, subtle_flaw_rate=0.0)  # Haiku's flaws show
    async with serve(config) as server:
        sdk_client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with sdk_client:
            yield sdk_client


def engine(client: AnthropicClient, *listeners: Any) -> Engine:
    return Engine(client, tools=[search_notes, read_note], listeners=list(listeners))


async def read_all(events: AsyncIterator[Event]) -> list[Event]:
    with anyio.fail_after(30):
        return [event async for event in events]


async def test_every_event_type_of_a_run_with_a_tool_call_and_an_escalation(
    client: AnthropicClient,
) -> None:
    stream = engine(client).stream(Goal("queue incident", planned), budget_usd=1)
    events = await read_all(stream)
    seen = {EVENT_TYPES[type(event)] for event in events}  # a revision: tests/test_replan.py
    assert seen == set(EVENT_TYPES.values()) - {"plan_revised"}
    assert all(json.loads(json.dumps(event_json(event))) for event in events)
    assert stream.result is not None
    assert stream.result.status is RunStatus.SUCCEEDED
    (escalation,) = [e for e in events if isinstance(e, Escalated)]
    assert (escalation.node_id, escalation.from_tier, escalation.to_tier) == (
        "write", "haiku", "sonnet"
    )  # fmt: skip
    assert "Risks" in escalation.reason or "Summary" in escalation.reason
    (called,) = [e for e in events if isinstance(e, ToolCalled) and e.name == "search_notes"]
    assert called.node_id == "look"
    assert isinstance(called.arguments, dict)
    returned = [e for e in events if isinstance(e, ToolReturned)]
    assert returned[0].call_id == called.call_id
    assert "drops jobs" in returned[0].content
    # the deltas of the answering call are the answer, as it came
    final = stream.result.node("write").attempts[-1].number
    text = "".join(
        e.text for e in events if isinstance(e, TextDelta) and e.node_id == "write"
        and e.attempt == final
    )  # fmt: skip
    assert text == stream.result.node("write").output
    # cost updates add up to the result, exactly
    costs = [e for e in events if isinstance(e, CostUpdated)]
    assert costs[-1].spent_usd == stream.result.cost_usd
    assert costs[-1].budget_usd == Decimal(1)
    verdicts = [e.verdict for e in events if isinstance(e, VerdictGiven) and e.node_id == "write"]
    assert [v.passed for v in verdicts] == [False, True]
    assert verdicts[0].verifier == "required_sections"


def positions(
    events: list[Event], kind: type[Any], node: str, attempt: int | None = None
) -> list[int]:
    return [
        i for i, e in enumerate(events)
        if isinstance(e, kind) and _node(e) == node
        and (attempt is None or _number(e) == attempt)
    ]  # fmt: skip


def _node(event: Any) -> str:
    return str(event.result.id if isinstance(event, NodeFinished) else event.node_id)


def _number(event: Any) -> int:
    attempt = event.attempt
    return int(attempt if isinstance(attempt, int) else attempt.number)


async def test_events_come_in_order(client: AnthropicClient) -> None:
    events = await read_all(engine(client).prepare(plan()).events())
    assert isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    for node in ("look", "write"):
        (started,) = positions(events, NodeStarted, node)
        (finished,) = positions(events, NodeFinished, node)
        for begun in positions(events, AttemptStarted, node):
            number = _number(events[begun])
            (ended,) = positions(events, AttemptFinished, node, number)
            about = [
                i for kind in (TextDelta, ToolCalled, ToolReturned, CostUpdated, VerdictGiven)
                for i in positions(events, kind, node, number)
            ]  # fmt: skip
            assert about  # every attempt reports something between its start and end
            assert started < begun < min(about) <= max(about) < ended < finished
    (escalated,) = positions(events, Escalated, "write")
    first, second = positions(events, AttemptStarted, "write")
    assert positions(events, AttemptFinished, "write", 1)[0] < escalated < second
    assert first < escalated
    for called in (i for i, e in enumerate(events) if isinstance(e, ToolCalled)):
        call_id = events[called].call_id  # type: ignore[union-attr]
        returned = [i for i, e in enumerate(events) if isinstance(e, ToolReturned)
                    and e.call_id == call_id]  # fmt: skip
        assert returned
        assert returned[0] > called


async def test_a_slow_reader_loses_nothing(client: AnthropicClient) -> None:
    emitted = EventCapture(text=True)
    many = Plan(
        goal="many",
        tasks=[
            Task(id=f"t{i}", instruction=f"Explain topic {i}. [difficulty=1]") for i in range(4)
        ],
    )
    seen: list[Event] = []
    with anyio.fail_after(30):
        async for event in engine(client, emitted).prepare(many).events(buffer=1):
            seen.append(event)
            for _ in range(20):  # slower than the run
                await anyio.lowlevel.checkpoint()
    assert seen == emitted.events  # every event, in order
    assert sum(isinstance(e, TextDelta) for e in seen) >= 4


async def run_ahead(emitted: EventCapture) -> None:
    """Let the run go on until it emits nothing more: every task of it waits (for us)."""
    while True:
        before = len(emitted.events)
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        if len(emitted.events) == before:
            return


async def test_a_slow_reader_holds_the_run_back_by_at_most_the_buffer() -> None:
    emitted = EventCapture(text=True)
    many = Plan(goal="many", tasks=[Task(id=f"t{i}", instruction="x") for i in range(20)])
    buffer, concurrency = 3, 4
    run = Engine(TestModel("", by_tier={"opus": "ok"}), listeners=[emitted]).prepare(
        many, max_concurrency=concurrency
    )
    seen: list[Event] = []
    lag = 0
    with anyio.fail_after(30):
        async for event in run.events(buffer=buffer):
            seen.append(event)
            await run_ahead(emitted)  # the run goes as far as it can meanwhile
            lag = max(lag, len(emitted.events) - len(seen))
    assert seen == emitted.events
    assert len(seen) > 20 * 10
    # waiting: what the buffer holds, and one event per task that emits (a node, the run)
    assert buffer <= lag <= buffer + concurrency + 1


async def test_breaking_out_cancels_the_run_and_nothing_hangs(client: AnthropicClient) -> None:
    store = MemoryStore()
    ended = anyio.Event()

    def on_end(event: Event) -> None:
        if isinstance(event, RunFinished):
            ended.set()

    run = engine(client, StoreListener(store), on_end).prepare(plan())
    with anyio.fail_after(30):
        async for event in run.events():
            if isinstance(event, TextDelta):
                break  # the first piece of text: enough
        await ended.wait()  # the run ends by itself, its events dropped
    result = run.snapshot()
    assert result.status is RunStatus.CANCELLED
    assert result.node("write").attempts == []
    stored = await store.load_run(run.run_id)
    assert stored.result is not None
    assert stored.result.status is RunStatus.CANCELLED


async def test_leaving_an_entered_stream_waits_for_the_run_to_end(client: AnthropicClient) -> None:
    run = engine(client).prepare(plan())
    with anyio.fail_after(30):
        async with run.events() as events:
            async for event in events:
                if isinstance(event, AttemptStarted):
                    break
        assert run.snapshot().status is RunStatus.CANCELLED  # ended when the block did
    assert [event async for event in events] == []  # closed: the rest was dropped


async def test_a_kept_iterator_only_pauses_the_run() -> None:
    many = Plan(goal="g", tasks=[Task(id=f"t{i}", instruction="x") for i in range(5)])
    events = Engine(TestModel("done")).prepare(many).events(buffer=1)
    with anyio.fail_after(10):
        async for event in events:
            if isinstance(event, NodeStarted):
                break  # kept in a variable: the run waits for us
        rest = [event async for event in events]
    assert isinstance(rest[-1], RunFinished)
    assert events.result is not None
    assert events.result.status is RunStatus.SUCCEEDED


async def test_what_cannot_be_streamed_says_so() -> None:
    engine = Engine(TestModel("done"))
    one = Plan(goal="g", tasks=[Task(id="t", instruction="x")])
    with pytest.raises(ValueError, match="at least 1 event"):
        engine.prepare(one).events(buffer=0)
    closed = engine.stream(one)
    await closed.aclose()  # before it started: nothing ran
    with pytest.raises(RuntimeError, match="closed"):
        await anext(closed)
    run = engine.prepare(one)
    await run.execute()
    with pytest.raises(RuntimeError, match="already executed"):
        await read_all(run.events())  # the run's own error, raised to the reader


async def test_a_cancelled_reader_cancels_the_run(client: AnthropicClient) -> None:
    ended = anyio.Event()
    run = engine(client, lambda e: ended.set() if isinstance(e, RunFinished) else None).prepare(
        plan()
    )
    with anyio.fail_after(30):
        with anyio.CancelScope() as scope:
            async for event in run.events():
                if isinstance(event, NodeStarted):
                    scope.cancel()
        await ended.wait()
    assert run.snapshot().status is RunStatus.CANCELLED


async def test_text_is_not_streamed_unless_asked_for(client: AnthropicClient) -> None:
    events = await read_all(engine(client).prepare(plan()).events(text=False))
    assert not any(isinstance(e, TextDelta) for e in events)
    assert any(isinstance(e, ToolCalled) for e in events)


async def test_a_call_cut_off_mid_stream_is_sent_again_with_the_next_retry_number() -> None:
    # Most tries of a stream end before message_stop: their text came, and is void.
    config = SimConfig(time_scale=0, fault_rate=0.6, fault_kinds={"truncated_body": 1}, seed=2)
    fast = RetryPolicy(max_retries=8, base_delay_s=0.001, max_delay_s=0.002)
    one = Plan(goal="g", tasks=[Task(id="t", instruction="Explain queues. [difficulty=1]")])
    async with serve(config) as server:
        sdk = AnthropicClient(base_url=server.base_url, api_key="t", retry=fast)
        async with sdk:
            stream = Engine(sdk).stream(one)
            events = await read_all(stream)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert any(d.retry > 0 for d in deltas)
    last = max(d.retry for d in deltas)
    assert stream.result is not None
    assert "".join(d.text for d in deltas if d.retry == last) == stream.result.node("t").output


async def test_events_as_json_lines(client: AnthropicClient) -> None:
    out = FlushCounter()
    result = await json_stream(engine(client).prepare(plan()), out)
    lines = out.getvalue().splitlines()
    assert out.flushes == len(lines)  # each line reaches the reader as it is written
    documents = [json.loads(line) for line in lines]
    assert all(d["type"] in EVENT_TYPES.values() for d in documents)
    last = documents[-1]
    assert last.pop("type") == "run_finished"
    assert last == json.loads(json.dumps(result.model_dump(mode="json")))
    cost = next(d for d in documents if d["type"] == "cost")
    assert isinstance(cost["spent_usd"], float)


class FlushCounter(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_event_json_names_every_event() -> None:
    from orchestrator import events as module

    kinds = {getattr(module, name) for name in module.__all__} - {
        module.EventBus, module.Listener, module.Event
    }  # fmt: skip
    assert kinds == set(EVENT_TYPES)
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)


async def test_test_doubles_report_their_text_too() -> None:
    events = [
        e
        async for e in Engine(TestModel("done")).stream(
            Plan(goal="g", tasks=[Task(id="t", instruction="x")])
        )
    ]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert [(d.text, d.purpose, d.call, d.retry) for d in deltas] == [("done", "task", 1, 0)]
    assert event_json(deltas[0])["type"] == "text_delta"


_TIMING = {"run_id", "started_at", "finished_at", "wall_s", "trace_id"}


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in _TIMING}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_cli_json_stream_ends_with_the_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--offline", "--plan", str(PLAN_FILE), "--seed", "4", "--max-concurrency", "1"]
    assert main(["run", *flags, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert main(["run", *flags, "--json-stream"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]  # every line parses
    assert [line["type"] for line in lines][:2] == ["run_started", "node_started"]
    assert {"text_delta", "cost", "verdict"} <= {line["type"] for line in lines}
    last = lines[-1]
    assert last.pop("type") == "run_finished"
    assert _untimed(last) == _untimed(document)
    assert "features" in captured.err  # progress on stderr as ever
    # resume streams too: the run is done, so it only starts and finishes again
    assert main(["resume", last["run_id"], "--offline", "--json-stream"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert again[-1]["type"] == "run_finished"
    assert again[-1]["run_id"] == last["run_id"]


def test_cli_json_and_json_stream_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--offline", "--plan", str(PLAN_FILE), "--json", "--json-stream"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
