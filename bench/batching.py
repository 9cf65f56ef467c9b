"""The API's two discounts side by side: interactive vs Message Batches, caching off vs on.

Four arms, in paired rounds (each round runs every arm on the same machine, in turn):
interactive and ``batch=True``, each with prompt caching off and on. Every run goes through
the real Anthropic SDK against the local simulator (answers and token counts simulated,
priced on the built-in ladder), the whole call as a user makes it.

Two workloads (``--workload``):

``dag``: the generated plan of :func:`bench.caching.workload`: ``--groups`` groups of a
long briefing (``--sections`` sections), ``--siblings`` tasks that each read it, and a
merge; through ``Engine.run``, prepare included.

``research``: the research agent as shipped (``ResearchAgent.run``: planning, research
tasks that search and read the demo corpus, synthesis, check), one goal per round.
In batch mode its planning goes in a batch too.

Makespan in batch mode is the simulator's: a batch request takes 0.5x to 1.5x
``batch_delay_s`` (5 simulated seconds) times ``--time-scale``; on the real API a batch
takes minutes, at most 24 hours, so batch makespans here say how many batch waves a run
needs, not how long they take.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.batching --workload dag --rounds 3
    bench/.venv/bin/python -m bench.batching --workload research --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio

from bench._report import environment
from bench.caching import workload
from orchestrator import Engine, RunConfig, RunResult, default_ladder
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.research import ResearchAgent
from orchestrator.tools.corpus import Corpus
from orchestrator_sim import SimConfig, serve

GOALS = (
    "How do Python context managers and the with statement handle exceptions?",
    "How does asyncio schedule coroutines and what do tasks add?",
    "What do Python's dataclasses generate and when should frozen be used?",
    "How do Python generators and yield from delegate to subgenerators?",
    "What does the GIL protect and how do threads and processes differ in CPython?",
)


@dataclass(frozen=True)
class Arm:
    """One configuration: batch or interactive, caching on or off."""

    batch: bool
    cache: bool

    @property
    def name(self) -> str:
        return f"{'batch' if self.batch else 'interactive'}, cache {'on' if self.cache else 'off'}"


ARMS = (Arm(False, False), Arm(False, True), Arm(True, False), Arm(True, True))

Runner = Callable[[Arm, int], Awaitable[RunResult]]


def _client(base_url: str, time_scale: float) -> AnthropicClient:
    poll = max(0.01, 0.25 * time_scale)  # a fraction of the shortest simulated batch
    return AnthropicClient(
        base_url=base_url, api_key="bench", batch_collect_s=poll, batch_poll_s=poll
    )


def dag_runner(args: argparse.Namespace) -> Runner:
    plan = workload(args.groups, args.siblings, args.sections)

    async def run(arm: Arm, _: int) -> RunResult:
        async with (
            serve(SimConfig(time_scale=args.time_scale)) as server,
            _client(server.base_url, args.time_scale) as client,
        ):
            config = RunConfig(cache=arm.cache, batch=arm.batch, max_concurrency=1000)
            return await Engine(client, default_ladder(), config=config).run(plan)

    return run


def research_runner(args: argparse.Namespace) -> Runner:
    corpus = Corpus.default()

    async def run(arm: Arm, round_: int) -> RunResult:
        async with (
            serve(SimConfig(time_scale=args.time_scale)) as server,
            _client(server.base_url, args.time_scale) as client,
        ):
            config = RunConfig(cache=arm.cache, batch=arm.batch, max_concurrency=1000)
            ladder = default_ladder().with_endpoint(server.base_url)
            agent = ResearchAgent(client, corpus, ladder, config=config)
            return await agent.run(GOALS[round_ % len(GOALS)])

    return run


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("dag", "research"), default="dag")
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--siblings", type=int, default=6)
    parser.add_argument("--sections", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="simulated latency x")
    args = parser.parse_args(argv)
    runner = dag_runner(args) if args.workload == "dag" else research_runner(args)
    runs: dict[Arm, list[tuple[RunResult, float]]] = {arm: [] for arm in ARMS}
    for round_ in range(args.rounds):
        for arm in ARMS:
            started = time.perf_counter()
            result = await runner(arm, round_)
            runs[arm].append((result, time.perf_counter() - started))
    env = environment()
    print(f"workload {args.workload}; {args.rounds} paired rounds; commit {env['commit']}, "
          f"python {env['python']}, {env['cpus']} cpus; time scale {args.time_scale}")  # fmt: skip
    print("| arm | $ per run (median) | x interactive, same caching | x interactive, cache off "
          "| makespan s | cache read / written tok | cache saved $ | batch calls | batch saved $ "
          "| nodes succeeded |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {arm: [r for r, _ in runs[Arm(False, arm.cache)]] for arm in ARMS}
    plain = [r for r, _ in runs[Arm(False, False)]]
    for arm in ARMS:
        results = [r for r, _ in runs[arm]]
        same = _ratios(results, base[arm])
        off = _ratios(results, plain)
        wall = statistics.median(w for _, w in runs[arm])
        done = statistics.median(
            sum(n.status == "succeeded" for n in r.nodes) / max(1, len(r.nodes)) for r in results
        )
        print(
            f"| {arm.name} | {statistics.median(float(r.cost_usd) for r in results):.4f} "
            f"| {_spread(same)} | {_spread(off)} | {wall:.2f} "
            f"| {_median_int(r.cache_read_tokens for r in results):,} / "
            f"{_median_int(r.cache_write_tokens for r in results):,} "
            f"| {statistics.median(float(r.cache_saving_usd) for r in results):.4f} "
            f"| {_median_int(r.batch_calls for r in results):,} "
            f"| {statistics.median(float(r.batch_saving_usd) for r in results):.4f} "
            f"| {done:.0%} |"
        )
    planning = [float(r.planning.cost_usd) for r, _ in runs[Arm(True, True)] if r.planning]
    if planning:
        print(f"planning, batch arms (in a batch too): ${statistics.median(planning):.4f} a run")


def _ratios(results: list[RunResult], base: list[RunResult]) -> list[float]:
    return [
        float(r.cost_usd / b.cost_usd) if b.cost_usd else float("nan")
        for r, b in zip(results, base, strict=True)
    ]


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]"


def _median_int(values: Iterable[int]) -> int:
    items = list(values)
    return int(statistics.median(items)) if items else 0


if __name__ == "__main__":
    anyio.run(main)
