"""Prompt caching as a user sees it: what was read, written and saved, and a switch to compare."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import anyio
import pytest

from orchestrator import (
    Engine,
    JudgeSpec,
    Needs,
    Plan,
    Prompt,
    RunConfig,
    RunResult,
    Task,
    TierLadder,
    Workflow,
    default_ladder,
)
from orchestrator.cli import main
from orchestrator.cli.render import render_summary
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.pricing import Usage
from orchestrator.tools import tool
from orchestrator_sim import SimConfig, default_models, serve

pytestmark = pytest.mark.anyio

# A system prompt long enough to cache on every tier (the simulator, like the API, caches
# nothing shorter than the model's minimum: 1,024 tokens by default).
HOUSE_RULES = "\n".join(
    f"Rule {i}: answer in plain words, cite what you use, and say what you do not know."
    for i in range(400)
)


def workflow() -> Workflow:
    flow = Workflow("cached")
    for i in range(4):

        def prompt(text: str = f"Summarise topic {i} in two sentences.") -> str:
            return text

        flow.llm(name=f"t_{i}", needs=Needs(reasoning=1))(prompt)
    return flow


async def run(*, cache: bool) -> RunResult:
    config = RunConfig(system_prompt=HOUSE_RULES, max_concurrency=1, cache=cache)
    async with serve(SimConfig(time_scale=0)) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with client:
            with anyio.fail_after(60):
                return await Engine(client, default_ladder(), config=config).run(workflow())


async def test_the_run_says_what_the_cache_read_wrote_and_saved() -> None:
    cached = await run(cache=True)
    attempts = [a for node in cached.nodes for a in node.attempts]
    assert attempts[0].cache_write_tokens > 0  # the first call writes the system prompt
    assert all(a.cache_read_tokens > 0 for a in attempts[1:])  # the others read it
    assert cached.cache_read_tokens == sum(a.cache_read_tokens for a in attempts)
    assert cached.cache_write_tokens == sum(a.cache_write_tokens for a in attempts)
    haiku = default_ladder().get("haiku")
    expected = sum(
        (
            haiku.cost(u.uncached()) - haiku.cost(u)
            for u in (
                Usage(
                    input_tokens=a.input_tokens, output_tokens=a.output_tokens,
                    cache_write_tokens=a.cache_write_tokens, cache_read_tokens=a.cache_read_tokens,
                )
                for a in attempts
            )
        ),
        Decimal(0),
    )  # fmt: skip
    assert cached.cache_saving_usd == expected > 0

    uncached = await run(cache=False)
    plain = [a for node in uncached.nodes for a in node.attempts]
    assert all(a.cache_read_tokens == a.cache_write_tokens == 0 for a in plain)
    assert uncached.cache_saving_usd == 0
    assert cached.cost_usd + cached.cache_saving_usd == uncached.cost_usd


async def test_the_summary_shows_what_the_cache_read_and_saved() -> None:
    cached = await run(cache=True)
    summary = render_summary(cached)
    assert f"prompt cache: {cached.cache_read_tokens:,} tokens read" in summary
    assert f"saved ${cached.cache_saving_usd:.4f}" in summary
    assert "prompt cache" not in render_summary(await run(cache=False))


def test_the_cli_can_turn_caching_off(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"
    assert main(["run", "--offline", "--plan", str(plan), "--no-cache", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["cache_read_tokens"], result["cache_write_tokens"]) == (0, 0)


def small_cache_minimum(time_scale: float = 0.0) -> tuple[TierLadder, SimConfig]:
    """The default ladder and simulator, with models that cache prefixes of 20 tokens up."""
    ladder = TierLadder(
        tiers=tuple(t.model_copy(update={"cache_min_tokens": 20}) for t in default_ladder().tiers)
    )
    models = {k: m.model_copy(update={"cache_min_tokens": 20}) for k, m in default_models().items()}
    return ladder, SimConfig(time_scale=time_scale, models=models)


@pytest.mark.parametrize("concurrency", [1, 16])
async def test_siblings_reading_the_same_inputs_share_a_cached_prefix(concurrency: int) -> None:
    """Planned tasks put their inputs first; the nodes that read the same inputs get a
    cache breakpoint after them, so the first writes and the rest read. Run at once, the
    others wait for the first's call rather than each writing the prefix again."""
    plan = Plan(
        goal="siblings",
        tasks=[
            Task(id="notes", instruction="Write notes on glaciers. [difficulty=1]"),
            *(
                Task(id=f"use_{i}", instruction=f"Use the notes for purpose {i}. [difficulty=1]",
                     depends_on=("notes",))
                for i in range(3)
            ),
            Task(id="alone", instruction="Summarise use_0. [difficulty=1]", depends_on=("use_0",)),
        ],
    )  # fmt: skip
    # With latency, a prefix being written is not readable until its response begins (as
    # in the API): siblings sent at once would all write it.
    ladder, sim = small_cache_minimum(time_scale=0.0 if concurrency == 1 else 0.2)
    config = RunConfig(max_concurrency=concurrency)
    async with serve(sim) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with client:
            with anyio.fail_after(60):
                result = await Engine(client, ladder, config=config).run(plan)
    assert result.status == "succeeded"
    siblings = [result.node(f"use_{i}").attempts[0] for i in range(3)]
    first, *rest = sorted(siblings, key=lambda a: a.started_at)
    assert first.cache_write_tokens > 0  # the first writes the inputs (after the system prompt)
    prefix = first.cache_read_tokens + first.cache_write_tokens
    for later in rest:  # the others read system prompt and inputs, and write nothing
        assert (later.cache_read_tokens, later.cache_write_tokens) == (prefix, 0)
    alone = result.node("alone").attempts[0]  # its inputs nobody else reads: no breakpoint
    assert alone.cache_write_tokens == 0
    assert result.cache_saving_usd > 0


async def test_siblings_go_on_once_the_writer_is_answered_and_their_judges_share() -> None:
    """The others go on once the writer's first call is answered (its prefix is cached then),
    not once its whole attempt, judge included, ended; and the judges of siblings, shown
    the same criteria, share that prefix on their model the same way."""
    judge = JudgeSpec(criteria="The answer uses the notes. " * 8, inputs=False)
    plan = Plan(
        goal="siblings",
        tasks=[
            Task(id="notes", instruction="Write notes on glaciers. [difficulty=1]"),
            *(
                Task(id=f"use_{i}", instruction=f"Use the notes for purpose {i}. [difficulty=1]",
                     depends_on=("notes",), verify=(judge,))
                for i in range(3)
            ),
        ],
    )  # fmt: skip
    ladder, sim = small_cache_minimum(time_scale=0.2)
    async with serve(sim) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with client:
            with anyio.fail_after(60):
                result = await Engine(client, ladder).run(plan)
    assert result.status == "succeeded"
    siblings = sorted(
        (result.node(f"use_{i}").attempts[0] for i in range(3)), key=lambda a: a.started_at
    )
    first, *rest = siblings
    assert first.finished_at is not None
    assert all(later.started_at < first.finished_at for later in rest)  # not after its judge
    assert all(later.cache_write_tokens == 0 for later in rest)  # answers and judges read
    judged = [a.cache_read_tokens - first.cache_read_tokens for a in rest]
    assert all(extra > 0 for extra in judged)  # their judges read the criteria too


async def test_a_prefix_is_readable_once_the_response_that_writes_it_begins() -> None:
    """The simulator, like the API: requests sent together all write; a later one reads."""
    models = {k: m.model_copy(update={"cache_min_tokens": 20}) for k, m in default_models().items()}
    system = [{"type": "text", "text": HOUSE_RULES, "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-haiku-5-5", "max_tokens": 50, "system": system}
    async with serve(SimConfig(time_scale=0.2, models=models)) as server:
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0)
        async with client:
            together: list[Any] = []

            async def send(i: int) -> None:
                messages = [{"role": "user", "content": f"Question {i}."}]
                together.append(await client.messages.create(messages=messages, **ask))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for i in range(3):
                        tg.start_soon(send, i)
                later = await client.messages.create(
                    messages=[{"role": "user", "content": "Question 9."}], **ask
                )
    assert all(m.usage.cache_creation_input_tokens > 0 for m in together)
    assert all(m.usage.cache_read_input_tokens == 0 for m in together)
    assert later.usage.cache_read_input_tokens > 0
    assert later.usage.cache_creation_input_tokens == 0


async def test_a_workflow_marks_what_its_tasks_share_with_prompt() -> None:
    """In Python workflows, a task returns ``Prompt(shared=..., task=...)``: the tasks
    starting with the same material read it from the cache after the first writes it."""
    handbook = "\n".join(f"Section {i}: how the depot handles case {i}." for i in range(40))
    flow = Workflow("handbook")
    for i in range(4):

        def ask(text: str = f"Which section covers case {i}?") -> Prompt:
            return Prompt(shared=handbook, task=text)

        flow.llm(name=f"ask_{i}", needs=Needs(reasoning=1))(ask)
    ladder, sim = small_cache_minimum(time_scale=0.2)
    async with serve(sim) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with client:
            with anyio.fail_after(60):
                result = await Engine(client, ladder).run(flow)  # all four ready at once
    attempts = [node.attempts[0] for node in result.nodes]
    writers = [a for a in attempts if a.cache_write_tokens]
    assert len(writers) == 1
    assert all(
        a.cache_read_tokens >= writers[0].cache_write_tokens
        for a in attempts
        if a.cache_read_tokens
    )
    readers = [a for a in attempts if a.cache_read_tokens]
    assert len(readers) == 3
    assert all(a.cache_read_tokens > len(handbook) // 4 for a in readers)  # the handbook too
    assert str(Prompt(shared="A", task="B")) == "A\n\nB"


def test_the_cli_summary_says_what_the_cache_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the README promises: tasks reading the same inputs share them through the cache,
    the summary says what it read, wrote and saved, and --no-cache turns it off."""
    parts = ", ".join(f"Part {i}" for i in range(80))  # a briefing of ~1,800 tokens
    plan = {
        "goal": "questions on one briefing",
        "tasks": [
            {"id": "brief", "instruction": f"Write a briefing. Required sections: {parts}",
             "max_output_tokens": 8000},
            *({"id": f"ask_{i}", "instruction": f"Answer question {i} from the briefing.",
               "depends_on": ["brief"]} for i in range(3)),
        ],
    }  # fmt: skip
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert main(["run", "--offline", "--plan", str(path)]) == 0
    summary = capsys.readouterr().out
    assert "prompt cache:" in summary
    assert "saved $" in summary
    assert main(["run", "--offline", "--plan", str(path), "--json"]) == 0
    cached = json.loads(capsys.readouterr().out)
    assert cached["cache_read_tokens"] > 2 * 1024  # two of the three read the briefing
    assert main(["run", "--offline", "--plan", str(path), "--json", "--no-cache"]) == 0
    uncached = json.loads(capsys.readouterr().out)
    assert uncached["cache_read_tokens"] == 0
    assert Decimal(str(cached["cost_usd"])) < Decimal(str(uncached["cost_usd"]))


EXCERPT = " ".join(f"a long account of what happened, part {i}." for i in range(60))


@tool
def search(query: str) -> str:
    """Search the archive; returns matching records with long excerpts."""
    found = [{"id": f"rec{i}", "query": query, "excerpt": EXCERPT} for i in range(3)]
    return json.dumps({"results": found})


@tool
def read_record(record_id: str) -> str:
    """Read one record of the archive in full."""
    return "\n".join(f"Record {record_id}, line {i}: what happened next." for i in range(100))


async def test_each_turn_of_a_tool_loop_reads_the_conversation_so_far() -> None:
    """A tool loop re-sends its growing conversation; its last block carries a breakpoint,
    so each turn reads what the turn before wrote instead of paying for it again."""
    plan = Plan(
        goal="archive",
        tasks=[Task(id="find", instruction="Find what happened. [difficulty=1]",
                    tools=("search", "read_record"))],
    )  # fmt: skip
    ladder = TierLadder(tiers=(default_ladder().get("haiku"),))
    sim = SimConfig(time_scale=0, max_tool_calls=2)
    spans: dict[bool, RunResult] = {}
    for cache in (True, False):
        async with serve(sim) as server:
            client = AnthropicClient(base_url=server.base_url, api_key="test")
            async with client:
                engine = Engine(
                    client, ladder, tools=[search, read_record], config=RunConfig(cache=cache)
                )
                with anyio.fail_after(60):
                    spans[cache] = await engine.run(plan)
    cached, plain = spans[True].node("find").attempts[0], spans[False].node("find").attempts[0]
    assert cached.calls == plain.calls == 3  # search, read, then the answer
    assert cached.cache_read_tokens > 3 * len(EXCERPT) // 4  # the search result, read again
    assert plain.cache_read_tokens == plain.cache_write_tokens == 0
    assert cached.cost_usd < plain.cost_usd
