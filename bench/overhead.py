"""Scheduler overhead: per-node cost of no-op DAGs, ours vs anyio, asyncio and LangGraph.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.overhead --json out/bench/overhead.json

Every (system, shape, mode) cell runs in a fresh subprocess, so peak RSS is that cell's
alone. In a cell: one warm-up run on a 100-node fan-out, then ``repeats`` timed runs
(median reported), then one more run under tracemalloc for the peak of Python allocations.
Node bodies are empty coroutines, so all the time measured is orchestration overhead.
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
import gc
import json
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


def default_repeats(size: int, mode: str) -> int:
    if mode == "store":  # a few writes per node: slow, and steady
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


async def measure_cell(system: str, shape: str, mode: str, repeats: int) -> dict[str, Any]:
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
            built, cpu = time.perf_counter(), time.process_time()
            await execute()
            run_s.append(time.perf_counter() - built)
            cpu_s.append(time.process_time() - cpu)
            build_s.append(built - started)
            assert calls[0] == dag.size, f"{system} ran {calls[0]} of {dag.size} nodes"
            del execute
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gc.collect()
        tracemalloc.start()
        execute = await prepare(system, dag, work, setup)
        await execute()
        traced_peak = tracemalloc.get_traced_memory()[1]
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
        "peak_rss_mib": rss_mib,
        "tracemalloc_peak_mib": traced_peak / 2**20,
    }


def run_cell_subprocess(
    system: str, shape: str, mode: str, repeats: int, timeout: float
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.overhead", "--cell", system, shape, mode]
    command += ["--repeats", str(repeats)]
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


def targets(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per shape: engine (store off) against LangGraph (>= 10x) and asyncio (<= 3x)."""
    by = {(c["system"], c["shape"], c["mode"]): c for c in cells if "error" not in c}
    rows = []
    for shape in dict.fromkeys(c["shape"] for c in cells):
        ours = by.get(("engine", shape, "off"))
        if ours is None:
            continue
        row: dict[str, Any] = {"shape": shape, "engine_us": ours["us_per_node"]}
        for peer in ("langgraph", "asyncio", "anyio", "scheduler"):
            cell = by.get((peer, shape, "off"))
            row[f"{peer}_us"] = cell["us_per_node"] if cell else None
        lg, floor = row["langgraph_us"], row["asyncio_us"]
        row["langgraph_over_engine"] = lg / ours["us_per_node"] if lg else None
        row["engine_over_asyncio"] = ours["us_per_node"] / floor if floor else None
        row["peak_rss_mib"] = ours["peak_rss_mib"]
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(RUNNERS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--modes", default=",".join(MODES), help="engine modes, comma-separated")
    parser.add_argument("--repeats", type=int, help="timed runs per cell (default by size)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--json", type=Path, help="also write every cell to this JSON file")
    parser.add_argument("--cell", nargs=3, metavar=("SYSTEM", "SHAPE", "MODE"), help="internal")
    args = parser.parse_args(argv)
    if args.cell:
        system, shape, mode = args.cell
        repeats = args.repeats or default_repeats(SHAPES[shape]().size, mode)
        print(json.dumps(anyio.run(measure_cell, system, shape, mode, repeats)))
        return
    cells = []
    for shape in args.shapes.split(","):
        size = SHAPES[shape]().size
        for system in args.systems.split(","):
            for mode in args.modes.split(",") if system == "engine" else ["off"]:
                repeats = args.repeats or default_repeats(size, mode)
                cell = run_cell_subprocess(system, shape, mode, repeats, args.timeout)
                cells.append(cell)
                print_table([cell], CELL_COLUMNS, header=len(cells) == 1)
    summary = targets(cells)
    print()
    print_table(summary, TARGET_COLUMNS)
    if args.json:
        write_json(args.json, {"environment": environment(), "cells": cells, "targets": summary})


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
    ("error", "error", "{}"),
]

TARGET_COLUMNS = [
    ("shape", "shape", "{}"),
    ("engine_us", "engine µs", "{:.1f}"),
    ("scheduler_us", "scheduler µs", "{:.1f}"),
    ("anyio_us", "anyio µs", "{:.1f}"),
    ("asyncio_us", "asyncio µs", "{:.1f}"),
    ("langgraph_us", "LangGraph µs", "{:.1f}"),
    ("langgraph_over_engine", "LangGraph/engine (>=10)", "{:.1f}x"),
    ("engine_over_asyncio", "engine/asyncio (<=3)", "{:.2f}x"),
    ("peak_rss_mib", "engine RSS MiB", "{:.0f}"),
]

if __name__ == "__main__":
    main()
