"""Prompt caching across the DAG: cost and makespan with caching on and off, side by side.

Two workloads (``--workload``), each run through the real Anthropic SDK against the local
simulator (answers and token counts simulated; priced on the built-in ladder), caching
off and on alternating in paired rounds so both see the same machine:

``dag``: a generated plan of ``--groups`` groups; in each, one task writes a long briefing
(``--sections`` required sections, about 20 tokens each on the simulator) and
``--siblings`` tasks each use it for a different purpose, then one task merges the
siblings' answers. The siblings read the same input, so with caching on they share a
cached prefix: the first writes it, the rest wait for its answer and read it. Through
``Engine.run``, prepare included.

``research``: the research agent (``ResearchAgent.run``: planning, research tasks that
search and read the corpus, synthesis, check), one goal of :data:`GOALS` per paired round,
in the variants of :data:`VARIANTS` (``--variants``): the demo as shipped (CPython's
documentation in passages of up to 800 characters; the simulator's tool loop of one
search and one read), and a realistic corpus workload (the same documentation and the
standard library's docstrings, in passages of up to 2,000 characters, about 500 tokens;
one search and three reads per research attempt); each with and without the passages the
research tasks share (``ResearchAgent(shared=...)``) and with and without an LLM judge.
For each call the simulator answered, the benchmark also works out what its prompt
repeated of an earlier call on the same model (what a cache could serve), and whether
what it wrote to the cache was ever read, and prints that per kind of call
(``--why``): where the saving is, and where it is not.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.caching --rounds 3
    bench/.venv/bin/python -m bench.caching --workload research --rounds 5 --why real-judge

What it leaves out: batches, and the real API's latency and model behaviour (the
simulated model searches and reads as many passages whether or not it was given shared
ones; a model that reads what it was given instead would make fewer calls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from bench._report import environment, print_table, write_json
from orchestrator import Engine, Needs, Plan, RunConfig, RunResult, Task, default_ladder
from orchestrator.budget import Meter
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.base import ModelClient, ModelRequest, ModelResponse
from orchestrator.pricing import Usage
from orchestrator.prompting import judge_messages
from orchestrator.research import ResearchAgent
from orchestrator.tiers import Tier
from orchestrator.tools.corpus import Corpus
from orchestrator_sim import BrainReply, BrainRequest, DefaultBrain, RequestRecord, SimConfig, serve
from orchestrator_sim.prompts import ToolResult, citation_ids, inputs_text
from orchestrator_sim.tool_use import ToolCall
from orchestrator_sim.usage import block_tokens, estimate_tokens


def workload(groups: int, siblings: int, sections: int) -> Plan:
    """``groups`` x (a long briefing, ``siblings`` uses of it, a merge)."""
    tasks: list[Task] = []
    parts = ", ".join(f"Part {i}" for i in range(sections))
    for g in range(groups):
        brief = f"brief_{g}"
        tasks.append(
            Task(
                id=brief,
                instruction=f"Write a briefing on topic {g}. Required sections: {parts} "
                "[difficulty=1]",
                needs=Needs(reasoning=1),
                max_output_tokens=8000,
            )
        )
        uses = [f"use_{g}_{i}" for i in range(siblings)]
        tasks += [
            Task(
                id=use,
                instruction=f"From the briefing, answer question {i} about topic {g}. "
                "[difficulty=1]",
                depends_on=(brief,),
                needs=Needs(reasoning=1),
            )
            for i, use in enumerate(uses)
        ]
        tasks.append(
            Task(
                id=f"merge_{g}",
                instruction=f"Merge the answers on topic {g}. [difficulty=1]",
                depends_on=tuple(uses),
                needs=Needs(reasoning=1),
            )
        )
    return Plan(goal="caching benchmark", tasks=tasks)


async def one_run(plan: Plan, *, cache: bool, time_scale: float) -> tuple[RunResult, float]:
    async with serve(SimConfig(time_scale=time_scale)) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="bench")
        async with client:
            engine = Engine(client, default_ladder(), config=RunConfig(cache=cache))
            started = time.perf_counter()
            result = await engine.run(plan)
            return result, time.perf_counter() - started


async def dag_main(args: argparse.Namespace) -> None:
    plan = workload(args.groups, args.siblings, args.sections)
    rows: dict[bool, list[tuple[RunResult, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for cache in (False, True):
            rows[cache].append(await one_run(plan, cache=cache, time_scale=args.time_scale))
    env = environment()
    print(f"{len(plan.tasks)} tasks; {args.rounds} paired rounds; commit {env['commit']}, "
          f"python {env['python']}, {env['cpus']} cpus")  # fmt: skip
    print("| caching | $ per run | x off | makespan s | x off | cache read / written tokens "
          "| saved $ | succeeded |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    off_cost = statistics.median(float(r.cost_usd) for r, _ in rows[False])
    off_wall = statistics.median(w for _, w in rows[False])
    for cache in (False, True):
        results = rows[cache]
        cost = statistics.median(float(r.cost_usd) for r, _ in results)
        wall = statistics.median(w for _, w in results)
        last = results[-1][0]
        done = sum(n.status == "succeeded" for n in last.nodes)
        print(
            f"| {'on' if cache else 'off'} | {cost:.4f} | {cost / off_cost:.3f} | {wall:.2f} "
            f"| {wall / off_wall:.2f} | {last.cache_read_tokens:,} / {last.cache_write_tokens:,} "
            f"| {last.cache_saving_usd:.4f} | {done}/{len(last.nodes)} |"
        )
    pairs = zip(rows[True], rows[False], strict=True)
    ratios = [float(on.cost_usd / off.cost_usd) for (on, _), (off, _) in pairs]
    print(f"cost on/off per round: {', '.join(f'{r:.3f}' for r in ratios)}")


# -- the research workload ----------------------------------------------------------------

GOALS = (
    "How do Python context managers and the with statement handle exceptions?",
    "How does Python resolve names in nested functions, closures and class bodies?",
    "What happens when a generator is closed, and how do yield expressions see it?",
    "How do descriptors and properties control attribute access on classes?",
    "How are exceptions chained, and what does raise from change in a traceback?",
)
"""The research goals, one per paired round."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One research workload: the corpus, the simulated tool loop, the agent's settings."""

    name: str
    passage_chars: int  # passages up to this long (the demo's: 800)
    modules: bool  # the standard library's module docstrings too
    reads: int  # tool calls per research attempt (the simulator's default: 2)
    shared: int = 0  # passages the research tasks share (ResearchAgent(shared=...))
    judge: bool = False
    judge_split: bool = False  # proposed, not in the engine: see _JudgeBreakpoint
    skips_given: bool = False  # a model that does not read again what it was given


SUFFIXES = (
    "", "-shared", "-judge", "-judge-shared", "-judge-split", "-judge-shared-split",
    "-shared-skips", "-judge-shared-split-skips",
)  # fmt: skip
"""What each base workload is run with: ``-judge`` (an LLM judge checks every answer),
``-shared`` (8 shared passages), ``-split`` (the judge's turn split: proposed, not in the
engine), ``-skips`` (the simulated model skips passages it was given: an assumption)."""


def _variants() -> dict[str, Variant]:
    variants = [
        Variant(
            base + suffix,
            chars,
            modules,
            reads,
            shared=8 if "shared" in suffix else 0,
            judge="judge" in suffix,
            judge_split="split" in suffix,
            skips_given="skips" in suffix,
        )
        for base, chars, modules, reads in (("demo", 800, False, 2), ("real", 2000, True, 4))
        for suffix in SUFFIXES
    ]
    return {v.name: v for v in variants}


VARIANTS = _variants()


class _SkipsGiven(DefaultBrain):
    """The default brain, except that it never reads a passage its prompt already holds: an
    assumption about a model (the documented simulator reads such passages again)."""

    def _next_call(
        self, request: BrainRequest, user: str, results: Sequence[Any]
    ) -> ToolCall | None:
        given = [ToolResult("given", {"id": i}, "", True) for i in citation_ids(inputs_text(user))]
        return super()._next_call(request, user, [*results, *given])


class _JudgeBreakpoint:
    """A change proposed for ``NodeRunner._judge``, not in the engine: the judge's user turn
    from :func:`orchestrator.prompting.judge_messages` (a breakpoint after the criteria
    and the cited passages) instead of one text block. Applied here to its requests."""

    def __init__(self, inner: ModelClient) -> None:
        self.inner = inner

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        turn = request.messages[0].content
        if request.purpose == "judge" and len(request.messages) == 1 and isinstance(turn, str):
            messages = judge_messages(turn, request.tier)
            request = request.model_copy(update={"messages": messages})
        return await self.inner.complete(request, meter)


class _RecordingBrain:
    """The default brain, keeping every request it answers (in the order the cache sees)."""

    def __init__(self, config: SimConfig, *, skips_given: bool = False) -> None:
        self.inner = _SkipsGiven(config) if skips_given else DefaultBrain(config)
        self.requests: list[BrainRequest] = []

    def respond(self, request: BrainRequest) -> BrainReply:
        reply = self.inner.respond(request)
        self.requests.append(request)
        return replace(reply, notes={**reply.notes, "bench_call": len(self.requests) - 1})


@dataclass
class Call:
    """One model call as the simulator answered it, and what its prompt repeated."""

    kind: str
    model: str
    prompt: int  # input tokens, all of them
    read: int
    written: int
    output: int
    repeated: int = 0  # prefix (whole blocks) an earlier call on this model began with too
    repeated_text: int = 0  # the same, to the character (a breakpoint could split a block)
    written_read: int = 0  # of ``written``, what a later call on this model read


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _blocks(request: BrainRequest) -> list[tuple[str, int]]:
    """The prompt in the cache's order (tools, system, messages): (text, tokens) per block."""
    blocks = []
    for spec in request.tools:
        key = _json({k: v for k, v in spec.items() if k != "cache_control"})
        blocks.append((key, estimate_tokens(key)))
    if request.system:
        blocks.append((request.system, estimate_tokens(request.system)))
    for message in request.messages:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in parts:
            clean = {k: v for k, v in block.items() if k != "cache_control" and v is not None}
            key = str(clean["text"]) if clean.get("type") == "text" else _json(clean)
            blocks.append((f"{message['role']}:{key}", block_tokens(block)))
    return blocks


def _common(first: list[tuple[str, int]], second: list[tuple[str, int]]) -> tuple[int, int]:
    """Tokens of the blocks two prompts begin with; and that plus the common characters of
    the first block that differs, / 4."""
    tokens = 0
    for (a, size), (b, _) in zip(first, second, strict=False):
        if a != b:
            same = next(
                (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            return tokens, tokens + same // 4
        tokens += size
    return tokens, tokens


def calls_of(brain: _RecordingBrain, records: Sequence[RequestRecord]) -> list[Call]:
    """Every answered call, with what it repeated and what of its writes was read.

    A call's prefix is *repeated* up to the longest run of blocks an earlier call on the
    same model began with. It wrote tokens ``read .. read + written`` of its prefix; a
    later call on the same model that read past ``read`` along the same blocks read them
    (credited to the latest such writer, so a write made twice counts once).
    """
    answered = sorted(
        (r for r in records if r.usage and "bench_call" in r.notes),
        key=lambda r: int(r.notes["bench_call"]),
    )
    calls, chains = [], []
    for record in answered:
        usage = record.usage or {}
        read = usage.get("cache_read_input_tokens") or 0
        written = usage.get("cache_creation_input_tokens") or 0
        prompt = usage["input_tokens"] + read + written
        output = usage.get("output_tokens") or 0
        calls.append(Call(record.kind or "?", record.model or "?", prompt, read, written, output))
        chains.append(_blocks(brain.requests[int(record.notes["bench_call"])]))
    reads: list[list[tuple[int, int]]] = [[] for _ in calls]  # per writer: spans read
    for i, call in enumerate(calls):
        credited: list[tuple[int, int]] = []  # what of this call's read later writers wrote
        for j in range(i - 1, -1, -1):
            if calls[j].model != call.model:
                continue
            shared, text = _common(chains[j], chains[i])
            call.repeated = max(call.repeated, shared)
            call.repeated_text = max(call.repeated_text, text)
            span = (calls[j].read, min(call.read, shared, calls[j].read + calls[j].written))
            if _uncovered(span, credited):
                reads[j].append(span)
                credited.append(span)
    for j, call in enumerate(calls):
        whole = (call.read, call.read + call.written)
        call.written_read = call.written - _uncovered(whole, reads[j])
    return calls


def _uncovered(span: tuple[int, int], spans: list[tuple[int, int]]) -> int:
    """How much of ``span`` none of ``spans`` covers."""
    lo, hi = span
    left = 0
    for start, end in sorted(spans):
        if lo >= hi:
            break
        if start > lo:
            left += min(start, hi) - lo
        lo = max(lo, end)
    return left + max(0, hi - lo)


async def research_run(
    variant: Variant, goal: str, *, cache: bool, time_scale: float
) -> tuple[RunResult, float, list[Call]]:
    """One research run of ``goal`` in ``variant``: its result, wall time and calls."""
    corpus = Corpus.default(
        include_modules=variant.modules, max_passage_chars=variant.passage_chars
    )
    sim = SimConfig(time_scale=time_scale, max_tool_calls=variant.reads)
    brain = _RecordingBrain(sim, skips_given=variant.skips_given)
    async with serve(sim, brain=brain) as server:
        async with AnthropicClient(api_key="bench") as sdk:
            client = _JudgeBreakpoint(sdk) if variant.judge_split else sdk
            agent = ResearchAgent(
                client, corpus, default_ladder().with_endpoint(server.base_url),
                config=RunConfig(cache=cache), judge=variant.judge, shared=variant.shared,
            )  # fmt: skip
            started = time.perf_counter()
            result = await agent.run(goal)
            wall = time.perf_counter() - started
        return result, wall, calls_of(brain, server.requests)


def _verified(result: RunResult) -> tuple[str, ...]:
    return tuple(sorted(n.id for n in result.nodes if n.status == "succeeded"))


def _arm(runs: list[tuple[RunResult, float, list[Call]]]) -> dict[str, Any]:
    calls = [c for _, _, cs in runs for c in cs]
    return {
        "cost": sum(float(r.cost_usd) for r, _, _ in runs) / len(runs),
        "wall": statistics.median(w for _, w, _ in runs),
        "prompt": sum(c.prompt for c in calls),
        "repeated": sum(c.repeated for c in calls),
        "read": sum(c.read for c in calls),
        "written": sum(c.written for c in calls),
        "unread": sum(c.written - c.written_read for c in calls),
        "saved": sum(float(r.cache_saving_usd) for r, _, _ in runs) / len(runs),
        "nodes": sum(len(r.nodes) for r, _, _ in runs),
        "succeeded": sum(len(_verified(r)) for r, _, _ in runs),
    }


RESEARCH_COLUMNS = [
    ("variant", "variant", "{}"),
    ("caching", "caching", "{}"),
    ("cost", "$ per run (mean)", "{:.4f}"),
    ("x_off", "x off", "**{:.3f}**"),
    ("wall", "makespan s (median)", "{:.2f}"),
    ("wall_x", "x off", "{:.2f}"),
    ("prompt", "prompt tokens", "{:,}"),
    ("repeated", "repeated prefix", "{:,}"),
    ("read", "read", "{:,}"),
    ("written", "written", "{:,}"),
    ("unread", "written, never read", "{:,}"),
    ("verified", "verified nodes", "{}"),
]
WHY_COLUMNS = [
    ("kind", "call", "{}"),
    ("model", "model", "{}"),
    ("calls", "calls", "{}"),
    ("prompt", "prompt tokens", "{:,}"),
    ("repeated", "repeated: blocks", "{:,}"),
    ("repeated_text", "to the character", "{:,}"),
    ("read", "read", "{:,}"),
    ("written", "written", "{:,}"),
    ("unread", "never read", "{:,}"),
    ("off_usd", "$ off", "{:.4f}"),
    ("on_usd", "$ on", "{:.4f}"),
]


def _why(on: list[Call], off: list[Call], tiers: dict[str, Tier]) -> list[dict[str, Any]]:
    """Per kind of call and model: what the prompts repeated, what was read and written."""
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in on:
        groups[call.kind, call.model].append(call)
    spend: dict[tuple[bool, str, str], Decimal] = defaultdict(Decimal)
    for cached, calls in ((True, on), (False, off)):
        for c in calls:
            usage = Usage(
                input_tokens=c.prompt - c.read - c.written, output_tokens=c.output,
                cache_write_tokens=c.written, cache_read_tokens=c.read,
            )  # fmt: skip
            spend[cached, c.kind, c.model] += tiers[c.model].cost(usage)
    return [
        {
            "kind": kind,
            "model": model.removeprefix("claude-"),
            "calls": len(calls),
            "prompt": sum(c.prompt for c in calls),
            "repeated": sum(c.repeated for c in calls),
            "repeated_text": sum(c.repeated_text for c in calls),
            "read": sum(c.read for c in calls),
            "written": sum(c.written for c in calls),
            "unread": sum(c.written - c.written_read for c in calls),
            "off_usd": float(spend[False, kind, model]),
            "on_usd": float(spend[True, kind, model]),
        }
        for (kind, model), calls in sorted(groups.items())
    ]


async def research_main(args: argparse.Namespace) -> None:
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    goals = [GOALS[i % len(GOALS)] for i in range(args.rounds)]
    env = environment()
    print(f"research workload; {len(goals)} paired rounds (one goal each); commit "
          f"{env['commit']}, python {env['python']}, {env['cpus']} cpus")  # fmt: skip
    rows, why, record = [], {}, {"environment": env, "variants": {}}
    tiers = {t.model: t for t in default_ladder().tiers}
    for name in names:
        variant = VARIANTS[name]
        runs: dict[bool, list[tuple[RunResult, float, list[Call]]]] = {True: [], False: []}
        for goal in goals:
            for cache in (False, True):
                runs[cache].append(
                    await research_run(variant, goal, cache=cache, time_scale=args.time_scale)
                )
        arms = {cache: _arm(runs[cache]) for cache in (False, True)}
        equal = [_verified(a[0]) == _verified(b[0]) for a, b in zip(*runs.values(), strict=True)]
        pairs = zip(runs[True], runs[False], strict=True)
        ratios = [float(on.cost_usd / off.cost_usd) for (on, _, _), (off, _, _) in pairs]
        for cache in (False, True):
            arm = arms[cache]
            rows.append({
                "variant": name, "caching": "on" if cache else "off", **arm,
                "x_off": arm["cost"] / arms[False]["cost"],
                "wall_x": arm["wall"] / arms[False]["wall"],
                "verified": f"{arm['succeeded']}/{arm['nodes']}"
                + ("" if not cache else " (same)" if all(equal) else " (DIFFERENT)"),
            })  # fmt: skip
        record["variants"][name] = {"arms": arms, "ratios": ratios, "equal": equal}
        if name in (args.why or "").split(","):
            on = [c for _, _, cs in runs[True] for c in cs]
            off = [c for _, _, cs in runs[False] for c in cs]
            why[name] = _why(on, off, tiers)
        print(f"{name}: cost on/off per round {', '.join(f'{r:.3f}' for r in ratios)}")
    print_table(rows, RESEARCH_COLUMNS)
    for name, table in why.items():
        print(f"\nwhere the tokens went, {name}, caching on ({len(goals)} runs):")
        print_table(table, WHY_COLUMNS)
    record["why"] = why
    if args.json:
        write_json(args.json, record)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("dag", "research"), default="dag")
    parser.add_argument("--groups", type=int, default=10, help="dag: groups")
    parser.add_argument("--siblings", type=int, default=6, help="dag: siblings per group")
    parser.add_argument("--sections", type=int, default=80, help="dag: briefing sections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="simulated latency x")
    parser.add_argument("--variants", help=f"research: comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--why", help="research: variants to break down by kind of call")
    parser.add_argument("--json", type=Path, help="research: also write the results here")
    args = parser.parse_args(argv)
    anyio.run(research_main if args.workload == "research" else dag_main, args)


if __name__ == "__main__":
    main()
