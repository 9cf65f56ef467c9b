"""Scheduler overhead: per-node cost of no-op DAGs, ours vs anyio, asyncio and LangGraph.

Run from the repository root with the benchmark venv (``bench/setup.sh``)::

    bench/.venv/bin/python -m bench.overhead --json out/bench/overhead.json

Two figures per cell, measured in the same process, alternating run by run:

* **whole call**: what a user pays, from defining the graph to the result, timed as one
  region: for our engine ``workflow = Workflow(...)`` with one ``@wf.task`` per node, then
  ``result = await engine.run(workflow)`` (so the Workflow's resolution, the plan's
  validation and the run's setup are in it); for LangGraph the ``StateGraph`` built,
  ``compile()``-d and ``ainvoke``-d. The engine itself (and the store, or LangGraph's
  checkpointer) is made once per cell, before any run, as a program holds one.
* **execute only**: the same steps with the clock started after preparation: for the
  engine ``run.execute()`` of a run ``engine.prepare(workflow)`` made untimed, for LangGraph
  ``ainvoke`` of a graph compiled untimed. Definition (``build``) and preparation
  (``prepare``: ``engine.prepare``, ``compile``) are timed apart in these runs.

Every (system, shape, mode) cell runs in a fresh subprocess, so peak RSS is that cell's
alone. In a cell: one warm-up of each kind on a 100-node fan-out, then ``repeats`` pairs of
timed runs (a whole call and an execution, in alternating order; medians reported), then
one more whole call under tracemalloc for the peak of Python allocations (skipped when a
run takes more than 20 s). Wall and CPU (process) time are both recorded: on a busy
machine, CPU time is the steadier measure of the work done.
Node bodies are empty coroutines, so all the time measured is orchestration overhead.
An execution is timed right after its preparation, as a program would run a plan it just
built, so it may pay for a full garbage collection over the objects the build made;
``--collect-before-run`` collects between the two (a diagnostic, recorded in the JSON).

``--rounds N`` runs the whole matrix N times (every other round in reverse order within a
shape) and reports, per cell, the median over rounds, and for each ratio the median of the
ratios *within* a round: the machine's speed drifts for minutes at a time (the same cell
measured 4.8 then 9.8 µs a node a minute apart on a quiet 2-vCPU VM), and cells measured
back to back drift together, so paired ratios are steadier than ratios of medians.
Modes of our engine:

* ``off``: no listeners at all (the engine's telemetry listener taken off the run, through
  a private attribute: its "whole call" is then prepare + detach + execute);
* ``default``: as shipped: the telemetry listener on the global OpenTelemetry providers,
  which are no-ops until an application installs the SDK, and log lines filtered by level
  (the engine then subscribes no listener at all);
* ``tracing``: telemetry on the OpenTelemetry SDK (spans recorded and batched to an
  exporter that drops them; metrics recorded);
* ``store``: as shipped plus a SQLiteStore (``Engine(listeners=[StoreListener(store)])``,
  as the CLI does) on a file in a temporary directory.

Modes of LangGraph: ``off`` (no checkpointer) and ``store``: LangGraph's own SQLite
checkpointer (``langgraph-checkpoint-sqlite``'s ``AsyncSqliteSaver.from_conn_string`` on a
file in a temporary directory, ``compile(checkpointer=saver)``, a new ``thread_id`` per run,
LangGraph's default durability, ``"async"``), as LangGraph's documentation turns it on.
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

from bench._dags import SHAPES, fan_out
from bench._report import environment, print_table, write_json
from bench._runners import RUNNERS, user_call

MODES = ("off", "default", "tracing", "store")
LANGGRAPH_MODES = ("off", "store")
ROOT = Path(__file__).resolve().parent.parent
TRACEMALLOC_MAX_S = 20.0
"""Cells whose runs take longer than this skip the extra run under tracemalloc."""


def default_repeats(size: int, system: str, mode: str) -> int:
    """Timed pairs (a whole call and an execution) per cell."""
    if system == "langgraph" or mode in ("tracing", "store"):  # slow cells, steady per node
        return 3 if size <= 1000 else 2 if size <= 10_000 else 1
    if size <= 1000:
        return 9
    if size <= 10_000:
        return 3
    return 2


@asynccontextmanager
async def engine_setup(mode: str) -> AsyncIterator[dict[str, Any]]:
    """Keyword arguments of :func:`bench._runners.engine_call` for ``mode``."""
    if mode == "off":
        yield {"detach_telemetry": True}
    elif mode == "default":
        yield {}
    elif mode == "tracing":
        yield {"telemetry": sdk_telemetry()}
    elif mode == "store":
        from orchestrator.store import SQLiteStore, StoreListener  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as tmp:
            store = await SQLiteStore.open(Path(tmp) / "runs.db")
            try:
                yield {"listeners": [StoreListener(store)]}
                stored = await store.list_runs(limit=10_000)
                assert stored, "no run was stored"
                assert all(run.status == "succeeded" for run in stored), stored[:3]
            finally:
                await store.aclose()
    else:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


@asynccontextmanager
async def langgraph_setup(mode: str) -> AsyncIterator[dict[str, Any]]:
    """Keyword arguments of :func:`bench._runners.langgraph_call` for ``mode``."""
    if mode == "off":
        yield {}
    elif mode == "store":
        # Only in bench/.venv (langgraph-checkpoint-sqlite, bench/requirements.txt).
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "checkpoints.db")
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                yield {"checkpointer": saver}
                threads = {c.config["configurable"]["thread_id"] async for c in saver.alist(None)}
                assert threads, "no checkpoint was written"
    else:
        raise ValueError(f"unknown LangGraph mode {mode!r}; modes: {', '.join(LANGGRAPH_MODES)}")


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


@asynccontextmanager
async def setup_for(system: str, mode: str) -> AsyncIterator[dict[str, Any]]:
    if system == "engine":
        async with engine_setup(mode) as setup:
            yield setup
    elif system == "langgraph":
        async with langgraph_setup(mode) as setup:
            yield setup
    elif mode == "off":
        yield {}
    else:
        raise ValueError(f"{system} has no run store or tracing; use mode 'off'")


def _per_node(seconds: list[float], size: int) -> float:
    return statistics.median(seconds) / size * 1e6


async def measure_cell(
    system: str,
    shape: str,
    mode: str,
    repeats: int,
    *,
    collect_before_run: bool = False,
    tracemalloc_max_s: float = TRACEMALLOC_MAX_S,
) -> dict[str, Any]:
    dag = SHAPES[shape]()
    calls = [0]

    async def work(index: int) -> None:
        calls[0] += 1

    times: dict[str, list[float]] = {
        key: [] for key in ("whole", "whole_cpu", "run", "cpu", "build", "prepare")
    }
    async with setup_for(system, mode) as setup:
        warm = user_call(system, fan_out(100), work, None, **setup)
        await warm.whole()
        await warm.execute(await warm.prepare(await warm.build()))
        call = user_call(system, dag, work, None, **setup)
        for repeat in range(repeats):
            for kind in ("whole", "execute") if repeat % 2 == 0 else ("execute", "whole"):
                gc.collect()
                calls[0] = 0
                if kind == "whole":  # the user's call, definition to result, one region
                    started, cpu = time.perf_counter(), time.process_time()
                    await call.whole()
                    times["whole"].append(time.perf_counter() - started)
                    times["whole_cpu"].append(time.process_time() - cpu)
                else:
                    started = time.perf_counter()
                    built = await call.build()
                    defined = time.perf_counter()
                    prepared = await call.prepare(built)
                    ready = time.perf_counter()
                    if collect_before_run:  # diagnostic: the build's objects settled, untimed
                        gc.collect()
                    run_started, cpu = time.perf_counter(), time.process_time()
                    await call.execute(prepared)
                    times["run"].append(time.perf_counter() - run_started)
                    times["cpu"].append(time.process_time() - cpu)
                    times["build"].append(defined - started)
                    times["prepare"].append(ready - defined)
                    del built, prepared
                assert calls[0] == dag.size, f"{system} ran {calls[0]} of {dag.size} nodes"
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        traced_peak = None
        if max(times["whole"]) < tracemalloc_max_s:  # tracemalloc slows a run several times
            gc.collect()
            tracemalloc.start()
            await call.whole()
            traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    size = dag.size
    return {
        "system": system,
        "shape": shape,
        "mode": mode,
        "nodes": size,
        "repeats": repeats,
        "whole_us_per_node": _per_node(times["whole"], size),
        "whole_us_per_node_min": min(times["whole"]) / size * 1e6,
        "whole_cpu_us_per_node": _per_node(times["whole_cpu"], size),
        "us_per_node": _per_node(times["run"], size),
        "us_per_node_min": min(times["run"]) / size * 1e6,
        "cpu_us_per_node": _per_node(times["cpu"], size),
        "build_us_per_node": _per_node(times["build"], size),
        "prepare_us_per_node": _per_node(times["prepare"], size),
        "run_s": times["run"],
        "whole_s": times["whole"],
        "collect_before_run": collect_before_run,
        "peak_rss_mib": rss_mib,
        "load_avg_1m": os.getloadavg()[0],
        "tracemalloc_peak_mib": traced_peak,
    }


def run_cell_subprocess(
    system: str,
    shape: str,
    mode: str,
    repeats: int,
    timeout: float,
    *,
    collect: bool = False,
    tracemalloc_max_s: float = TRACEMALLOC_MAX_S,
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.overhead", "--cell", system, shape, mode]
    command += ["--repeats", str(repeats)] + (["--collect-before-run"] if collect else [])
    command += ["--tracemalloc-max-s", str(tracemalloc_max_s)]
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


MEASURES = {
    # measure: (wall key, CPU key, fastest-run key)
    "whole call": ("whole_us_per_node", "whole_cpu_us_per_node", "whole_us_per_node_min"),
    "execute only": ("us_per_node", "cpu_us_per_node", "us_per_node_min"),
}


def targets(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per shape and measure (whole call, execute only), wall / CPU µs per node of each
    system, and the ratios issue 15's targets name: LangGraph / engine as shipped (>= 20),
    engine as shipped / asyncio (<= 2), LangGraph + its SQLite checkpointer / engine +
    our SQLite store (>= 10). Ratios are medians of the ratios within a round."""
    by = {(c["system"], c["shape"], c["mode"]): c for c in cells if "error" not in c}

    def get(system: str, shape: str, mode: str, key: str) -> float | None:
        cell = by.get((system, shape, mode))
        return None if cell is None else cell.get(key)

    def ratio(top: tuple[str, str], bottom: tuple[str, str], shape: str, key: str) -> Any:
        upper, lower = by.get((top[0], shape, top[1])), by.get((bottom[0], shape, bottom[1]))
        if upper is None or lower is None or key not in upper or key not in lower:
            return None
        pairs = zip(upper.get("rounds", ()), lower.get("rounds", ()), strict=False)
        paired = [a[key] / b[key] for a, b in pairs if b.get(key) and a.get(key)]
        if paired:  # measured back to back: the machine's drift cancels out
            return statistics.median(paired)
        return upper[key] / lower[key] if lower[key] else None

    rows = []
    for shape in dict.fromkeys(c["shape"] for c in cells):
        for measure, (wall, cpu, fastest) in MEASURES.items():
            row: dict[str, Any] = {"shape": shape, "measure": measure}
            for label, system, mode in SUMMARY_SYSTEMS:
                row[label] = _pair(
                    get(system, shape, mode, wall), get(system, shape, mode, cpu), "{:.1f}"
                )
            for label, top, bottom in SUMMARY_RATIOS:
                row[label] = _pair(
                    ratio(top, bottom, shape, wall), ratio(top, bottom, shape, cpu), "{:.2f}"
                )
            best_engine = get("engine", shape, "default", fastest)
            best_floor = get("asyncio", shape, "off", fastest)
            if best_engine is not None and best_floor:  # each at its fastest: robust to drift
                row["default_over_asyncio_best"] = f"{best_engine / best_floor:.2f}"
            rows.append(row)
    return rows


SUMMARY_SYSTEMS = [
    ("engine_default", "engine", "default"),
    ("engine", "engine", "off"),
    ("asyncio", "asyncio", "off"),
    ("langgraph", "langgraph", "off"),
    ("engine_store", "engine", "store"),
    ("langgraph_store", "langgraph", "store"),
]
SUMMARY_RATIOS = [
    ("lg_over_default", ("langgraph", "off"), ("engine", "default")),
    ("default_over_asyncio", ("engine", "default"), ("asyncio", "off")),
    ("lg_over_engine", ("langgraph", "off"), ("engine", "off")),
    ("engine_over_asyncio", ("engine", "off"), ("asyncio", "off")),
    ("lgstore_over_store", ("langgraph", "store"), ("engine", "store")),
]


_ROUND_KEYS = (
    "us_per_node",
    "us_per_node_min",
    "cpu_us_per_node",
    "whole_us_per_node",
    "whole_us_per_node_min",
    "whole_cpu_us_per_node",
    "build_us_per_node",
    "prepare_us_per_node",
    "peak_rss_mib",
    "load_avg_1m",
)
_MEDIAN_KEYS = (
    "us_per_node",
    "cpu_us_per_node",
    "whole_us_per_node",
    "whole_cpu_us_per_node",
    "build_us_per_node",
    "prepare_us_per_node",
    "load_avg_1m",
)


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
        skip = ("round", "run_s", "whole_s")
        cell = {key: value for key, value in good[0].items() if key not in skip}
        for key in _MEDIAN_KEYS:
            if all(key in c for c in good):
                cell[key] = statistics.median(c[key] for c in good)
        for key in ("us_per_node_min", "whole_us_per_node_min"):
            if all(key in c for c in good):
                cell[key] = min(c[key] for c in good)
        cell["peak_rss_mib"] = max(c["peak_rss_mib"] for c in good)
        cell["rounds"] = [
            {key: c[key] for key in ("round", *_ROUND_KEYS) if key in c} for c in good
        ]
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
    parser.add_argument(
        "--langgraph-modes",
        default=",".join(LANGGRAPH_MODES),
        help="LangGraph modes, comma-separated (off: no checkpointer; store: AsyncSqliteSaver)",
    )
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
        "--tracemalloc-max-s",
        type=float,
        default=TRACEMALLOC_MAX_S,
        help="skip the extra run under tracemalloc in cells whose whole call takes longer",
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
        measure = functools.partial(
            measure_cell,
            collect_before_run=args.collect_before_run,
            tracemalloc_max_s=args.tracemalloc_max_s,
        )
        print(json.dumps(anyio.run(measure, system, shape, mode, repeats)))
        return
    measured = []
    for round_ in range(args.rounds):
        for shape in args.shapes.split(","):
            size = SHAPES[shape]().size
            modes_of = {
                "engine": args.modes.split(","),
                "langgraph": args.langgraph_modes.split(","),
            }
            plan = [
                (system, mode)
                for system in args.systems.split(",")
                for mode in modes_of.get(system, ["off"])
            ]
            for system, mode in reversed(plan) if round_ % 2 else plan:
                if system == "langgraph" and size > args.langgraph_max_nodes:
                    if round_ == 0:
                        print(f"skipping langgraph {mode} on {shape}: over --langgraph-max-nodes")
                    continue
                repeats = args.repeats or default_repeats(size, system, mode)
                cell = run_cell_subprocess(
                    system,
                    shape,
                    mode,
                    repeats,
                    args.timeout,
                    collect=args.collect_before_run,
                    tracemalloc_max_s=args.tracemalloc_max_s,
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
    ("whole_us_per_node", "whole call µs/node", "{:.1f}"),
    ("whole_us_per_node_min", "min", "{:.1f}"),
    ("whole_cpu_us_per_node", "whole CPU", "{:.1f}"),
    ("build_us_per_node", "define", "{:.1f}"),
    ("prepare_us_per_node", "prepare", "{:.1f}"),
    ("us_per_node", "execute µs/node", "{:.1f}"),
    ("us_per_node_min", "min", "{:.1f}"),
    ("cpu_us_per_node", "execute CPU", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("tracemalloc_peak_mib", "traced peak MiB", "{:.1f}"),
    ("load_avg_1m", "load", "{:.1f}"),
    ("error", "error", "{}"),
]

TARGET_COLUMNS = [
    ("shape", "shape", "{}"),
    ("measure", "measure", "{}"),
    ("engine_default", "engine as shipped", "{}"),
    ("asyncio", "asyncio", "{}"),
    ("langgraph", "LangGraph", "{}"),
    ("lg_over_default", "LangGraph / engine (>= 20)", "{}"),
    ("default_over_asyncio", "engine / asyncio (<= 2)", "{}"),
    ("default_over_asyncio_best", "same, fastest runs", "{}"),
    ("engine_store", "engine + SQLiteStore", "{}"),
    ("langgraph_store", "LangGraph + SqliteSaver", "{}"),
    ("lgstore_over_store", "LangGraph+Saver / engine+store (>= 10)", "{}"),
    ("engine", "engine off", "{}"),
    ("lg_over_engine", "LangGraph / engine off", "{}"),
    ("engine_over_asyncio", "engine off / asyncio", "{}"),
]

if __name__ == "__main__":
    main()
