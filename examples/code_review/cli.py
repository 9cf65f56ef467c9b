"""The command line: read a diff, review it offline (simulator) or online, print the report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio

from orchestrator import ModelClient, UserError
from orchestrator.models.anthropic import AnthropicClient
from orchestrator_sim import SimConfig, serve

from .report import ReviewReport, render_summary

DEFAULT_DIFF = Path(__file__).resolve().parent.parent / "diffs" / "regional_pricing.diff"


class Review(Protocol):
    """A review of one diff with one model client (``review_diff`` in the example)."""

    async def __call__(self, diff_text: str, client: ModelClient, *, name: str) -> ReviewReport:
        """Review ``diff_text``; ``name`` names the diff in the report."""
        ...


async def review_offline(
    review: Review, diff_text: str, *, name: str = "diff", seed: int = 0
) -> ReviewReport:
    """Review against the local simulator (answers are simulated)."""
    async with (
        serve(SimConfig(seed=seed, time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-simulator") as client,
    ):
        return await review(diff_text, client, name=name)


async def review_online(review: Review, diff_text: str, *, name: str = "diff") -> ReviewReport:
    """Review against the real API (needs ANTHROPIC_API_KEY)."""
    async with AnthropicClient() as client:
        return await review(diff_text, client, name=name)


def main(review: Review, argv: Sequence[str] | None = None, *, description: str = "") -> int:
    """Command-line entry point; returns the exit code (1 if a task failed, 2 on bad input)."""
    parser = argparse.ArgumentParser(description=description.strip().split("\n", 1)[0] or None)
    parser.add_argument("--diff", type=Path, default=DEFAULT_DIFF, help="a unified diff file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (offline)")
    parser.add_argument("--online", action="store_true", help="use the real API")
    args = parser.parse_args(argv)
    try:
        text = args.diff.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read --diff {args.diff}: {exc.strerror}", file=sys.stderr)
        return 2
    name = args.diff.name
    try:
        if args.online:
            report = anyio.run(lambda: review_online(review, text, name=name))
        else:
            report = anyio.run(lambda: review_offline(review, text, name=name, seed=args.seed))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(report.markdown)
        print(render_summary(report))
    return 0 if not report.failed else 1
