"""Routing and escalation cost benchmark (issue 7, part 3). Run by hand, never by ``make test``.

    bench/.venv/bin/python bench/routing/run.py --json out/bench/routing.json \
        --plot docs/routing-cost-vs-success.png

Draws the DAGs, runs every policy on them (ours through the real Engine as well as in the
cost model, checking that the two agree node by node), runs a sample of DAGs through the
Engine, the real SDK and the local simulator over HTTP, and prints one table per mix and
verifier with 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from draws import MIXES, DagDraw, draw_dags
from policies import (
    VERIFIERS,
    CostModel,
    NodeRun,
    VerifierRates,
    baselines,
    ours,
    ours_skip_sonnet,
)
from report import dag_totals, fmt, plot, summarise, table
from through_engine import run_in_process, run_over_http

from orchestrator.routing import CalibratedRouter

ENGINE = "ours (engine)"
CALIBRATED = "ours, calibrated router (engine)"
ORACLE_OPUS = "oracle-hopeless-opus"
ALWAYS_OPUS = "always-opus"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dags", type=int, default=1000, help="DAGs per mix (default 1000)")
    parser.add_argument("--mixes", nargs="+", default=["B", "A", "C"], choices=sorted(MIXES))
    parser.add_argument("--verifiers", nargs="+", default=list(VERIFIERS), choices=VERIFIERS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sigma", type=float, default=0.75,
        help="noise (in tiers) of the difficulty estimate behind needs and RouteLLM",
    )  # fmt: skip
    parser.add_argument("--threshold", type=float, default=0.5, help="RouteLLM threshold")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--http-dags", type=int, default=20, help="DAGs of mix B over HTTP")
    parser.add_argument("--no-engine", action="store_true", help="cost model only (fast)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the signal-noise sweep")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--plot", type=Path, help="write the mix-B cost/success plot here")
    return parser.parse_args(argv)


def _model_runs(
    policy: Callable[..., NodeRun], dags: Sequence[DagDraw], costs: CostModel, v: VerifierRates
) -> list[list[NodeRun]]:
    return [[policy(costs, node, v) for node in dag.nodes] for dag in dags]


def _totals(
    dags: Sequence[DagDraw],
    runs: Sequence[Sequence[NodeRun]],
    verifier: VerifierRates | None = None,
) -> np.ndarray:
    return np.array([dag_totals(dag, r, verifier) for dag, r in zip(dags, runs, strict=True)])


def compare(a: Sequence[Sequence[NodeRun]], b: Sequence[Sequence[NodeRun]]) -> dict[str, Any]:
    """Node by node: same attempts, verdict outcome and truth; how far apart the costs are."""
    pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    same = sum(
        x.attempts == y.attempts and x.delivered == y.delivered and x.correct == y.correct
        for x, y in pairs
    )
    cost_a, cost_b = sum(x.cost for x, _ in pairs), sum(y.cost for _, y in pairs)
    return {
        "nodes": len(pairs),
        "same_decisions": same,
        "max_abs_cost_diff_usd": max(abs(x.cost - y.cost) for x, y in pairs),
        "total_cost_ratio": cost_b / cost_a,
        "max_abs_latency_diff_s": max(abs(x.latency - y.latency) for x, y in pairs),
    }


def run_cell(
    dags: Sequence[DagDraw], verifier: VerifierRates, args: argparse.Namespace, costs: CostModel
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All policies on one mix with one verifier: per-policy totals and the engine check."""
    policies: dict[str, Callable[..., NodeRun]] = {
        "ours (model)": partial(_ours, sigma=args.sigma),
        "ours, no routing signal": partial(_ours, sigma=math.inf),
        "ours, perfect routing signal": partial(_ours, sigma=0.0),
        "proposal: ours, escalate straight to Opus": partial(ours_skip_sonnet, sigma=args.sigma),
        **baselines(args.sigma, args.threshold),
    }
    runs = {name: _model_runs(p, dags, costs, verifier) for name, p in policies.items()}
    check: dict[str, Any] = {}
    if not args.no_engine:
        started = time.perf_counter()
        engine = anyio.run(run_in_process, dags, verifier, args.sigma, costs)
        check = compare(runs["ours (model)"], engine)
        check["engine_wall_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        router = CalibratedRouter(seed=args.seed)  # one router learns across all the DAGs
        calibrated = anyio.run(run_in_process, dags, verifier, args.sigma, costs, router)
        check["calibrated_wall_s"] = round(time.perf_counter() - started, 1)
        check["calibration"] = router.table(costs.ladder)
        runs = {ENGINE: engine, CALIBRATED: calibrated, **runs}
    return {name: _totals(dags, r, verifier) for name, r in runs.items()}, check


SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, math.inf)


def sigma_sweep(
    dags: Sequence[DagDraw], verifier: VerifierRates, args: argparse.Namespace, costs: CostModel
) -> str:
    """How good the planner's needs must be: ours (cost model) over the signal's noise."""
    fixed = baselines(args.sigma, args.threshold)
    totals = {
        name: _totals(dags, _model_runs(fixed[name], dags, costs, verifier), verifier)
        for name in (ORACLE_OPUS, ALWAYS_OPUS)
    }
    for sigma in SWEEP:
        runs = _model_runs(partial(_ours, sigma=sigma), dags, costs, verifier)
        totals[f"sigma={sigma:g}"] = _totals(dags, runs, verifier)
    summary = summarise(
        totals, reference_cost=ORACLE_OPUS, reference_quality=ALWAYS_OPUS,
        resamples=args.resamples, seed=args.seed,
    )  # fmt: skip
    lines = [
        "| signal noise (tiers) | x oracle (Opus give-up) | success % | wasted % | "
        "makespan x always-Opus |",
        "|---|---|---|---|---|",
    ]
    for name, m in summary.items():
        if name.startswith("sigma="):
            lines.append(
                f"| {name[6:]} | {fmt(m['cost_vs_reference'], 1, 2)} "
                f"| {fmt(m['success'], 100)} | {fmt(m['wasted_share'], 100)} "
                f"| {fmt(m['makespan_vs_quality_ref'], 1, 2)} |"
            )
    return "\n".join(lines)


def _ours(costs: CostModel, node: Any, verifier: VerifierRates, *, sigma: float) -> NodeRun:
    return ours(costs, node, verifier, sigma)


def http_sample(args: argparse.Namespace, costs: CostModel) -> dict[str, Any]:
    """The first ``--http-dags`` DAGs of mix B over HTTP vs the same DAGs in process."""
    dags = draw_dags("B", args.http_dags, args.seed)
    out: dict[str, Any] = {}
    for name in args.verifiers:
        verifier = VERIFIERS[name]
        started = time.perf_counter()
        http, requests = anyio.run(run_over_http, dags, verifier, args.sigma, costs, args.seed)
        wall = time.perf_counter() - started
        local = anyio.run(run_in_process, dags, verifier, args.sigma, costs)
        out[name] = {
            **compare(local, http),
            "http_requests": requests,
            "http_wall_s": round(wall, 1),
            "in_process": _brief(dags, local),
            "over_http": _brief(dags, http),
        }
    return out


def _brief(dags: Sequence[DagDraw], runs: Sequence[Sequence[NodeRun]]) -> dict[str, float]:
    totals = _totals(dags, runs).sum(axis=0)
    return {
        "cost_per_1k_nodes_usd": float(totals[1] / totals[0] * 1000),
        "success": float(totals[2] / totals[0]),
        "wasted_share": float(totals[5] / totals[1]),
        "makespan_s": float(totals[8] / totals[9]),
    }


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607
    return done.stdout.strip()


def _environment() -> dict[str, Any]:
    import orchestrator  # noqa: PLC0415

    library = Path(orchestrator.__file__).parent
    pinned = library.parent / "COMMIT"  # a `git archive` snapshot (see docs/benchmarks.md)
    changed = _git("status", "--porcelain", "--", "orchestrator").splitlines()
    return {
        "library": str(library),
        "library_commit": pinned.read_text().strip() if pinned.exists() else None,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_library_files": len(changed),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {platform.processor() or '?'}",
        "versions": {p: metadata.version(p) for p in ("anthropic", "numpy", "matplotlib")},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    costs = CostModel()
    results: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    sweeps: dict[str, str] = {}
    http = {} if args.no_engine or args.http_dags == 0 else http_sample(args, costs)
    for name, sample in http.items():
        print(f"\nHTTP sample, mix B, verifier {name}: {json.dumps(sample)}")
    for mix in args.mixes:
        dags = draw_dags(mix, args.dags, args.seed)
        sizes = [len(d.nodes) for d in dags]
        print(f"\nmix {mix}: {len(dags)} DAGs, {sum(sizes)} nodes ({min(sizes)}-{max(sizes)})")
        for name in args.verifiers:
            totals, check = run_cell(dags, VERIFIERS[name], args, costs)
            summary = summarise(
                totals, reference_cost=ORACLE_OPUS, reference_quality=ALWAYS_OPUS,
                resamples=args.resamples, seed=args.seed,
            )  # fmt: skip
            results[f"{mix}/{name}"] = summary
            checks[f"{mix}/{name}"] = check
            print(f"\n### mix {mix}, verifier {name}\n\n{table(summary)}")
            if check:
                print(f"\nengine vs model: {json.dumps(check)}")
            if mix == "B" and not args.no_sweep:
                sweeps[name] = sigma_sweep(dags, VERIFIERS[name], args, costs)
                print(f"\n#### ours vs routing-signal noise, mix B, {name}\n\n{sweeps[name]}")
            _write(args, results, checks, sweeps, http)
    if args.plot and "B" in args.mixes:
        plot(results, "B", args.plot)
    _write(args, results, checks, sweeps, http)


def _write(args: argparse.Namespace, *parts: dict[str, Any]) -> None:
    """Write everything measured so far (after every cell: a crash loses nothing)."""
    results, checks, sweeps, http = parts
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            **_environment(),
            "parameters": vars(args) | {"json": str(args.json), "plot": str(args.plot)},
            "results": results,
            "engine_vs_model": checks,
            "sigma_sweep_tables": sweeps,
            "http_sample": http,
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
