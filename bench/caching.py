"""Prompt caching across the DAG: cost and makespan with caching on and off, side by side.

The workload: a generated plan of ``--groups`` groups; in each, one task writes a long
briefing (``--sections`` required sections, about 20 tokens each on the simulator) and
``--siblings`` tasks each use it for a different purpose, then one task merges the
siblings' answers. The siblings read the same input, so with caching on they share a
cached prefix: the first writes it, the rest wait for its answer and read it. Every run
goes through ``Engine.run`` with the real Anthropic SDK against the local simulator
(answers and token counts simulated; priced on the built-in ladder), prepare included.
Rounds alternate on/off so both see the same machine.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.caching --rounds 3

What it leaves out: the research workload (its shared material is corpus passages read
through tools, which this does not cache yet), batches, and the real API's latency.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import anyio

from bench._report import environment
from orchestrator import Engine, Needs, Plan, RunConfig, RunResult, Task, default_ladder
from orchestrator.models.anthropic import AnthropicClient
from orchestrator_sim import SimConfig, serve


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


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--siblings", type=int, default=6)
    parser.add_argument("--sections", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="simulated latency x")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    anyio.run(main)
