"""Where a user's call spends its time: pyinstrument over whole ``engine.run`` calls.

Profiles the same whole call that ``bench.overhead`` times (``bench._runners.user_call``:
for our engine a ``Workflow`` of no-op async tasks defined, then ``await
engine.run(workflow)``), ``--runs`` times after a warm-up, and prints per node (µs, the
run's wall time divided by runs x nodes) the three phases, the hottest functions by own
time and by inclusive time, and own time grouped by module. Run from the repository root
with the benchmark venv::

    bench/.venv/bin/python -m bench.profile_call --shape fanout-1000 --mode default
    bench/.venv/bin/python -m bench.profile_call --shape chain-1000 --mode store --runs 5

pyinstrument samples the main thread's stack every ``--interval`` seconds of wall time
(``async_mode="disabled"``: every task's frames are shown under the event loop, so node
tasks are not hidden as "out of context"). It does not see other threads (our SQLite
store's writer runs in an anyio worker thread): the main thread's wait for it shows as the
event loop's ``select``. For those, the unprofiled calls are also timed in CPU per thread
(the main thread's ``time.thread_time()`` against the process's ``time.process_time()``),
and a sampler thread (``sys._current_frames()`` every ``--interval``) counts the other
threads' stacks while the profiled calls run: their own and inclusive time per function,
each sample weighed by the time since the one before (the sampler needs the GIL, so it
wakes late while the loop holds it), busy stacks only (a worker idle in its queue is not
counted).
Profiling adds overhead of its own, so the profiled total is printed beside the same calls
timed unprofiled; read the profile for shares, the benchmark for the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from bench._dags import SHAPES, fan_out
from bench._runners import user_call
from bench.overhead import setup_for

PHASES = {
    # label: (function, file ends with): inclusive time of these frames
    "define: workflow_of (Workflow + @wf.task per node)": ("workflow_of", "bench/_runners.py"),
    "prepare: Engine.prepare (to_plan_and_nodes, validate_plan, Run, adopt)": (
        "prepare",
        "orchestrator/engine.py",
    ),
}
"""Definition and preparation; the execution is the rest of the sampled time (its node
tasks run under the event loop, not under ``Run.execute``'s frame)."""


def _key(frame: Any) -> tuple[str, str]:
    path = frame.file_path_short or frame.file_path or "?"
    return frame.function, f"{path}:{frame.line_no}"


def _module(frame: Any) -> str:
    path = frame.file_path or "?"
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = frame.file_path_short or path
    parts = path.split("/")
    if parts[0] in ("orchestrator", "bench", "langgraph"):
        return "/".join(parts[:2]) if len(parts) > 1 else parts[0]
    return parts[0].removesuffix(".py")


def aggregate(root: Any) -> tuple[dict[Any, float], dict[Any, float], dict[str, float]]:
    """Own time and inclusive time (counted once per stack: recursion is not double
    counted) per function, and own time per module, in seconds."""
    own: dict[Any, float] = defaultdict(float)
    inclusive: dict[Any, float] = defaultdict(float)
    modules: dict[str, float] = defaultdict(float)
    on_stack: dict[Any, int] = defaultdict(int)
    # Iterative DFS with explicit enter/leave so the on-stack counts stay right.
    todo: list[tuple[str, Any]] = [("enter", root)]
    while todo:
        action, frame = todo.pop()
        if action == "leave":
            on_stack[_key(frame)] -= 1
            continue
        if frame.is_synthetic:  # [self], [await], [out-of-context]: the parent's own time
            continue
        key = _key(frame)
        if on_stack[key] == 0:
            inclusive[key] += frame.time
        on_stack[key] += 1
        own[key] += frame.total_self_time
        modules[_module(frame)] += frame.total_self_time
        todo.append(("leave", frame))
        todo.extend(("enter", child) for child in frame.children)
    return own, inclusive, modules


IDLE = {
    # A worker thread waiting for work, or the loop waiting in select: not busy.
    ("wait", "threading.py"),
    ("get", "queue.py"),
    ("select", "selectors.py"),
}


class ThreadSampler:
    """Counts the stacks of every thread but the main one and its own, every ``interval``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples = 0
        self.own: dict[tuple[str, str], float] = defaultdict(float)
        self.inclusive: dict[tuple[str, str], float] = defaultdict(float)
        self.busy = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._paused = True

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self._paused = False

    def pause(self) -> None:
        self._paused = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        main, me = threading.main_thread().ident, threading.get_ident()
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            weight, last = now - last, now  # the sampler may wake late (the GIL): weigh by it
            if self._paused:
                continue
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident in (main, me):
                    continue
                stack = []
                current: Any = frame
                while current is not None:
                    code = current.f_code
                    stack.append(
                        (code.co_name, f"{_short(code.co_filename)}:{code.co_firstlineno}")
                    )
                    current = current.f_back
                name, where = stack[0]
                if (name, where.split(":")[0].rsplit("/", 1)[-1]) in IDLE:
                    continue
                self.busy += weight
                self.own[stack[0]] += weight
                for key in set(stack):
                    self.inclusive[key] += weight


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    here = str(Path.cwd()) + "/"
    return path.removeprefix(here)


async def profile(system: str, shape: str, mode: str, runs: int, interval: float) -> dict[str, Any]:
    from pyinstrument import Profiler  # noqa: PLC0415  (bench/.venv only)

    dag = SHAPES[shape]()

    async def work(index: int) -> None:
        return None

    async with setup_for(system, mode) as setup:
        warm = user_call(system, fan_out(100), work, None, **setup)
        await warm.whole()
        call = user_call(system, dag, work, None, **setup)
        await call.whole()  # one full-size warm-up too
        unprofiled: list[float] = []
        unprofiled_cpu: list[float] = []
        main_cpu: list[float] = []
        for _ in range(runs):  # the same calls, not profiled, for the real per-node figure
            gc.collect()
            started, cpu, mine = time.perf_counter(), time.process_time(), time.thread_time()
            await call.whole()
            unprofiled.append(time.perf_counter() - started)
            unprofiled_cpu.append(time.process_time() - cpu)
            main_cpu.append(time.thread_time() - mine)
        profiler = Profiler(interval=interval, async_mode="disabled")
        sampler = ThreadSampler(interval)
        profiled = 0.0
        try:
            for _ in range(runs):
                gc.collect()
                started = time.perf_counter()
                profiler.start()
                sampler.start()
                await call.whole()
                sampler.pause()
                profiler.stop()
                profiled += time.perf_counter() - started
        finally:
            sampler.close()
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    assert root is not None
    own, inclusive, modules = aggregate(root)
    per_node = 1e6 / (runs * dag.size)
    phases = {}
    for label, (function, suffix) in PHASES.items():
        phases[label] = sum(
            seconds * per_node
            for (name, where), seconds in inclusive.items()
            if name == function and where.split(":")[0].endswith(suffix)
        )
    phases["execute: the rest (Run.execute and the node tasks under the event loop)"] = (
        root.time * per_node - sum(phases.values())
    )
    return {
        "system": system,
        "shape": shape,
        "mode": mode,
        "nodes": dag.size,
        "runs": runs,
        "interval_s": interval,
        "unprofiled_us_per_node": statistics.median(unprofiled) / dag.size * 1e6,
        "unprofiled_cpu_us_per_node": statistics.median(unprofiled_cpu) / dag.size * 1e6,
        "unprofiled_main_thread_cpu_us_per_node": statistics.median(main_cpu) / dag.size * 1e6,
        "other_threads": {
            "samples": sampler.samples,
            "busy_us_per_node": sampler.busy * per_node,
            "own_us_per_node": _top(sampler.own, per_node, count=30),
            "inclusive_us_per_node": _top(sampler.inclusive, per_node, count=30),
        },
        "profiled_us_per_node": profiled * per_node,
        "sampled_us_per_node": root.time * per_node,
        "phases_us_per_node": phases,
        "own_us_per_node": _top(own, per_node),
        "inclusive_us_per_node": _top(inclusive, per_node),
        "modules_us_per_node": dict(
            sorted(((m, s * per_node) for m, s in modules.items()), key=lambda i: -i[1])
        ),
        "load_avg_1m": os.getloadavg()[0],
        "text": session_text(profiler),
    }


def _top(table: dict[Any, float], per_node: float, count: int = 60) -> list[dict[str, Any]]:
    ranked = sorted(table.items(), key=lambda item: -item[1])[:count]
    return [
        {"function": name, "where": where, "us_per_node": seconds * per_node}
        for (name, where), seconds in ranked
    ]


def session_text(profiler: Any) -> str:
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def print_report(result: dict[str, Any], top: int) -> None:
    sampled = result["sampled_us_per_node"]
    scale = result["unprofiled_us_per_node"] / sampled if sampled else 0.0
    print(
        f"\n## {result['system']} {result['mode']} on {result['shape']}: {result['runs']} whole "
        f"calls, load {result['load_avg_1m']:.1f}"
    )
    print(
        f"unprofiled: {result['unprofiled_us_per_node']:.1f} µs/node wall, "
        f"{result['unprofiled_cpu_us_per_node']:.1f} CPU (main thread "
        f"{result['unprofiled_main_thread_cpu_us_per_node']:.1f}); profiled: "
        f"{result['profiled_us_per_node']:.1f} wall ({result['sampled_us_per_node']:.1f} sampled)"
    )
    print(
        "(columns: profiled µs/node; % of the sampled time; that share of the unprofiled "
        "wall time, µs/node)"
    )

    def cells(value: float) -> str:
        share = value / sampled * 100 if sampled else 0.0
        return f"{value:.1f} | {share:.1f}% | {value * scale:.1f}"

    print("\n| phase (inclusive) | profiled | share | µs/node |\n|---|---|---|---|")
    for label, value in result["phases_us_per_node"].items():
        print(f"| {label} | {cells(value)} |")
    for title, rows in (
        ("own time", result["own_us_per_node"]),
        ("inclusive time", result["inclusive_us_per_node"]),
    ):
        print(f"\n| function ({title}) | where | profiled | share | µs/node |")
        print("|---|---|---|---|---|")
        for row in rows[:top]:
            print(f"| `{row['function']}` | {row['where']} | {cells(row['us_per_node'])} |")
    print("\n| module (own time) | profiled | share | µs/node |\n|---|---|---|---|")
    for module, value in list(result["modules_us_per_node"].items())[:top]:
        print(f"| {module} | {cells(value)} |")
    others = result["other_threads"]
    if others["busy_us_per_node"]:
        print(
            f"\nOther threads, sampled while profiled: busy {others['busy_us_per_node']:.1f} "
            f"µs/node ({others['samples']} samples)"
        )
        for title in ("own", "inclusive"):
            print(f"\n| other threads: function ({title}) | where | µs/node |\n|---|---|---|")
            for row in others[f"{title}_us_per_node"][:top]:
                print(f"| `{row['function']}` | {row['where']} | {row['us_per_node']:.2f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="engine")
    parser.add_argument("--shape", default="fanout-1000", choices=list(SHAPES))
    parser.add_argument("--mode", default="default", help="the engine's or LangGraph's mode")
    parser.add_argument("--runs", type=int, default=20, help="whole calls profiled")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval, s")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--json", type=Path, help="also write the result (and the tree) here")
    parser.add_argument("--text", type=Path, help="write pyinstrument's call tree here")
    args = parser.parse_args(argv)
    result = anyio.run(profile, args.system, args.shape, args.mode, args.runs, args.interval)
    print_report(result, args.top)
    if args.text:
        args.text.parent.mkdir(parents=True, exist_ok=True)
        args.text.write_text(result["text"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
