"""The research-synthesis agent from Python, offline.

A goal becomes a plan of independent sub-questions over a corpus (each searched and cited on
the cheapest adequate tier), a synthesis on a stronger tier, and a check; every citation is
verified against the corpus and failing answers escalate. Runs against the bundled
simulator, so the report's wording is simulated (its citations are real passages).

    python examples/research_synthesis.py ["your goal"] [--corpus DIR]
"""

from __future__ import annotations

import argparse

import anyio

from orchestrator.models.anthropic import AnthropicClient
from orchestrator.research import ResearchAgent, render_report
from orchestrator.tiers import default_ladder
from orchestrator.tools.corpus import Corpus
from orchestrator_sim import SimConfig, serve

DEFAULT_GOAL = "How do Python context managers and the with statement handle exceptions?"


async def research(goal: str, corpus_dir: str | None) -> str:
    corpus = await (Corpus.load(corpus_dir) if corpus_dir else Corpus.load_default())
    async with serve(SimConfig(seed=0, time_scale=0)) as sim:
        ladder = default_ladder().with_endpoint(sim.base_url)  # every tier to the simulator
        async with AnthropicClient(api_key="offline") as client:
            agent = ResearchAgent(client, corpus, ladder)
            result = await agent.run(goal)
    for node in result.nodes:
        tiers_tried = " -> ".join(attempt.tier for attempt in node.attempts)
        print(f"{node.id:<10} {node.status.value:<10} {tiers_tried:<24} ${node.cost_usd:.4f}")
    print(f"{result.status.value}: ${result.cost_usd:.4f}, wasted ${result.wasted_cost_usd:.4f}")
    return render_report(result, corpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("goal", nargs="?", default=DEFAULT_GOAL)
    parser.add_argument("--corpus", metavar="DIR", help="your documents (default: Python's docs)")
    args = parser.parse_args()
    print(anyio.run(research, args.goal, args.corpus))


if __name__ == "__main__":
    main()
