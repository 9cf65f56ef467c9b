"""Scheduler overhead: per-node cost of no-op DAGs, ours vs anyio, asyncio and LangGraph.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.overhead --json out/bench/overhead.json

Every (system, shape, mode) cell runs in a fresh subprocess, so peak RSS is that cell's
alone. In a cell: one warm-up run on a 100-node fan-out, then ``repeats`` timed runs
(median reported), then one more run under tracemalloc for the peak of Python allocations
(skipped when a run takes more than 20 s). Wall and CPU (process) time are both recorded:
on a busy machine, CPU time is the steadier measure of the work done.
Node bodies are empty coroutines, so all the time measured is orchestration overhead.
A run is timed right after its build, as a program would run a plan it just built, so it
may pay for a full garbage collection over the objects the build made;
``--collect-before-run`` collects between the two (a diagnostic, recorded in the JSON).

``--rounds N`` runs the whole matrix N times (every other round in reverse order within a
shape) and reports, per cell, the median over rounds, and for each ratio the median of the
ratios *within* a round: the machine's speed drifts for minutes at a time (the same cell
measured 4.8 then 9.8 µs a node a minute apart on a quiet 2-vCPU VM), and cells measured
back to back drift together, so paired ratios are steadier than ratios of medians.
Modes (our engine only):

* ``off``: no listeners at all (the engine's telemetry listener taken off the run);
* ``default``: as shipped: the telemetry listener on the global OpenTelemetry providers,
  which are no-ops until an application installs the SDK, and log lines filtered by level;
* ``tracing``: telemetry on the OpenTelemetry SDK (spans recorded and batched to an
  exporter that drops them; metrics recorded);
* ``store``: ``off`` plus a SQLiteStore (via StoreListener) in a temporary directory.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from bench._dags import SHAPES, Dag, fan_out
from bench._report import environment, print_table, write_json
from bench._runners import RUNNERS, Execute, Work, prepare_engine

MODES = ("off", "default", "tracing", "store")
ROOT = Path(__file__).resolve().parent.parent
TRACEMALLOC_MAX_S = 20.0
"""Cells whose runs take longer than this skip the extra run under tracemalloc."""


def default_repeats(size: int, system: str, mode: str) -> int:
    if mode != "off" or system == "langgraph":  # slow cells, steady per node
        return 5 if size <= 1000 else 2 if size <= 10_000 else 1
    if size <= 1000:
        return 15
    if size <= 10_000:
        return 5
    return 3


@asynccontextmanager
async def engine_setup(mode: str) -> AsyncIterator[dict[str, Any]]:
    """Keyword arguments of :func:`prepare_engine` for ``mode``."""
    if mode == "off":
        yield {"detach_telemetry": True}
    elif mode == "default":
        yield {"detach_telemetry": False}
    elif mode == "tracing":
        yield {"detach_telemetry": False, "telemetry": sdk_telemetry()}
    elif mode == "store":
        from orchestrator.store import SQLiteStore, StoreListener  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as tmp:
            store = await SQLiteStore.open(Path(tmp) / "runs.db")
            try:
                yield {"detach_telemetry": True, "listeners": [StoreListener(store)]}
            finally:
                await store.aclose()
    else:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


def sdk_telemetry() -> Any:
    """Telemetry on the OpenTelemetry SDK, as an application (or our CLI) would set it up:
    spans recorded and batched to an exporter (one that drops them: we time our side, not
    an exporter's network), metrics recorded by an SDK meter provider."""
    # The library may not import the SDK (ruff TID251); a benchmark, like the CLI, may.
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415, TID251
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415, TID251
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415, TID251
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from orchestrator.telemetry import Telemetry  # noqa: PLC0415

    class DropExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    return Telemetry(tracer_provider=provider, meter_provider=MeterProvider())


async def prepare(system: str, dag: Dag, work: Work, setup: dict[str, Any]) -> Execute:
    if system == "engine":
        return await prepare_engine(dag, work, None, **setup)
    return await RUNNERS[system](dag, work, None)


@asynccontextmanager
async def setup_for(system: str, mode: str) -> AsyncIterator[dict[str, Any]]:
    if system == "engine":
        async with engine_setup(mode) as setup:
            yield setup
    elif mode == "off":
        yield {}
    else:
        raise ValueError(f"{system} has no run store or tracing; use mode 'off'")


async def measure_cell(
    system: str, shape: str, mode: str, repeats: int, *, collect_before_run: bool = False
) -> dict[str, Any]:
    dag = SHAPES[shape]()
    calls = [0]

    async def work(index: int) -> None:
        calls[0] += 1

    run_s: list[float] = []
    cpu_s: list[float] = []
    build_s: list[float] = []
    async with setup_for(system, mode) as setup:
        warm = await prepare(system, fan_out(100), work, setup)
        await warm()
        for _ in range(repeats):
            gc.collect()
            calls[0] = 0
            started = time.perf_counter()
            execute = await prepare(system, dag, work, setup)
            if collect_before_run:  # diagnostic: the build's objects settled, untimed
                gc.collect()
            built, cpu = time.perf_counter(), time.process_time()
            await execute()
            run_s.append(time.perf_counter() - built)
            cpu_s.append(time.process_time() - cpu)
            build_s.append(built - started)
            assert calls[0] == dag.size, f"{system} ran {calls[0]} of {dag.size} nodes"
            del execute
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        traced_peak = None
        if max(run_s) < TRACEMALLOC_MAX_S:  # tracemalloc slows a run several times over
            gc.collect()
            tracemalloc.start()
            execute = await prepare(system, dag, work, setup)
            await execute()
            traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    return {
        "system": system,
        "shape": shape,
        "mode": mode,
        "nodes": dag.size,
        "repeats": repeats,
        "us_per_node": statistics.median(run_s) / dag.size * 1e6,
        "us_per_node_min": min(run_s) / dag.size * 1e6,
        "cpu_us_per_node": statistics.median(cpu_s) / dag.size * 1e6,
        "build_us_per_node": statistics.median(build_s) / dag.size * 1e6,
        "run_s": run_s,
        "collect_before_run": collect_before_run,
        "peak_rss_mib": rss_mib,
        "load_avg_1m": os.getloadavg()[0],
        "tracemalloc_peak_mib": traced_peak,
    }


def run_cell_subprocess(
    system: str, shape: str, mode: str, repeats: int, timeout: float, *, collect: bool = False
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.overhead", "--cell", system, shape, mode]
    command += ["--repeats", str(repeats)] + (["--collect-before-run"] if collect else [])
    try:
        done = subprocess.run(  # noqa: S603  (our own interpreter and module)
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"system": system, "shape": shape, "mode": mode, "error": f"timeout {timeout}s"}
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]
        return {"system": system, "shape": shape, "mode": mode, "error": error}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pair(wall: float | None, cpu: float | None, fmt: str) -> str | None:
    if wall is None or cpu is None:
        return None
    return f"{fmt.format(wall)} / {fmt.format(cpu)}"


def targets(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per shape, wall / CPU µs per node of each system, and the ratios the targets name:
    LangGraph / engine (target >= 10) and engine / asyncio (target <= 3), for the engine
    with no listeners (``off``) and as shipped (``default``: telemetry listener on)."""
    by = {(c["system"], c["shape"], c["mode"]): c for c in cells if "error" not in c}

    def get(system: str, shape: str, mode: str, key: str) -> float | None:
        cell = by.get((system, shape, mode))
        return None if cell is None else cell[key]

    def ratio(top: tuple[str, str], bottom: tuple[str, str], shape: str, key: str) -> Any:
        upper, lower = by.get((top[0], shape, top[1])), by.get((bottom[0], shape, bottom[1]))
        if upper is None or lower is None:
            return None
        pairs = zip(upper.get("rounds", ()), lower.get("rounds", ()), strict=False)
        paired = [a[key] / b[key] for a, b in pairs if b[key]]
        if paired:  # measured back to back: the machine's drift cancels out
            return statistics.median(paired)
        return upper[key] / lower[key] if lower[key] else None

    rows = []
    for shape in dict.fromkeys(c["shape"] for c in cells):
        row: dict[str, Any] = {"shape": shape}
        for label, system, mode in SUMMARY_SYSTEMS:
            row[label] = _pair(
                get(system, shape, mode, "us_per_node"),
                get(system, shape, mode, "cpu_us_per_node"),
                "{:.1f}",
            )
        for label, top, bottom in SUMMARY_RATIOS:
            wall = ratio(top, bottom, shape, "us_per_node")
            cpu = ratio(top, bottom, shape, "cpu_us_per_node")
            row[label] = _pair(wall, cpu, "{:.2f}")
        best_engine = get("engine", shape, "default", "us_per_node_min")
        best_floor = get("asyncio", shape, "off", "us_per_node_min")
        if best_engine is not None and best_floor:  # each at its fastest: robust to drift
            row["default_over_asyncio_best"] = f"{best_engine / best_floor:.2f}"
        row["rss"] = get("engine", shape, "off", "peak_rss_mib")
        rows.append(row)
    return rows


SUMMARY_SYSTEMS = [
    ("engine", "engine", "off"),
    ("engine_default", "engine", "default"),
    ("scheduler", "scheduler", "off"),
    ("anyio", "anyio", "off"),
    ("asyncio", "asyncio", "off"),
    ("langgraph", "langgraph", "off"),
]
SUMMARY_RATIOS = [
    ("lg_over_engine", ("langgraph", "off"), ("engine", "off")),
    ("engine_over_asyncio", ("engine", "off"), ("asyncio", "off")),
    ("lg_over_default", ("langgraph", "off"), ("engine", "default")),
    ("default_over_asyncio", ("engine", "default"), ("asyncio", "off")),
]


_ROUND_KEYS = ("us_per_node", "us_per_node_min", "cpu_us_per_node", "peak_rss_mib")


def merge_rounds(measured: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cell per (system, shape, mode): medians over its rounds (the least minimum, the
    largest peak RSS), each round's own numbers kept under ``rounds`` for paired ratios."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for cell in measured:
        grouped.setdefault((cell["system"], cell["shape"], cell["mode"]), []).append(cell)
    merged = []
    for group in grouped.values():
        good = sorted((c for c in group if "error" not in c), key=lambda c: c["round"])
        if not good:
            merged.append(group[0])
            continue
        cell = {key: value for key, value in good[0].items() if key not in ("round", "run_s")}
        for key in ("us_per_node", "cpu_us_per_node", "build_us_per_node", "load_avg_1m"):
            cell[key] = statistics.median(c[key] for c in good)
        cell["us_per_node_min"] = min(c["us_per_node_min"] for c in good)
        cell["peak_rss_mib"] = max(c["peak_rss_mib"] for c in good)
        cell["rounds"] = [{key: c[key] for key in ("round", *_ROUND_KEYS)} for c in good]
        merged.append(cell)
    return merged


def report(path: Path) -> None:
    """Print the tables of a JSON file written by ``--json``."""
    data = json.loads(path.read_text())
    print_table(data["cells"], CELL_COLUMNS)
    print()
    print_table(targets(data["cells"]), TARGET_COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(RUNNERS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--modes", default=",".join(MODES), help="engine modes, comma-separated")
    parser.add_argument("--repeats", type=int, help="timed runs per cell (default by size)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--json", type=Path, help="also write every cell to this JSON file")
    parser.add_argument(
        "--langgraph-max-nodes",
        type=int,
        default=10_000,
        help="skip LangGraph on bigger shapes (one 100,000-node run did not end in 25 minutes)",
    )
    parser.add_argument(
        "--collect-before-run",
        action="store_true",
        help="diagnostic: gc.collect() between building and the timed run, so a run is not "
        "charged for a full collection over the objects its build just made (default: off)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the matrix this many times; medians per cell, ratios paired within rounds",
    )
    parser.add_argument("--report", type=Path, help="only print the tables of a --json file")
    parser.add_argument("--cell", nargs=3, metavar=("SYSTEM", "SHAPE", "MODE"), help="internal")
    args = parser.parse_args(argv)
    if args.report:
        report(args.report)
        return
    if args.cell:
        system, shape, mode = args.cell
        repeats = args.repeats or default_repeats(SHAPES[shape]().size, system, mode)
        measure = functools.partial(measure_cell, collect_before_run=args.collect_before_run)
        print(json.dumps(anyio.run(measure, system, shape, mode, repeats)))
        return
    measured = []
    for round_ in range(args.rounds):
        for shape in args.shapes.split(","):
            size = SHAPES[shape]().size
            plan = [
                (system, mode)
                for system in args.systems.split(",")
                for mode in (args.modes.split(",") if system == "engine" else ["off"])
            ]
            for system, mode in reversed(plan) if round_ % 2 else plan:
                if system == "langgraph" and size > args.langgraph_max_nodes:
                    if round_ == 0 and mode == "off":
                        print(f"skipping langgraph on {shape}: over --langgraph-max-nodes")
                    continue
                repeats = args.repeats or default_repeats(size, system, mode)
                cell = run_cell_subprocess(
                    system, shape, mode, repeats, args.timeout, collect=args.collect_before_run
                )
                cell["round"] = round_ + 1
                measured.append(cell)
                print_table([cell], CELL_COLUMNS, header=len(measured) == 1)
    cells = merge_rounds(measured) if args.rounds > 1 else measured
    if args.rounds > 1:
        print(f"\nMedians over {args.rounds} rounds (min: the least of all runs):")
        print_table(cells, CELL_COLUMNS)
    summary = targets(cells)
    print()
    print_table(summary, TARGET_COLUMNS)
    if args.json:
        data = {"environment": environment(), "rounds": args.rounds, "cells": cells}
        write_json(args.json, {**data, "targets": summary, "measured": measured})


CELL_COLUMNS = [
    ("shape", "shape", "{}"),
    ("nodes", "nodes", "{}"),
    ("system", "system", "{}"),
    ("mode", "mode", "{}"),
    ("us_per_node", "µs/node (median)", "{:.1f}"),
    ("us_per_node_min", "min", "{:.1f}"),
    ("cpu_us_per_node", "CPU µs/node", "{:.1f}"),
    ("build_us_per_node", "build µs/node", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("tracemalloc_peak_mib", "traced peak MiB", "{:.1f}"),
    ("load_avg_1m", "load", "{:.1f}"),
    ("error", "error", "{}"),
]

TARGET_COLUMNS = [
    ("shape", "shape", "{}"),
    ("engine", "engine, off", "{}"),
    ("engine_default", "engine, default", "{}"),
    ("scheduler", "scheduler", "{}"),
    ("anyio", "anyio", "{}"),
    ("asyncio", "asyncio", "{}"),
    ("langgraph", "LangGraph", "{}"),
    ("lg_over_engine", "LangGraph / engine off (>= 10)", "{}"),
    ("engine_over_asyncio", "engine off / asyncio (<= 3)", "{}"),
    ("lg_over_default", "LangGraph / engine default", "{}"),
    ("default_over_asyncio", "engine default / asyncio", "{}"),
    ("default_over_asyncio_best", "same, fastest runs", "{}"),
    ("rss", "engine off peak RSS MiB", "{:.0f}"),
]

if __name__ == "__main__":
    main()
