"""What-ifs for the engine, on the cost model only (mix B). Run by hand.

    bench/.venv/bin/python bench/routing/proposals.py --json out/bench/routing-proposals.json

These rows are *not* run through the Engine: they are changes or settings we have not
made, evaluated on the same draws with the cost model that ``run.py`` shows to agree with
the Engine node by node for the policy as it is.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from draws import draw_dags
from policies import JUDGE_ANSWER_ONLY, VERIFIERS, CostModel, baselines, ours
from report import summarise, table
from run import ALWAYS_OPUS, ORACLE_OPUS, _model_runs, _totals


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sigma", type=float, default=0.75)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    costs = CostModel()
    dags = draw_dags("B", args.dags, args.seed)
    fixed = baselines(args.sigma, 0.5)
    out = {}
    verifiers = {**VERIFIERS, "judge-answer-only": JUDGE_ANSWER_ONLY}
    for name, verifier in verifiers.items():
        policies = {
            "ours (as run)": partial(ours, sigma=args.sigma),
            "ours, max_attempts=2 (an existing setting)": partial(
                ours, sigma=args.sigma, max_attempts=2
            ),
            "ours, perfect routing signal": partial(ours, sigma=0.0),
            "ours, perfect signal, max_attempts=1": partial(ours, sigma=0.0, max_attempts=1),
            ALWAYS_OPUS: fixed[ALWAYS_OPUS],
            ORACLE_OPUS: fixed[ORACLE_OPUS],
        }
        totals = {
            label: _totals(dags, _model_runs(policy, dags, costs, verifier), verifier)
            for label, policy in policies.items()
        }
        summary = summarise(
            totals, reference_cost=ORACLE_OPUS, reference_quality=ALWAYS_OPUS,
            resamples=args.resamples, seed=args.seed,
        )  # fmt: skip
        out[name] = summary
        print(f"\n### mix B, verifier {name} (cost model only)\n\n{table(summary)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"parameters": vars(args) | {"json": str(args.json)},
                                         "results": out}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
