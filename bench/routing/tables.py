"""Print the Markdown tables of docs/benchmarks.md from the JSON the runs wrote.

bench/.venv/bin/python bench/routing/tables.py out/bench/routing-B.json ...
bench/.venv/bin/python bench/routing/tables.py --plot docs/routing-cost-vs-success.png \
    out/bench/routing-B.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from report import fmt, plot, verified_ratio

SHORT = (
    "| policy | $ / 1k nodes | x oracle (Opus give-up) | x verified oracle | success % "
    "| vs always-Opus, pts "
    "| per-DAG success % | silent failures % | gave up % | wasted % | of which on delivered "
    "nodes % | avoidable waste % | makespan x always-Opus |"
)


def short_table(summary: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    lines = [SHORT, "|" + "---|" * 13]
    for name, m in summary.items():
        if name == "ours (model)":  # identical to the engine's row (checked node by node)
            continue
        lines.append(
            f"| {name} | {fmt(m['cost_per_node_usd'], 1000, 2)} "
            f"| {fmt(m['cost_vs_reference'], 1, 2)} | {verified_ratio(m)} "
            f"| {fmt(m['success'], 100)} "
            f"| {fmt(m['success_minus_quality_ref'], 100)} | {fmt(m['dag_success'], 100)} "
            f"| {fmt(m['silent_failures'], 100)} | {fmt(m['gave_up'], 100)} "
            f"| {fmt(m['wasted_share'], 100)} | {fmt(m['wasted_on_delivered_share'], 100)} "
            f"| {fmt(m['avoidable_waste_share'], 100)} "
            f"| {fmt(m['makespan_vs_quality_ref'], 1, 2)} |"
        )
    return "\n".join(lines)


def ours_across(data: Mapping[str, Any], policy: str = "ours (engine)") -> str:
    """One row per mix and verifier: how ``policy`` stands against the references."""
    lines = [
        "| mix / verifier | x oracle (Opus give-up) | x verified oracle | success % "
        "| vs always-Opus, pts "
        "| silent failures % | wasted % | avoidable waste % | makespan x always-Opus |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, summary in data["results"].items():
        if policy not in summary:
            continue
        m = summary[policy]
        lines.append(
            f"| {key} | {fmt(m['cost_vs_reference'], 1, 2)} | {verified_ratio(m)} "
            f"| {fmt(m['success'], 100)} "
            f"| {fmt(m['success_minus_quality_ref'], 100)} | {fmt(m['silent_failures'], 100)} "
            f"| {fmt(m['wasted_share'], 100)} | {fmt(m['avoidable_waste_share'], 100)} "
            f"| {fmt(m['makespan_vs_quality_ref'], 1, 2)} |"
        )
    return "\n".join(lines)


def what_ifs(data: Mapping[str, Any]) -> str:
    """The proposals' rows (``proposals.py``): one line per verifier and variant."""
    lines = [
        "| verifier | policy | $ / 1k nodes | x oracle (Opus give-up) | success % "
        "| silent failures % | wasted % |",
        "|---|---|---|---|---|---|---|",
    ]
    for verifier, summary in data["results"].items():
        for name, m in summary.items():
            lines.append(
                f"| {verifier} | {name} | {fmt(m['cost_per_node_usd'], 1000, 2)} "
                f"| {fmt(m['cost_vs_reference'], 1, 2)} | {fmt(m['success'], 100)} "
                f"| {fmt(m['silent_failures'], 100)} | {fmt(m['wasted_share'], 100)} |"
            )
    return "\n".join(lines)


def main(paths: Sequence[str]) -> None:
    if paths[:1] == ["--plot"]:  # tables.py --plot OUT.png RESULTS.json: redraw the figure
        plot(json.loads(Path(paths[2]).read_text())["results"], "B", Path(paths[1]))
        return
    for path in paths:
        data: dict[str, Any] = json.loads(Path(path).read_text())
        print(f"\n<!-- from {path}: {data.get('command', '')} -->")
        if "engine_vs_model" not in data:  # proposals.py
            print(f"\n{what_ifs(data)}")
            continue
        print(f"\n#### ours across verifiers\n\n{ours_across(data)}")
        for key, summary in data["results"].items():
            print(f"\n#### {key}\n\n{short_table(summary)}")
        for key, check in data.get("engine_vs_model", {}).items():
            print(f"\nengine vs model {key}: {json.dumps(check)}")
        for key, text in data.get("sigma_sweep_tables", {}).items():
            print(f"\n#### signal sweep {key}\n\n{text}")
        for key, sample in data.get("http_sample", {}).items():
            print(f"\nhttp {key}: {json.dumps(sample)}")


if __name__ == "__main__":
    main(sys.argv[1:])
