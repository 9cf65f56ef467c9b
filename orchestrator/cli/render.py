"""Plain-text rendering of progress and results for the command line."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from orchestrator.events import AttemptFinished, AttemptStarted, Event, NodeFinished
from orchestrator.node import render_value
from orchestrator.results import NodeStatus, RunResult
from orchestrator.tiers import TierLadder

__all__ = ["ProgressPrinter", "render_ladder", "render_summary"]

SIMULATED_NOTE = (
    "SIMULATED: these answers came from the local Messages-API simulator (orchestrator.sim), "
    "not from a model. See docs/sim.md."
)


class ProgressPrinter:
    """An event listener printing one line per attempt start and end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        """Print a line for attempt and node events."""
        match event:
            case AttemptStarted(node_id=node_id, attempt=attempt):
                self._line(f"  {node_id}: attempt {attempt.number} on {attempt.tier}")
            case AttemptFinished(node_id=node_id, attempt=attempt) if not attempt.passed:
                why = attempt.error or (attempt.verdict.reason if attempt.verdict else "rejected")
                self._line(
                    f"  {node_id}: attempt {attempt.number} on {attempt.tier} rejected: {why}"
                )
            case NodeFinished(result=result):
                cost = f"${result.cost_usd:.4f}"
                self._line(f"{result.id}: {result.status.value} on {result.final_tier} ({cost})")
            case _:
                pass

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def render_summary(result: RunResult) -> str:
    """A human summary: status, cost, a table of nodes, escalations and the output."""
    lines = [
        f"Run {result.run_id}: {result.status.value} in {result.wall_s:.2f}s, "
        f"cost ${result.cost_usd:.4f} (wasted ${result.wasted_cost_usd:.4f})",
    ]
    if result.simulated:
        lines.append(SIMULATED_NOTE)
    width = max([len(n.id) for n in result.nodes] + [4])
    lines.append(f"{'node':<{width}}  {'status':<10} {'tiers':<22} {'cost':>9}  reason")
    for node in result.nodes:
        tiers = " -> ".join(a.tier for a in node.attempts) or "-"
        reason = "" if node.status is NodeStatus.SUCCEEDED else (node.reason or "")
        lines.append(
            f"{node.id:<{width}}  {node.status.value:<10} {tiers:<22} "
            f"${node.cost_usd:>8.4f}  {reason[:80]}"
        )
    escalations = sum(max(0, len(n.attempts) - 1) for n in result.nodes if n.final_tier != "python")
    finished_on = Counter(n.final_tier for n in result.nodes if n.status is NodeStatus.SUCCEEDED)
    used = ", ".join(f"{tier} {count}" for tier, count in finished_on.items()) or "none"
    lines.append(f"escalations: {escalations}; nodes finished per tier: {used}")
    if result.output is not None:
        lines += ["", render_value(result.output)]
    return "\n".join(lines)


def render_ladder(ladder: TierLadder) -> str:
    """A table of the ladder: name, model, first price band, capabilities, limits."""
    lines = [f"{'tier':<10} {'model':<22} {'in/out $/MTok':<15} {'capabilities':<40} limit"]
    for tier in ladder.tiers:
        band = tier.prices[0]
        caps = " ".join(f"{k}={v}" for k, v in tier.capabilities.levels().items())
        price = f"{band.input:g}/{band.output:g}"
        if len(tier.prices) > 1:
            price += "+"
        lines.append(
            f"{tier.name:<10} {tier.model:<22} {price:<15} {caps:<40} {tier.max_concurrency}"
        )
    return "\n".join(lines)
