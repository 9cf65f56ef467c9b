"""The calibrated router against the capability rules, over the routing signal's noise.

    bench/.venv/bin/python bench/routing/calibration_sweep.py --json out/bench/calibration.json

Mix B, 1,000 DAGs, one verifier (default: the free schema-grade check). For each noise
level of the planner's ``needs`` (see ``draws.py``), the rules' policy (cost model, which
``run.py`` shows matches the engine node by node) and a fresh ``CalibratedRouter`` through
the real Engine, learning across the DAGs in turn (its warm-up and exploration are paid for
in the numbers).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio
from draws import draw_dags
from policies import VERIFIERS, CostModel, baselines
from report import fmt, summarise
from run import ALWAYS_OPUS, ORACLE_OPUS, _model_runs, _ours, _totals
from through_engine import run_in_process

from orchestrator.routing import CalibratedRouter

NOISE = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, math.inf)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verifier", default="schema", choices=VERIFIERS)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    costs = CostModel()
    verifier = VERIFIERS[args.verifier]
    dags = draw_dags("B", args.dags, args.seed)
    fixed = baselines(0.75, 0.5)
    totals = {
        name: _totals(dags, _model_runs(fixed[name], dags, costs, verifier), verifier)
        for name in (ORACLE_OPUS, ALWAYS_OPUS)
    }
    for sigma in NOISE:
        rules = _model_runs(partial(_ours, sigma=sigma), dags, costs, verifier)
        totals[f"rules sigma={sigma:g}"] = _totals(dags, rules, verifier)
        router = CalibratedRouter(seed=args.seed)
        learned = anyio.run(run_in_process, dags, verifier, sigma, costs, router)
        totals[f"calibrated sigma={sigma:g}"] = _totals(dags, learned, verifier)
        print(f"sigma={sigma:g} done", flush=True)
    summary = summarise(
        totals, reference_cost=ORACLE_OPUS, reference_quality=ALWAYS_OPUS,
        resamples=args.resamples, seed=args.seed,
    )  # fmt: skip
    lines = [
        "| signal noise (tiers) | rules: x oracle | calibrated: x oracle | rules: success % "
        "| calibrated: success % | rules: avoidable waste % | calibrated: avoidable waste % |",
        "|---|---|---|---|---|---|---|",
    ]
    for sigma in NOISE:
        r, c = summary[f"rules sigma={sigma:g}"], summary[f"calibrated sigma={sigma:g}"]
        lines.append(
            f"| {sigma:g} | {fmt(r['cost_vs_reference'], 1, 2)} "
            f"| {fmt(c['cost_vs_reference'], 1, 2)} | {fmt(r['success'], 100)} "
            f"| {fmt(c['success'], 100)} | {fmt(r['avoidable_waste_share'], 100)} "
            f"| {fmt(c['avoidable_waste_share'], 100)} |"
        )
    table = "\n".join(lines)
    print(f"\n### mix B, verifier {args.verifier}: rules vs calibrated\n\n{table}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"parameters": vars(args) | {"json": str(args.json)}, "results": summary}
        args.json.write_text(json.dumps({**payload, "table": table}, indent=1))


if __name__ == "__main__":
    main()
