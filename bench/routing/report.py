"""Metrics with bootstrap confidence intervals, the table, and the cost-vs-success plot.

Every metric is a ratio of sums over DAGs (e.g. successes / nodes), and its 95% interval is
a percentile bootstrap over DAGs (whole DAGs are resampled). All policies share the same
resamples, so differences and ratios between policies are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from draws import DagDraw, NodeDraw
from policies import ORACLE_VERIFIED, TOP, CostModel, NodeRun, VerifierRates, judge_tier

COLUMNS = (
    "nodes", "cost", "correct", "silent", "gave_up", "wasted", "wasted_truth", "dag_ok",
    "makespan", "dags", "wasted_solved", "wasted_avoidable",
)  # fmt: skip


def makespan(dag: DagDraw, runs: Sequence[NodeRun]) -> float:
    """Critical path on the DAG's real edges, each node taking its calls' latency in turn."""
    finish = [0.0] * len(runs)
    for index, run in enumerate(runs):
        ready = max((finish[dep] for dep in dag.deps[index]), default=0.0)
        finish[index] = ready + run.latency
    return max(finish, default=0.0)


def avoidable_waste(node: NodeDraw, run: NodeRun, verifier: VerifierRates | None = None) -> float:
    """Rejected spend a policy could have avoided: all of it, except, on a node no tier
    solves, one attempt on the top tier (what the one-Opus-attempt oracle pays to learn
    that the node is hopeless) and, with a paid ``verifier``, its one check (what the
    verified oracle pays)."""
    if node.cheapest_pass <= TOP or TOP not in run.attempts:
        return run.wasted
    model = _cost_model()
    unavoidable = model.task(TOP, node, escalated=False).cost
    judge = judge_tier(verifier, TOP) if verifier is not None else None
    if judge is not None:
        unavoidable += model.judge(judge, node).cost
    return max(0.0, run.wasted - unavoidable)


@cache
def _cost_model() -> CostModel:
    return CostModel()


def dag_totals(
    dag: DagDraw, runs: Sequence[NodeRun], verifier: VerifierRates | None = None
) -> list[float]:
    """One row of ``COLUMNS`` for one DAG, its nodes verified by ``verifier``."""
    correct = sum(run.correct for run in runs)
    wasted_truth = sum(run.wasted if run.correct else run.cost for run in runs)
    return [
        len(runs),
        sum(run.cost for run in runs),
        correct,
        sum(run.delivered and not run.correct for run in runs),
        sum(not run.delivered for run in runs),
        sum(run.wasted for run in runs),
        wasted_truth,
        float(correct == len(runs)),
        makespan(dag, runs),
        1.0,
        sum(run.wasted for run in runs if run.delivered),
        sum(
            avoidable_waste(node, run, verifier) for node, run in zip(dag.nodes, runs, strict=True)
        ),
    ]


def _metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from column sums (last axis is ``COLUMNS``); works on bootstrap stacks."""
    col = {name: sums[..., i] for i, name in enumerate(COLUMNS)}
    return {
        "cost_per_node_usd": col["cost"] / col["nodes"],
        "success": col["correct"] / col["nodes"],
        "silent_failures": col["silent"] / col["nodes"],
        "gave_up": col["gave_up"] / col["nodes"],
        "wasted_share": col["wasted"] / np.maximum(col["cost"], 1e-300),
        "wasted_truth_share": col["wasted_truth"] / np.maximum(col["cost"], 1e-300),
        "wasted_on_delivered_share": col["wasted_solved"] / np.maximum(col["cost"], 1e-300),
        "avoidable_waste_share": col["wasted_avoidable"] / np.maximum(col["cost"], 1e-300),
        "dag_success": col["dag_ok"] / col["dags"],
        "makespan_s": col["makespan"] / col["dags"],
    }


def summarise(
    totals: Mapping[str, np.ndarray],
    *,
    reference_cost: str,
    reference_quality: str,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, list[float]]]:
    """Point estimate and 95% interval of every metric, plus paired comparisons.

    Args:
        totals: Per policy, an array (DAGs x ``COLUMNS``).
        reference_cost: Policy the cost ratio is taken against (an oracle).
        reference_quality: Policy success and makespan are compared with (always-Opus).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.
    """
    dags = next(iter(totals.values())).shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, dags, size=(resamples, dags))
    point = {name: _metrics(rows.sum(axis=0)) for name, rows in totals.items()}
    boot = {name: _metrics(rows[picks].sum(axis=1)) for name, rows in totals.items()}
    out: dict[str, dict[str, list[float]]] = {}
    for name in totals:
        pairs = dict(boot[name])
        values = dict(point[name])
        pairs["cost_vs_reference"] = (
            boot[name]["cost_per_node_usd"] / boot[reference_cost]["cost_per_node_usd"]
        )
        values["cost_vs_reference"] = (
            point[name]["cost_per_node_usd"] / point[reference_cost]["cost_per_node_usd"]
        )
        if ORACLE_VERIFIED in totals:  # the floor of a policy that pays for its checks
            pairs["cost_vs_verified"] = (
                boot[name]["cost_per_node_usd"] / boot[ORACLE_VERIFIED]["cost_per_node_usd"]
            )
            values["cost_vs_verified"] = (
                point[name]["cost_per_node_usd"] / point[ORACLE_VERIFIED]["cost_per_node_usd"]
            )
        pairs["success_minus_quality_ref"] = (
            boot[name]["success"] - boot[reference_quality]["success"]
        )
        values["success_minus_quality_ref"] = (
            point[name]["success"] - point[reference_quality]["success"]
        )
        pairs["makespan_vs_quality_ref"] = (
            boot[name]["makespan_s"] / boot[reference_quality]["makespan_s"]
        )
        values["makespan_vs_quality_ref"] = (
            point[name]["makespan_s"] / point[reference_quality]["makespan_s"]
        )
        out[name] = {
            metric: [
                float(values[metric]),
                float(np.percentile(pairs[metric], 2.5)),
                float(np.percentile(pairs[metric], 97.5)),
            ]
            for metric in values
        }
    return out


def fmt(triple: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    value, low, high = (x * scale for x in triple)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table(summary: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """A Markdown table: one row per policy, 95% intervals in brackets."""
    head = (
        "| policy | $ / 1k nodes | x oracle (Opus give-up) | x verified oracle | success % "
        "| vs always-Opus (pts) "
        "| per-DAG success % | silent failures % | gave up % | wasted % (engine) "
        "| of which on delivered nodes % | avoidable waste % | spend on no correct answer % "
        "| makespan s | x always-Opus |"
    )
    lines = [head, "|" + "---|" * 15]
    for name, m in summary.items():
        lines.append(
            f"| {name} | {fmt(m['cost_per_node_usd'], 1000, 2)} "
            f"| {fmt(m['cost_vs_reference'], 1, 2)} | {verified_ratio(m)} "
            f"| {fmt(m['success'], 100)} "
            f"| {fmt(m['success_minus_quality_ref'], 100)} | {fmt(m['dag_success'], 100)} "
            f"| {fmt(m['silent_failures'], 100)} | {fmt(m['gave_up'], 100)} "
            f"| {fmt(m['wasted_share'], 100)} | {fmt(m['wasted_on_delivered_share'], 100)} "
            f"| {fmt(m['avoidable_waste_share'], 100)} | {fmt(m['wasted_truth_share'], 100)} "
            f"| {fmt(m['makespan_s'], 1, 1)} | {fmt(m['makespan_vs_quality_ref'], 1, 2)} |"
        )
    return "\n".join(lines)


def verified_ratio(metrics: Mapping[str, Sequence[float]]) -> str:
    """The cost ratio to the verified oracle, or "n/a" in results written before it."""
    ratio = metrics.get("cost_vs_verified")
    return fmt(ratio, 1, 2) if ratio is not None else "n/a"


def plot(results: Mapping[str, Mapping[str, Any]], mix: str, path: Path) -> None:
    """Cost per node vs success, one panel per verifier, 95% intervals as error bars."""
    import matplotlib as mpl  # noqa: PLC0415  (benchmark-only dependency)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [key for key in results if key.startswith(f"{mix}/")]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 5.2), sharey=True)
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("tab20").colors
    for axis, key in zip(axes, panels, strict=True):
        names = [name for name in results[key] if name != "ours (model)"]  # = the engine's
        for number, name in enumerate(names):
            m = results[key][name]
            cost = np.array(m["cost_per_node_usd"]) * 1000
            success = np.array(m["success"]) * 100
            ours = name.startswith(("ours", "proposal"))
            axis.errorbar(
                cost[0], success[0],
                xerr=[[cost[0] - cost[1]], [cost[2] - cost[0]]],
                yerr=[[success[0] - success[1]], [success[2] - success[0]]],
                fmt="*" if ours else ("s" if name.startswith("oracle") else "o"),
                color=colours[number % len(colours)], markersize=12 if ours else 7,
                capsize=2, label=name,
            )  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("USD per 1,000 nodes (log scale)")
        axis.set_title(f"mix {mix}, verifier: {key.split('/', 1)[1]}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("correct answers delivered, % of nodes")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.suptitle("Routing policies: cost vs success (95% bootstrap intervals)")
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
