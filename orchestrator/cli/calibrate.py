"""``orchestrator calibrate``: every tier on a sample of your tasks; where each one fails."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import anyio

from orchestrator.calibrate import CalibrationReport, FailureShape, calibrate, sample_tasks
from orchestrator.cli.commands import (
    NO_KEY_HELP,
    _endpoint,
    _has_key,
    _load_corpus,
    _uses_corpus,
)
from orchestrator.cli.otel import session
from orchestrator.cli.stores import open_store, store_name
from orchestrator.exceptions import UserError
from orchestrator.planners.static import load_plan_file
from orchestrator.store import StoreListener
from orchestrator.tiers import TierLadder, load_ladder
from orchestrator.tools.corpus import corpus_tools

__all__ = ["cmd_calibrate", "plot_failure_shape", "render_failure_shape"]


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate; print the failure shape (or JSON); 2 when there is nothing to run."""
    ladder = load_ladder(args.tiers)
    if args.sample < 1:
        raise UserError(f"--sample must be at least 1, got {args.sample}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plot needs matplotlib: pip install 'tiered-orchestrator[plot]'")
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    with session(args):
        report = anyio.run(_calibrate, args, ladder)
    if report is None:
        raise UserError(
            f"no recorded tasks to sample in {store_name(args)}: run some work first, or "
            "give --plan FILE"
        )
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(render_failure_shape(report))
    if args.plot:
        plot_failure_shape(report, Path(args.plot))
    return 0


async def _calibrate(args: argparse.Namespace, ladder: TierLadder) -> CalibrationReport | None:
    store = await open_store(args)
    try:
        plan = (
            load_plan_file(args.plan)
            if args.plan
            else await sample_tasks(store, size=args.sample, runs=args.runs, seed=args.seed)
        )
        if plan is None:
            return None
        corpus = await _load_corpus(args) if _uses_corpus(plan) else None
        async with _endpoint(args, ladder) as (client, run_ladder):
            return await calibrate(
                client, run_ladder, plan, listeners=[StoreListener(store)],
                tools=corpus_tools(corpus) if corpus is not None else [], passages=corpus,
                budget_usd=args.budget, max_concurrency=args.max_concurrency,
            )  # fmt: skip
    finally:
        await store.aclose()


def _row(row: FailureShape, width: int) -> str:
    catch = "-" if row.catch_rate is None else f"{row.catch_rate:.0%}"
    return (
        f"{row.family:<{width}}  {row.tier:<8} {row.tasks:>5} {row.agreed:>6} {row.caught:>6} "
        f"{row.missed:>6} {row.unchecked:>9} {row.silent_rate:>7.1%} {catch:>6} "
        f"{'$' + format(row.cost_usd, '.4f'):>9}"
    )


def render_failure_shape(report: CalibrationReport) -> str:
    """The failure shape as a text table: per family and tier, then per tier over all."""
    width = max([len(r.family) for r in report.rows] + [6])
    head = (
        f"{'family':<{width}}  {'tier':<8} {'tasks':>5} {'agreed':>6} {'caught':>6} "
        f"{'missed':>6} {'unchecked':>9} {'silent':>7} {'catch':>6} {'cost':>9}"
    )
    lines = [head, *(_row(r, width) for r in report.rows), "", head]
    lines += [_row(r, width) for r in report.totals()]
    reference = report.tiers[-1]
    lines += [
        "",
        f"reference: {reference}'s accepted answers. agreed: passed its checks and said what "
        f"{reference} said; caught: rejected by the checks; missed: passed them, contradicted "
        f"{reference} (silent: missed / checked); catch: caught / (caught + missed).",
        f"cost: ${report.cost_usd:.4f}; runs: "
        + ", ".join(f"{tier} {run}" for tier, run in report.run_ids.items()),
    ]
    if report.stopped:
        lines.append(f"stopped: {report.stopped}")
    if report.simulated:
        lines.append("SIMULATED: answers from the local simulator or a test double, not models")
    return "\n".join(lines)


def plot_failure_shape(report: CalibrationReport, path: Path) -> None:
    """One panel per family: each tier's answers as agreed / caught / missed / unchecked."""
    import matplotlib as mpl  # noqa: PLC0415  (the plot extra)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    families = sorted({r.family for r in report.rows})
    figure, axes = plt.subplots(
        1, len(families), figsize=(3.2 * len(families) + 1, 3.6), squeeze=False
    )
    parts = (("agreed", "#4c9a2a"), ("caught", "#e0a100"), ("missed", "#c62828"),
             ("unchecked", "#9e9e9e"))  # fmt: skip
    for axis, family in zip(axes[0], families, strict=True):
        rows = [r for r in report.rows if r.family == family]
        bottom = [0.0] * len(rows)
        for name, colour in parts:
            shares = [getattr(r, name) / r.tasks if r.tasks else 0.0 for r in rows]
            axis.bar([r.tier for r in rows], shares, bottom=bottom, color=colour, label=name)
            bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
        axis.set_title(family, fontsize=9)
        axis.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of answers")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    title = "Where each tier fails (reference: " + report.tiers[-1] + ")"
    figure.suptitle(title + (" - SIMULATED" if report.simulated else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot: {path}", file=sys.stderr)
