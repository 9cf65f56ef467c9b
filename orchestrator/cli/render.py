"""Rendering of progress and results for the command line.

Progress goes to stderr (stdout carries the report, or the one JSON document of
``--json``): a live table on a terminal (:class:`LiveProgress`), one plain line per event
otherwise (:class:`ProgressPrinter`, for logs and CI).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.events import (
    AttemptFinished,
    AttemptSpending,
    AttemptStarted,
    Event,
    NodeFinished,
    NodeStarted,
    PlanningStarted,
    RunStarted,
)
from orchestrator.node import render_value
from orchestrator.plan import Plan, Task
from orchestrator.pricing import ZERO_USD
from orchestrator.results import (
    PLANNING_NODE,
    Attempt,
    NodeResult,
    NodeStatus,
    Outcome,
    RunResult,
)
from orchestrator.routing import CalibratedRouter
from orchestrator.tiers import TierLadder

__all__ = [
    "LiveProgress",
    "ProgressPrinter",
    "render_ladder",
    "render_mermaid",
    "render_summary",
    "render_tree",
]

SIMULATED_NOTE = (
    "SIMULATED: these answers came from the local Messages-API simulator (orchestrator_sim), "
    "not from a model. See docs/sim.md."
)


class ProgressPrinter:
    """An event listener printing one line per attempt start and end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._batched: set[tuple[str, str]] = set()  # (node, batch id) already told

    def __call__(self, event: Event) -> None:
        """Print a line for attempt and node events."""
        match event:
            case PlanningStarted(goal=goal):
                self._line(f"planning: {goal}")
            case AttemptSpending(node_id=node_id, attempt=attempt) if (
                node_id == PLANNING_NODE and attempt.finished_at
            ):
                self._line(f"planning: {_planning_round(attempt)}")
            case AttemptSpending(node_id=node_id, attempt=attempt) if attempt.batch_pending:
                for call in attempt.batch_pending:
                    if (node_id, call.batch_id) not in self._batched:
                        self._batched.add((node_id, call.batch_id))
                        self._line(f"  {node_id}: waiting in message batch {call.batch_id}")
            case AttemptStarted(node_id=node_id, attempt=attempt):
                self._line(f"  {node_id}: attempt {attempt.number} on {attempt.tier}")
            case AttemptFinished(node_id=node_id, attempt=attempt) if attempt.tool_wait:
                tools = ", ".join(attempt.tool_wait.tools)
                self._line(f"  {node_id}: attempt {attempt.number} waits for approval of {tools}")
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


def _planning_round(attempt: Attempt) -> str:
    outcome = "plan accepted" if attempt.passed else "plan rejected"
    if attempt.error:
        outcome = f"failed: {attempt.error}"
    return f"round {attempt.number} on {attempt.tier} (${attempt.cost_usd:.4f}): {outcome}"


@dataclass
class _Row:
    state: str = "waiting"
    tiers: list[str] = field(default_factory=list)
    cost_usd: Decimal = ZERO_USD
    note: str = ""
    rounds: dict[int, Decimal] = field(default_factory=dict)
    """Planning's row: the cost of each round so far (in flight: its worst case)."""
    batches: frozenset[str] = frozenset()
    """The Message Batches its calls wait in now."""


_STATE_STYLE = {
    "waiting": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "not_run": "yellow",
}


class LiveProgress:
    """A table of every node (state, tiers tried, attempts, cost) updating in place.

    Use as a context manager around the run and pass it as an event listener.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.rows: dict[str, _Row] = {}
        self._live = Live(
            get_renderable=self._table, console=self.console, refresh_per_second=8, transient=False
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()

    def __call__(self, event: Event) -> None:
        """Update the row of the node the event is about."""
        match event:
            case PlanningStarted():
                self._row(PLANNING_NODE).state = "running"
            case AttemptSpending(node_id=node_id, attempt=attempt):
                self._spending(node_id, attempt)
            case RunStarted(plan=plan, planning=planning):
                if planning is not None:  # planned before the run started
                    row = self._row(PLANNING_NODE)
                    row.state, row.cost_usd, row.tiers = "succeeded", planning.cost_usd, []
                    row.tiers += [planning.tier] * planning.rounds
                elif PLANNING_NODE in self.rows:
                    self.rows[PLANNING_NODE].state = "succeeded"
                for task in plan.tasks:
                    self.rows.setdefault(task.id, _Row())
            case NodeStarted(node_id=node_id):
                self._row(node_id).state = "running"
            case AttemptStarted(node_id=node_id, attempt=attempt):
                row = self._row(node_id)
                row.tiers.append(attempt.tier)
                row.note = ""
            case AttemptFinished(node_id=node_id, attempt=attempt):
                row = self._row(node_id)
                row.cost_usd += attempt.cost_usd
                row.batches, row.note = frozenset(), ""
                row.note = _attempt_note(attempt)
            case NodeFinished(result=result):
                row = self._row(result.id)
                row.state = result.status.value
                row.cost_usd = result.cost_usd
                row.note = "" if result.status is NodeStatus.SUCCEEDED else (result.reason or "")
            case _:
                pass

    def _row(self, node_id: str) -> _Row:
        return self.rows.setdefault(node_id, _Row())

    def _spending(self, node_id: str, attempt: Attempt) -> None:
        """Planning's cost so far; a node's batches its calls wait in (until it ends)."""
        if node_id == PLANNING_NODE:
            self._planning(attempt)
            return
        row = self._row(node_id)
        row.batches = frozenset(call.batch_id for call in attempt.batch_pending)
        if row.batches:
            row.note = f"waiting in message batch {', '.join(sorted(row.batches))}"

    def _planning(self, attempt: Attempt) -> None:
        """Planning's row: its rounds, and what they cost so far (the run's total has it)."""
        row = self._row(PLANNING_NODE)
        if attempt.number not in row.rounds:
            row.tiers.append(attempt.tier)
        spent = attempt.cost_usd + (ZERO_USD if attempt.finished_at else attempt.in_flight_usd)
        row.rounds[attempt.number] = spent
        row.cost_usd = sum(row.rounds.values(), ZERO_USD)
        if attempt.error:
            row.state, row.note = "failed", attempt.error

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("node", "state", "tiers", "attempts", "cost", "note"):
            table.add_column(column, justify="right" if column in ("attempts", "cost") else "left")
        total = ZERO_USD
        for node_id, row in self.rows.items():
            total += row.cost_usd
            state = f"[{_STATE_STYLE.get(row.state, '')}]{row.state}[/]"
            table.add_row(
                node_id, state, " -> ".join(row.tiers) or "-", str(len(row.tiers)),
                f"${row.cost_usd:.4f}", row.note[:70],
            )  # fmt: skip
        nodes = [row for node_id, row in self.rows.items() if node_id != PLANNING_NODE]
        done = sum(row.state not in ("waiting", "running") for row in nodes)
        table.caption = f"{done}/{len(nodes)} nodes done, ${total:.4f} spent (planning included)"
        if batches := {batch for row in nodes for batch in row.batches}:
            table.caption += f"; {len(batches)} message batch(es) waiting"
        return table


def _waiting(node: NodeResult) -> str:
    """A waiting node, and the tool calls it waits on if that is what waits."""
    paused = node.attempts[-1].tool_wait if node.attempts else None
    return f"{node.id} (its call of {', '.join(paused.tools)})" if paused else node.id


def _attempt_note(attempt: Attempt) -> str:
    """The live table's note on a finished attempt (nothing when it passed)."""
    if attempt.tool_wait:
        return f"waits for approval of {', '.join(attempt.tool_wait.tools)}"
    if attempt.passed:
        return ""
    return f"rejected: {attempt.error or (attempt.verdict.reason if attempt.verdict else '')}"


def render_summary(result: RunResult, *, show_output: bool = True) -> str:
    """A human summary: status, cost, a table of nodes, escalations and (optionally) output."""
    lines = [
        f"Run {result.run_id}: {result.status.value} in {result.wall_s:.2f}s, "
        f"cost ${result.cost_usd:.4f} (wasted ${result.wasted_cost_usd:.4f}"
        + (f", labels ${result.classify_cost_usd:.4f}" if result.classify_cost_usd else "")
        + (f", shadow runs ${result.shadow_cost_usd:.4f}" if result.shadow_cost_usd else "")
        + ")",
    ]
    if result.cache_read_tokens or result.cache_write_tokens:
        lines.append(
            f"prompt cache: {result.cache_read_tokens:,} tokens read, "
            f"{result.cache_write_tokens:,} written; saved ${result.cache_saving_usd:.4f} "
            "against the same calls uncached"
        )
    if result.batch_calls:
        lines.append(
            f"message batches: {result.batch_calls:,} calls at the batch price; saved "
            f"${result.batch_saving_usd:.4f} against the same calls sent one by one"
        )
    if result.replans:
        replaced = ", ".join(node.id for node in result.replaced) or "none"
        lines.append(
            f"replanned {result.replans} time(s) after tasks failed for good; replaced: "
            f"{replaced} (their cost is in the total); the plan now has {len(result.nodes)} tasks"
        )
    if waiting := [_waiting(node) for node in result.nodes if node.status is NodeStatus.WAITING]:
        lines.append(
            f"waiting for approval: {', '.join(waiting)}; decide with `orchestrator approve "
            f"{result.run_id} TASK` (or `--reject WHY`), then `orchestrator resume "
            f"{result.run_id}`"
        )
    if result.simulated:
        lines.append(SIMULATED_NOTE)
    if result.planning is not None:
        planning = result.planning
        lines.append(
            f"planning: {planning.rounds} round(s) on {planning.tier}"
            + (f" in {planning.wall_s:.2f}s" if planning.wall_s else "")
            + f", ${planning.cost_usd:.4f}"
            + (f" ({len(planning.problems)} plan(s) rejected)" if planning.problems else "")
        )
        if planning.error:
            lines.append(f"planning failed: {planning.error}")
    width = max([len(n.id) for n in result.nodes] + [4])
    paths = {node.id: " -> ".join(map(_step, node.attempts)) or "-" for node in result.nodes}
    tiers_width = max([len(path) for path in paths.values()] + [5])
    lines.append(f"{'node':<{width}}  {'status':<10} {'tiers':<{tiers_width}} {'cost':>9}  reason")
    for node in result.nodes:
        reason = "" if node.status is NodeStatus.SUCCEEDED else (node.reason or "")
        lines.append(
            f"{node.id:<{width}}  {node.status.value:<10} {paths[node.id]:<{tiers_width}} "
            f"${node.cost_usd:>8.4f}  {reason[:80]}"
        )
    escalations = sum(
        max(0, sum(a.answering and not a.tool_wait for a in n.attempts) - 1)  # a pause is none
        for n in result.nodes
        if n.final_tier != "python"
    )
    finished_on = Counter(n.final_tier for n in result.nodes if n.status is NodeStatus.SUCCEEDED)
    used = ", ".join(f"{tier} {count}" for tier, count in finished_on.items()) or "none"
    lines.append(f"escalations: {escalations}; nodes finished per tier: {used}")
    attempts = [a for n in result.nodes for a in n.attempts]
    workers = Counter(a.worker for a in attempts if a.worker)
    lost = sum(a.error_type == Outcome.WORKER_LOST for a in attempts)
    if workers or lost:
        shown = ", ".join(f"{worker} {count}" for worker, count in workers.most_common(8))
        more = f" and {len(workers) - 8} more" if len(workers) > 8 else ""
        lines.append(
            f"workers: {len(workers)} ran attempts ({shown}{more}); lost while running one: {lost}"
        )
    if result.api_errors:
        errors = ", ".join(f"{kind} {count}" for kind, count in result.api_errors.items())
        rate_limited = result.api_errors.get("rate_limit_error", 0)
        lines.append(f"API errors (retried or failed): {errors}; 429s: {rate_limited}")
    if show_output and result.output is not None:
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


def render_calibration(router: CalibratedRouter, ladder: TierLadder, counted: int) -> str:
    """What calibrated routing has learned: per kind of task, per starting tier."""
    rows = router.table(ladder)
    if not rows:
        return f"nothing learned yet: {counted} verified nodes in past runs"
    lines = [
        f"learned from {counted} verified nodes of past runs (* = where such tasks start)",
        f"{'needs':<46} {'start tier':<11} {'nodes':>8} {'verified':>9} {'$/verified':>11}",
    ]
    for row in rows:
        per = row["cost_per_verified_usd"]
        cost = f"{per:.3g}" if isinstance(per, float) else "-"
        verified = row["verified"]
        share = f"{verified:.1%}" if isinstance(verified, float) else "-"
        mark = "*" if row["start"] else " "
        lines.append(
            f"{row['needs']:<46} {mark}{row['tier']!s:<10} {row['nodes']!s:>8} "
            f"{share:>9} {cost:>11}"
        )
    return "\n".join([*lines, *_learned_lines(router, ladder)])


def _learned_lines(router: CalibratedRouter, ladder: TierLadder) -> list[str]:
    """What the learned gate knows: answers seen per tier, rejected shares, catch rate."""
    quality = router.quality
    if quality is None or not quality.tiers:
        return []
    seen = [
        f"{tier.name} {record.samples} ({record.rejected / record.samples:.0%} rejected)"
        for tier in ladder.tiers
        if (record := quality.tiers.get(tier.name)) is not None and record.samples
    ]
    compared = quality.caught + quality.silent
    return [
        "",
        f"learned gate (threshold {router.threshold:.1%}): answers seen per tier: "
        + ", ".join(seen),
        f"checks catch {quality.catch_rate:.0%} of wrong answers, from {compared:.0f} "
        "compared with the top tier (shadow attempts and `orchestrator calibrate`)",
    ]


def _needs_text(task: Task) -> str:
    levels = {k: v for k, v in task.needs.model_dump().items() if v}
    return " ".join(f"{k}={v}" for k, v in levels.items()) or "no special needs"


def render_tree(plan: Plan) -> str:
    """The plan as an indented tree: roots first, each task under what it depends on.

    A task with several dependencies appears under each; after the first time its subtree
    is abbreviated with ``(see above)``.
    """
    tasks = {task.id: task for task in plan.tasks}
    children: dict[str, list[str]] = {task.id: [] for task in plan.tasks}
    for task in plan.tasks:
        for dep in task.depends_on:
            children[dep].append(task.id)
    lines = [f"Plan: {plan.goal}"]
    shown: set[str] = set()

    def walk(task_id: str, depth: int) -> None:
        task = tasks[task_id]
        tools = f" tools: {', '.join(task.tools)}" if task.tools else ""
        first = task.instruction.splitlines()[0] if task.instruction else ""
        prefix = "  " * depth + "- "
        if task_id in shown:
            lines.append(f"{prefix}{task_id} (see above)")
            return
        shown.add(task_id)
        lines.append(f"{prefix}{task_id} [{_needs_text(task)}]{tools}: {first[:90]}")
        for child in children[task_id]:
            walk(child, depth + 1)

    for task in plan.tasks:
        if not task.depends_on:
            walk(task.id, 0)
    return "\n".join(lines)


def render_mermaid(plan: Plan) -> str:
    """The plan as a Mermaid flowchart (paste into any Markdown that renders Mermaid)."""
    lines = ["flowchart TD"]
    for task in plan.tasks:
        label = f"{task.id}<br/>{_needs_text(task)}".replace('"', "'")
        lines.append(f'    {_mermaid_id(task.id)}["{label}"]')
    for task in plan.tasks:
        for dep in task.depends_on:
            lines.append(f"    {_mermaid_id(dep)} --> {_mermaid_id(task.id)}")
    return "\n".join(lines)


def _mermaid_id(task_id: str) -> str:
    return "t_" + "".join(ch if ch.isalnum() else "_" for ch in task_id)


def _step(attempt: Attempt) -> str:
    """An attempt in a node's path of tiers; a label or a shadow run says what it was."""
    if attempt.classify:
        return f"[{attempt.tier}: {attempt.label or '?'}]"
    return f"({attempt.tier} shadow)" if attempt.shadow else attempt.tier
