"""Latency-bound makespan: how close each system gets to the ideal schedule.

Node bodies sleep (``anyio.sleep``: the stand-in for waiting on a model), so the ideal is
known exactly:

* ``independent``: 1,000 independent nodes of 50 ms under a concurrency cap of 100:
  ideal = 1,000 / 100 x 50 ms = 0.5 s.
* ``random-dag``: a random DAG (fixed seed) with per-node durations drawn from 10-100 ms,
  no cap: ideal = its critical path (the longest duration-weighted path).

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.makespan --json out/bench/makespan.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bench._dags import Dag, random_dag
from bench._report import environment, print_table, write_json
from bench._runners import RUNNERS, prepare_engine

SYSTEMS = {
    **RUNNERS,
    # The engine as shipped: its telemetry listener on (no-op providers until an SDK is set).
    "engine+telemetry": functools.partial(prepare_engine, detach_telemetry=False),
}


@dataclass(frozen=True)
class Case:
    """A DAG, each node's duration, the concurrency cap and the ideal makespan."""

    name: str
    dag: Dag
    durations: tuple[float, ...]
    limit: int | None
    ideal_s: float


def critical_path_s(dag: Dag, durations: Sequence[float]) -> float:
    """Length of the longest duration-weighted path (index order is topological)."""
    finish: list[float] = []
    for node, deps in enumerate(dag.deps):
        finish.append(durations[node] + max((finish[d] for d in deps), default=0.0))
    return max(finish)


def independent_case(count: int = 1000, seconds: float = 0.05, limit: int = 100) -> Case:
    dag = Dag(f"independent-{count}", tuple(() for _ in range(count)))
    ideal = -(-count // limit) * seconds
    return Case(
        f"{count} x {seconds * 1000:.0f} ms, cap {limit}", dag, (seconds,) * count, limit, ideal
    )


def random_case(size: int = 200, seed: int = 5) -> Case:
    dag = random_dag(size, seed=seed)
    rng = random.Random(seed)
    durations = tuple(rng.uniform(0.010, 0.100) for _ in range(size))
    return Case(
        f"random DAG of {size}, no cap", dag, durations, None, critical_path_s(dag, durations)
    )


async def measure(system: str, case: Case, repeats: int) -> dict[str, Any]:
    durations = case.durations
    calls = [0]

    async def work(index: int) -> None:
        calls[0] += 1
        await anyio.sleep(durations[index])

    makespans = []
    for _ in range(repeats):
        execute = await SYSTEMS[system](case.dag, work, case.limit)
        gc.collect()
        calls[0] = 0
        started = time.perf_counter()
        await execute()
        makespans.append(time.perf_counter() - started)
        assert calls[0] == case.dag.size, f"{system} ran {calls[0]} of {case.dag.size}"
    median = statistics.median(makespans)
    return {
        "case": case.name,
        "system": system,
        "nodes": case.dag.size,
        "limit": case.limit,
        "ideal_s": case.ideal_s,
        "makespan_s": median,
        "ratio": median / case.ideal_s,
        "ratio_min": min(makespans) / case.ideal_s,
        "ratio_max": max(makespans) / case.ideal_s,
        "makespans_s": makespans,
        "load_avg_1m": os.getloadavg()[0],
    }


def available(systems: Sequence[str]) -> list[str]:
    out = []
    for system in systems:
        if system == "langgraph":
            try:
                import langgraph  # noqa: F401, PLC0415  (only in bench/.venv)
            except ImportError:
                print("langgraph is not installed here: run bench/setup.sh, use bench/.venv")
                continue
        out.append(system)
    return out


async def run_all(systems: Sequence[str], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for case in (independent_case(), random_case()):
        for system in systems:
            row = await measure(system, case, repeats)
            print_table([row], COLUMNS, header=not rows)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = anyio.run(run_all, available(args.systems.split(",")), args.repeats)
    if args.json:
        write_json(args.json, {"environment": environment(), "rows": rows})


COLUMNS = [
    ("case", "case", "{}"),
    ("system", "system", "{}"),
    ("ideal_s", "ideal s", "{:.3f}"),
    ("makespan_s", "makespan s (median)", "{:.3f}"),
    ("ratio", "makespan / ideal", "{:.3f}"),
    ("ratio_min", "min", "{:.3f}"),
    ("ratio_max", "max", "{:.3f}"),
    ("load_avg_1m", "load", "{:.1f}"),
]

if __name__ == "__main__":
    main()
