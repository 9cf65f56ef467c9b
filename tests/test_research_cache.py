"""Prompt caching on the research workload: passages the research tasks share, first in
their prompts and served from the cache; judge turns that put what judges share first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from orchestrator.budget import Budget, Meter
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.base import ModelRequest, TextBlock
from orchestrator.node import node_from_task
from orchestrator.plan import CitationsSpec, JudgeSpec, Plan, Task
from orchestrator.prompting import judge_messages
from orchestrator.research import (
    PASSAGES_INPUT,
    ResearchAgent,
    research_checks,
    shared_passages,
    with_shared_passages,
)
from orchestrator.results import RunResult
from orchestrator.run import RunConfig
from orchestrator.tiers import default_ladder
from orchestrator.tools.corpus import Corpus
from orchestrator.verifier import JudgeVerdict
from orchestrator.wire import (
    JUDGE_SYSTEM_PROMPT,
    inputs_prompt,
    judge_prompt,
    judge_shared_chars,
    shared_inputs_prompt,
)
from orchestrator_sim import SimConfig, serve
from orchestrator_sim.prompts import instruction, judge_parts

pytestmark = pytest.mark.anyio

GOAL = "How do Python context managers and the with statement handle exceptions?"
TOOLS = ("search_corpus", "read_passage")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.default()


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with serve(SimConfig(seed=0, time_scale=0)) as server:
        yield server


# -- the wire ---------------------------------------------------------------------------


def test_shared_inputs_are_an_inputs_prompt_in_two_parts() -> None:
    shared, rest = shared_inputs_prompt("Compare. [difficulty=1]", [("p", "alpha")], [("a", "b")])
    whole = inputs_prompt("Compare. [difficulty=1]", [("p", "alpha"), ("a", "b")])
    assert f"{shared}\n\n{rest}" == whole
    assert shared.endswith("</input>")
    assert "alpha" in shared
    assert "<input task='a'>" in rest
    alone, task = shared_inputs_prompt("Compare.", [("p", "alpha")])
    assert f"{alone}\n\n{task}" == inputs_prompt("Compare.", [("p", "alpha")])
    assert instruction(whole) == "Compare. [difficulty=1]"  # the simulator reads it as ever


def test_a_judge_turn_puts_what_judges_share_first() -> None:
    evidence = "<passage id='a.md#0'>\nIce melts.\n</passage>"
    prompt = judge_prompt("Explain ice. [difficulty=1]", "Faithful.", "It melts.", evidence)
    shared = prompt[: judge_shared_chars(prompt)]
    assert shared.startswith("Criteria:\nFaithful.")
    assert shared.endswith("</passage>\n\n")
    assert "Explain ice" not in shared
    assert "It melts." not in shared
    task, _, answer = judge_parts(prompt)  # the simulator still finds task and answer
    assert (task, answer) == ("Explain ice. [difficulty=1]", "It melts.")
    plain = judge_prompt("Explain ice.", "Faithful.", "It melts.")
    assert plain[: judge_shared_chars(plain)] == "Criteria:\nFaithful.\n\n"


def test_judge_messages_mark_a_breakpoint_after_long_shared_passages() -> None:
    haiku = default_ladder().get("haiku")
    evidence = "<passage id='a.md#0'>\n" + "Ice melts in warm water. " * 200 + "\n</passage>"
    prompt = judge_prompt("Explain ice.", "Faithful.", "It melts.", evidence)
    [turn] = judge_messages(prompt, haiku)
    first, rest = turn.content
    assert isinstance(first, TextBlock)
    assert isinstance(rest, TextBlock)
    assert first.cache
    assert not rest.cache
    assert first.text + rest.text == prompt
    assert first.text.endswith("</passage>\n\n")
    short = judge_prompt("Explain ice.", "Faithful.", "It melts.", "<passage>x</passage>")
    assert [m.content for m in judge_messages(short, haiku)] == [short]  # too short to cache


async def test_judge_calls_shown_the_same_passages_read_them_from_the_cache(sim: Any) -> None:
    """Through the real client and the simulator: the second judge call on one model that is
    shown the same cited passages reads them (criteria included) instead of paying again."""
    tier = default_ladder().with_endpoint(sim.base_url).get("sonnet")
    evidence = "<passage id='a.md#0'>\n" + "Ice melts in warm water. " * 300 + "\n</passage>"
    usages = []
    async with AnthropicClient(api_key="test") as client:
        for answer in ("It melts [a.md#0].", "Warm water melts it [a.md#0]."):
            prompt = judge_prompt("Explain ice. [difficulty=1]", "Faithful.", answer, evidence)
            request = ModelRequest(
                tier=tier, system=JUDGE_SYSTEM_PROMPT, messages=judge_messages(prompt, tier),
                max_output_tokens=512, output_schema=JudgeVerdict.model_json_schema(),
                purpose="judge",
            )  # fmt: skip
            with anyio.fail_after(30):
                usages.append((await client.complete(request, Meter(tier, Budget()))).usage)
    first, second = usages
    shared_tokens = judge_shared_chars(prompt) // 4
    assert first.cache_write_tokens >= shared_tokens
    assert first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert second.cache_write_tokens == 0


# -- what the research tasks share --------------------------------------------------------


def test_shared_passages_are_the_ones_several_queries_find() -> None:
    corpus = Corpus.from_texts(
        {
            "ice": "Ice melts in warm water.",
            "steam": "Water boils into steam when heated.",
            "salt": "Salt lowers the melting point of ice in water.",
            "rock": "Granite is an igneous rock.",
        }
    )
    found = shared_passages(corpus, ["ice melting", "salt water ice", "granite rock"], k=8)
    # both queries about ice find "salt" first and "ice" second; steam and rock once only
    assert [p.id for p in found] == ["salt#0", "ice#0"]
    assert shared_passages(corpus, ["ice melting", "salt water ice"], k=1) == found[:1]
    assert shared_passages(corpus, ["granite", "steam"], k=8) == []  # nothing found twice


def _plan(*tasks: Task) -> Plan:
    return Plan(goal=GOAL, tasks=list(tasks))


def _nodes(plan: Plan, corpus: Corpus) -> list[Any]:
    return [node_from_task(task, passages=corpus) for task in plan.tasks]


def test_research_tasks_are_given_the_same_passages_first(corpus: Corpus) -> None:
    plan = _plan(
        Task(id="q1", instruction="Context managers: how does __exit__ see exceptions?",
             tools=TOOLS),
        Task(id="q2", instruction="The with statement: what does it do on an exception?",
             tools=TOOLS),
        Task(id="s", instruction="Synthesise q1 and q2.", depends_on=("q1", "q2")),
    )  # fmt: skip
    nodes = with_shared_passages(plan, _nodes(plan, corpus), corpus, k=8, min_tokens=1024)
    (q1, cut1), (q2, cut2) = (n.build_turn({}) for n in nodes[:2])
    assert q1[:cut1] == q2[:cut2]
    assert cut1 // 4 >= 1024
    assert q1[:cut1].startswith(f"Inputs from earlier tasks:\n\n<input task='{PASSAGES_INPUT}'>")
    assert instruction(q1) == plan.tasks[0].instruction  # the task's own words come after
    assert nodes[2].build_turn({"q1": "a", "q2": "b"})[1] == 0  # the synthesis: unchanged
    again = with_shared_passages(plan, _nodes(plan, corpus), corpus, k=8, min_tokens=1024)
    assert again[0].build_turn({}) == (q1, cut1)  # a resumed run builds the same prompts


def test_no_passages_are_given_when_nothing_would_be_shared(corpus: Corpus) -> None:
    one = _plan(Task(id="q1", instruction="Context managers and exceptions.", tools=TOOLS))
    nodes = _nodes(one, corpus)
    assert with_shared_passages(one, nodes, corpus, k=8) == nodes  # one research task
    two = _plan(
        Task(id="q1", instruction="Context managers and exceptions.", tools=TOOLS),
        Task(id="q2", instruction="The with statement and exceptions.", tools=TOOLS),
    )
    nodes = _nodes(two, corpus)
    assert with_shared_passages(two, nodes, corpus, k=8, min_tokens=10**6) == nodes  # too short
    assert with_shared_passages(two, nodes, corpus, k=8)[0].prompt is not None


def test_judges_of_research_tasks_without_inputs_are_not_shown_shared_passages() -> None:
    plan = _plan(
        Task(id="q", instruction="x", tools=TOOLS),
        Task(id="s", instruction="y", depends_on=("q",), verify=[CitationsSpec()]),
    )
    checked = research_checks(plan, tools=TOOLS, judge=True)
    judges = {t.id: next(s for s in t.verify if isinstance(s, JudgeSpec)) for t in checked.tasks}
    assert not judges["q"].inputs  # the passages it cites are shown, not the shared ones
    assert judges["s"].inputs  # the answers it builds on are


def test_the_default_corpus_can_have_longer_passages() -> None:
    longer = Corpus.default(max_passage_chars=2000)
    assert longer is Corpus.default(max_passage_chars=2000)  # built once
    assert max(len(p.text) for p in longer) > 800 >= max(len(p.text) for p in Corpus.default())


# -- the research run -------------------------------------------------------------------


async def _research(corpus: Corpus, *, cache: bool, shared: int) -> RunResult:
    async with (
        serve(SimConfig(seed=0, time_scale=0)) as server,
        AnthropicClient(api_key="test") as client,
    ):
        ladder = default_ladder().with_endpoint(server.base_url)
        config = RunConfig(cache=cache)
        agent = ResearchAgent(client, corpus, ladder, config=config, shared=shared)
        with anyio.fail_after(60):
            return await agent.run(GOAL)


async def test_research_tasks_read_the_shared_passages_from_the_cache(corpus: Corpus) -> None:
    """The first research task writes the passages they share; the others read them, and
    the run costs at most 0.7x what it costs with caching off, with the same nodes verified."""
    cached = await _research(corpus, cache=True, shared=8)
    plain = await _research(corpus, cache=False, shared=8)
    verified = [(n.id, n.status) for n in cached.nodes]
    assert verified == [(n.id, n.status) for n in plain.nodes]
    assert all(status == "succeeded" for _, status in verified)
    research = [cached.node(i).attempts[0] for i in ("q1", "q2", "q3")]
    first, *rest = sorted(research, key=lambda a: a.started_at)
    assert first.cache_write_tokens > 1024 * 1.25  # tools, system prompt, shared passages
    for later in rest:  # every turn of theirs reads the passages the first wrote
        assert later.cache_read_tokens >= 3 * 1024
    assert cached.cost_usd <= plain.cost_usd * 7 / 10
    assert plain.cache_read_tokens == plain.cache_write_tokens == 0
    unshared = await _research(corpus, cache=True, shared=0)  # the demo's calls alone are
    assert unshared.cache_read_tokens == unshared.cache_write_tokens == 0  # too short to cache
