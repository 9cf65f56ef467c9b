"""MCP tools in a plan: tasks call the tools of a real MCP server (examples/mcp_server.py).

The engine starts the server (a subprocess over stdio) when the run starts and stops it
when the run ends; its tools are named ``mcp__toolbox__<tool>`` and each task may call
only those its ``tools`` list names. Runs offline: the local Messages-API simulator plays
the model (it calls tools it has never seen, by their schemas; docs/sim.md). With
ANTHROPIC_API_KEY set and ``--online``, the same code runs against the real API.

    python examples/mcp_tools.py [--online]

The same from the command line::

    orchestrator run --offline --plan PLAN.json --mcp "python examples/mcp_server.py"
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from orchestrator import Engine, Plan, RunResult
from orchestrator.cli.render import render_summary
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.tools import MCPServer
from orchestrator_sim import SimConfig, serve

SERVER = Path(__file__).with_name("mcp_server.py")

plan = Plan.model_validate(
    {
        "goal": "Answer from the team's notes, with lengths in both units",
        "tasks": [
            {
                "id": "notes",
                "instruction": "Search the notes about the with statement and say what they teach.",
                "tools": ["mcp__toolbox__search_notes", "mcp__toolbox__read_note"],
            },
            {
                "id": "length",
                "instruction": "Use convert_units to convert 42 km to mi.",
                "tools": ["mcp__toolbox__convert_units"],
            },
            {
                "id": "memo",
                "instruction": "Write a two-line memo from the notes and the length.",
                "depends_on": ["notes", "length"],
            },
        ],
    }
)


async def main(online: bool) -> RunResult:
    toolbox = MCPServer([sys.executable, str(SERVER)])  # started by the run, not here
    if online:
        async with AnthropicClient() as client:
            return await Engine(client, tools=[toolbox]).run(plan)
    async with (
        serve(SimConfig(time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-simulator") as client,
    ):
        return await Engine(client, tools=[toolbox]).run(plan)


if __name__ == "__main__":
    result = anyio.run(main, "--online" in sys.argv)
    print(render_summary(result))
    print(f"\nlength: {result.outputs.get('length', '')}")
    sys.exit(0 if result.status == "succeeded" else 1)
