"""CPU-bound Python nodes through ``engine.run``: a local Ray cluster vs one process.

Issue 18 point 4: 200 independent Python nodes, each about 100 ms of pure-Python CPU, run
by the engine (``engine.run``, preparing included) with the default local executor (a
worker thread each: one process, one GIL) and with a ``RayExecutor`` on a local Ray of
1, 2, ... worker CPUs. For each worker count a Ray is started (its start is timed apart),
warmed (its workers started, the function shipped), then measured in paired rounds: a
local run and a Ray run side by side, their order alternating, the speed-up being each
round's local wall time over its Ray wall time.

Usage (from a git export, see docs/benchmarks.md)::

    bench/.venv/bin/python -m bench.ray_cpu --rounds 3 --json out/bench/ray_cpu.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from bench._report import environment, print_table, write_json
from orchestrator import Engine, Plan, RayExecutor, Task
from orchestrator.executor import Executor, LocalExecutor
from orchestrator.models.test import TestModel
from orchestrator.node import Node


def burn(n: int) -> int:
    """Pure-Python CPU work: ``n`` rounds of integer arithmetic (holds the GIL throughout)."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


def calibrate(cpu_ms: float) -> tuple[int, float]:
    """The ``n`` for which ``burn(n)`` takes about ``cpu_ms`` of CPU here, and its time."""
    n = 100_000
    while True:
        start = time.process_time()
        burn(n)
        took = time.process_time() - start
        if took > 0.02:
            break
        n *= 2
    n = int(n * cpu_ms / 1000 / took)
    runs = []
    for _ in range(3):
        start = time.process_time()
        burn(n)
        runs.append(time.process_time() - start)
    return n, statistics.median(runs) * 1000


class CpuNodes:
    """``size`` independent Python nodes, each ``burn(n)`` (``n``: a run input)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        tasks = [Task(id=f"cpu{i:04d}", instruction="burn CPU") for i in range(self.size)]
        nodes = [Node(task=t, verifiers=(), function=burn, arguments={"n": "n"}) for t in tasks]
        return Plan(goal=f"{self.size} CPU-bound Python nodes", tasks=tasks), nodes


async def timed_run(executor: Executor, work: CpuNodes, n: int, concurrency: int) -> float:
    """Wall seconds of one ``engine.run`` (prepare included); every node must succeed."""
    engine = Engine(TestModel(), executor=executor)
    start = time.perf_counter()
    result = await engine.run(work, inputs={"n": n}, max_concurrency=concurrency)
    wall = time.perf_counter() - start
    if result.status != "succeeded":
        raise RuntimeError(f"run {result.status}: {[x.reason for x in result.nodes][:3]}")
    return wall


def load() -> float:
    """The 1-minute load average (the machine may be shared: every round records it)."""
    return os.getloadavg()[0]


async def measure_workers(
    workers: int, work: CpuNodes, n: int, rounds: int, concurrency: int
) -> dict[str, Any]:
    """Paired rounds on a local Ray of ``workers`` CPUs against the local executor."""
    local = LocalExecutor()
    started = time.perf_counter()
    async with RayExecutor(num_cpus=workers, log_to_driver=False) as ray:
        start_s = time.perf_counter() - started
        warm = await timed_run(ray, CpuNodes(workers * 2), n, concurrency)  # workers, shipping
        local_s: list[float] = []
        ray_s: list[float] = []
        loads: list[float] = []
        for round_ in range(rounds):
            loads.append(load())
            order = [("local", local), ("ray", ray)]
            if round_ % 2:
                order.reverse()
            for name, executor in order:
                wall = await timed_run(executor, work, n, concurrency)
                (local_s if name == "local" else ray_s).append(wall)
                print(
                    f"  workers={workers} round {round_ + 1} {name}: {wall:.2f}s "
                    f"(load {loads[-1]:.2f})",
                    flush=True,
                )
    ratios = [a / b for a, b in zip(local_s, ray_s, strict=True)]
    return {
        "workers": workers,
        "ray_start_s": start_s,
        "warmup_s": warm,
        "local_s": local_s,
        "ray_s": ray_s,
        "speedups": ratios,
        "loads": loads,
        "local_median_s": statistics.median(local_s),
        "ray_median_s": statistics.median(ray_s),
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "ray_ms_per_node": statistics.median(ray_s) / work.size * 1000,
        "speedup_best": max(ratios),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n, cpu_ms = calibrate(args.cpu_ms)
    print(f"burn(n={n}) takes {cpu_ms:.1f} ms of CPU here; {args.nodes} nodes", flush=True)
    work = CpuNodes(args.nodes)
    rows = [
        await measure_workers(w, work, n, args.rounds, args.max_concurrency) for w in args.workers
    ]
    return {
        "environment": environment(),
        "nodes": args.nodes,
        "burn_n": n,
        "cpu_ms_per_node": cpu_ms,
        "serial_cpu_s": cpu_ms * args.nodes / 1000,
        "rounds": args.rounds,
        "max_concurrency": args.max_concurrency,
        "results": rows,
    }


COLUMNS = [
    ("workers", "Ray worker CPUs", "{}"),
    ("local_median_s", "local executor (s)", "{:.2f}"),
    ("ray_median_s", "Ray executor (s)", "{:.2f}"),
    ("speedup_median", "speed-up (median of rounds)", "{:.2f}x"),
    ("speedup_min", "worst round", "{:.2f}x"),
    ("speedup_best", "best round", "{:.2f}x"),
    ("ray_start_s", "Ray start (s, not in runs)", "{:.1f}"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--cpu-ms", type=float, default=100.0, help="CPU per node")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per worker count")
    parser.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
        help="worker CPU counts of the local Ray, comma-separated (default 1,2)",
    )  # fmt: skip
    parser.add_argument("--max-concurrency", type=int, default=16, help="the engine's default")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    data = anyio.run(run, args)
    print_table(data["results"], COLUMNS)
    if args.json:
        write_json(args.json, data)


if __name__ == "__main__":
    main()
