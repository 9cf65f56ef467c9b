"""Planning for parallelism: the planned DAG's makespan vs the same tasks one after another.

For each research goal, the research agent plans once (offline, against the simulator with
its per-tier latency on: time to first token plus tokens per second, scaled by
``--time-scale``), then the *same plan* runs twice on fresh simulators with the same seed:

* ``dag``: as planned, independent nodes side by side (max concurrency 16);
* ``sequential``: max concurrency 1, one node at a time in dependency order: what a
  sequential ReAct-style agent working through the same tasks does.

Both runs make the same requests and get the same answers (the simulator is deterministic
for a given seed and request), so the ratio isolates scheduling. LLMCompiler reports up to
3.7x for its planner-executor over ReAct; our planner's DAG shape (its sub-questions are
independent; synthesis and check are a chain) caps what this can show.

Run from the repository root::

    .venv/bin/python -m bench.parallelism --time-scale 0.2 --json out/bench/parallelism.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import anyio
import networkx as nx

from orchestrator.dag import validate_plan
from orchestrator.engine import RunConfig
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.plan import Plan
from orchestrator.research import ResearchAgent
from orchestrator.results import RunResult
from orchestrator.tiers import default_ladder
from orchestrator.tools.corpus import Corpus
from orchestrator_sim import SimConfig, serve

GOALS = (
    "How do Python context managers and the with statement handle exceptions?",
    "How does Python resolve names in nested functions and classes?",
    "What are the rules for comparing and hashing Python objects?",
    "How do generators, yield from and coroutines relate in Python?",
    "How are Python exceptions raised, chained and caught?",
    "How does Python's import system find and load modules?",
    "What does Python guarantee about the evaluation order of expressions?",
    "How do descriptors, properties and attribute lookup work in Python?",
    "How do Python string formatting and f-strings work?",
    "What are the semantics of Python's augmented assignment statements?",
)


async def _run(
    plan: Plan, corpus: Corpus, seed: int, time_scale: float, concurrency: int
) -> RunResult:
    async with (
        serve(SimConfig(seed=seed, time_scale=time_scale)) as sim,
        AnthropicClient(api_key="offline") as client,
    ):
        agent = ResearchAgent(
            client,
            corpus,
            default_ladder().with_endpoint(sim.base_url),
            config=RunConfig(max_concurrency=concurrency),
        )
        return await agent.prepare(plan).execute()


async def _plan(goal: str, corpus: Corpus, seed: int) -> Plan:
    async with (
        serve(SimConfig(seed=seed, time_scale=0)) as sim,
        AnthropicClient(api_key="offline") as client,
    ):
        agent = ResearchAgent(client, corpus, default_ladder().with_endpoint(sim.base_url))
        return await agent.plan(goal)


def _critical_path_s(result: RunResult) -> float:
    """The longest dependency chain of the run, by the nodes' own busy time."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    for node in result.nodes:
        busy = sum(
            (a.finished_at - a.started_at).total_seconds() for a in node.attempts if a.finished_at
        )
        graph.add_node(node.id, busy=busy)
        graph.add_edges_from((dep, node.id) for dep in node.depends_on)
    longest: dict[str, float] = {}
    for node_id in nx.topological_sort(graph):
        before = max((longest[dep] for dep in graph.predecessors(node_id)), default=0.0)
        longest[node_id] = before + graph.nodes[node_id]["busy"]
    return max(longest.values(), default=0.0)


async def measure(goals: int, seed: int, time_scale: float) -> list[dict[str, Any]]:
    corpus = await Corpus.load_default()
    rows = []
    for goal in GOALS[:goals]:
        plan = await _plan(goal, corpus, seed)
        dag = await _run(plan, corpus, seed, time_scale, concurrency=16)
        sequential = await _run(plan, corpus, seed, time_scale, concurrency=1)
        rows.append(
            {
                "goal": goal,
                "nodes": len(plan.tasks),
                "width": max(
                    len(layer) for layer in nx.topological_generations(validate_plan(plan))
                ),
                "dag_s": dag.wall_s,
                "sequential_s": sequential.wall_s,
                "speedup": sequential.wall_s / dag.wall_s,
                "critical_path_s": _critical_path_s(dag),
                "same_outcome": dag.status == sequential.status
                and [n.final_tier for n in dag.nodes] == [n.final_tier for n in sequential.nodes],
            }
        )
        row = rows[-1]
        print(
            f"| {goal[:58]} | {row['nodes']} | {row['width']} | {row['dag_s']:.2f} | "
            f"{row['sequential_s']:.2f} | {row['speedup']:.2f}x | {row['same_outcome']} |",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=len(GOALS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    print("| goal | nodes | width | DAG makespan s | sequential s | speedup | same outcome |")
    print("|---|---|---|---|---|---|---|")
    rows = anyio.run(measure, args.goals, args.seed, args.time_scale)
    speedups = [row["speedup"] for row in rows]
    print(
        f"\nspeedup: median {statistics.median(speedups):.2f}x, "
        f"min {min(speedups):.2f}x, max {max(speedups):.2f}x over {len(rows)} goals",
        file=sys.stderr,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        document = {"time_scale": args.time_scale, "seed": args.seed, "rows": rows}
        Path(args.json).write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
