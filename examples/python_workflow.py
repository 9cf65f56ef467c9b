"""A workflow defined in Python: plain functions and LLM tasks in one DAG.

Runs offline: it starts the local Messages-API simulator on a free loopback port and points
the real Anthropic SDK at it. With ANTHROPIC_API_KEY set and ``--online``, the same code
runs against the real API.

    python examples/python_workflow.py [--online]
"""

from __future__ import annotations

import sys

import anyio
from pydantic import BaseModel, Field

from orchestrator import Engine, Needs, Predicate, RunResult, Workflow
from orchestrator.cli.render import render_summary
from orchestrator.models.anthropic import AnthropicClient
from orchestrator_sim import SimConfig, serve


class Decision(BaseModel):
    """The structured answer of the decision task."""

    choice: str = Field(min_length=1)
    """The library picked: an empty one fails the schema check, and the task escalates."""
    reasons: list[str]


wf = Workflow("Choose a concurrency library for a new Python service")


@wf.task
def candidates() -> list[str]:
    """Plain Python: runs locally, in a worker thread."""
    return ["asyncio", "anyio", "trio"]


@wf.llm(needs=Needs(reasoning=1))
def strengths(candidates: list[str]) -> str:
    """Cheap tier: a list is within Haiku's reach."""
    return f"For each of {', '.join(candidates)}, give its main strength in one line."


@wf.llm(needs=Needs(reasoning=1))
def risks(candidates: list[str]) -> str:
    return f"For each of {', '.join(candidates)}, give its main adoption risk in one line."


@wf.llm(
    needs=Needs(reasoning=2),
    output=Decision,
    verify=[Predicate(lambda d: len(d.reasons) >= 2, "give at least two reasons")],
)
def decision(strengths: str, risks: str) -> str:
    """Routed to Sonnet by its needs; escalates to Opus if its answer fails verification."""
    return (
        "Weigh the trade-offs and pick one library for a new service.\n"
        f"Strengths:\n{strengths}\n\nRisks:\n{risks}"
    )


@wf.task
def memo(decision: Decision) -> str:
    return f"# Decision: {decision.choice}\n" + "\n".join(f"- {r}" for r in decision.reasons)


async def run_offline() -> RunResult:
    """Run the workflow against the local simulator."""
    async with (
        serve(SimConfig(time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-simulator") as client,
    ):
        return await Engine(client).run(wf)


async def run_online() -> RunResult:
    """Run the workflow against the real API (needs ANTHROPIC_API_KEY)."""
    async with AnthropicClient() as client:
        return await Engine(client).run(wf)


if __name__ == "__main__":
    result = anyio.run(run_online if "--online" in sys.argv else run_offline)
    print(render_summary(result))
