"""A 10,000-node fan-out of simulated model calls: model calls through Ray vs in the driver.

Issue 18 point 4: 10,000 independent model tasks (one call each, against the local
Messages-API simulator, run as a process of its own at ``--time-scale 0``) through
``engine.run`` (preparing included) with the real ``AnthropicClient``, three ways side by
side in paired rounds (order rotating):

* ``local``: the default: the driver makes every call;
* ``ray executor``: ``Engine(executor=RayExecutor())`` as ``--executor ray`` runs it: the
  model calls still in the driver (only Python work would go to Ray);
* ``ray relay``: ``--executor ray --ray-model-calls``: each call's HTTP exchange made by a
  Ray actor (``AnthropicClient(relay=executor.relay(actors=A))``).

The overhead per node is each round's wall time less the local one's, over the nodes.
A local Ray of ``--ray-cpus`` is started once (timed apart) and warmed (actors started).

Usage (from a git export, see docs/benchmarks.md)::

    bench/.venv/bin/python -m bench.ray_fanout --rounds 3 --json out/bench/ray_fanout.json
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from bench._report import environment, print_table, write_json
from orchestrator import Engine, Plan, RayExecutor, Task
from orchestrator.executor import Executor
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.relay import HTTPRelay

KEY = "offline-bench"  # the simulator ignores keys: not a secret


def fan_out(size: int) -> Plan:
    tasks = [
        Task(id=f"n{i:05d}", instruction=f"List {2 + i % 5} uses of a heap.", max_output_tokens=64)
        for i in range(size)
    ]
    return Plan(goal=f"a fan-out of {size} model tasks", tasks=tasks)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_simulator() -> tuple[anyio.abc.Process, str]:
    """``orchestrator sim serve`` as a process of its own, once it accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "orchestrator.cli", "sim", "serve", "--port", str(port),
               "--time-scale", "0", "--seed", "1"]  # fmt: skip
    process = await anyio.open_process(command, stdout=None, stderr=None)
    with anyio.fail_after(60):
        while True:  # a bench may poll: it is not a test
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.1)
                continue
            await stream.aclose()
            return process, f"http://127.0.0.1:{port}"


async def timed_run(
    base_url: str, plan: Plan, concurrency: int, executor: Executor | None, relay: HTTPRelay | None
) -> float:
    """Wall seconds of one ``engine.run``; every node must succeed."""
    client = AnthropicClient(base_url=base_url, api_key=KEY, relay=relay, timeout_s=120)
    async with client:
        engine = Engine(client, executor=executor)
        start = time.perf_counter()
        result = await engine.run(plan, max_concurrency=concurrency)
        wall = time.perf_counter() - start
    if result.status != "succeeded":
        raise RuntimeError(f"run {result.status}: {[n.reason for n in result.nodes][:3]}")
    return wall


async def run(args: argparse.Namespace) -> dict[str, Any]:
    process, base_url = await start_simulator()
    try:
        plan = fan_out(args.nodes)
        os.environ.setdefault("ANTHROPIC_API_KEY", KEY)  # the actors read it (local Ray)
        started = time.perf_counter()
        async with RayExecutor(num_cpus=args.ray_cpus, log_to_driver=False) as ray:
            start_s = time.perf_counter() - started
            relay = ray.relay(actors=args.actors)
            warm = await timed_run(base_url, fan_out(200), args.max_concurrency, ray, relay)
            arms: dict[str, tuple[Executor | None, HTTPRelay | None]] = {
                "local": (None, None), "ray executor": (ray, None), "ray relay": (ray, relay),
            }  # fmt: skip
            walls: dict[str, list[float]] = {name: [] for name in arms}
            loads: list[float] = []
            names = list(arms)
            for round_ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                order = names[round_ % 3 :] + names[: round_ % 3]
                for name in order:
                    executor, via = arms[name]
                    wall = await timed_run(base_url, plan, args.max_concurrency, executor, via)
                    walls[name].append(wall)
                    print(f"  round {round_ + 1} {name}: {wall:.2f}s (load {loads[-1]:.2f})",
                          flush=True)  # fmt: skip
    finally:
        process.kill()
        await process.wait()
    rows = []
    for name in names:
        pairs = list(zip(walls[name], walls["local"], strict=True))
        extra = [(arm - local) / args.nodes * 1000 for arm, local in pairs]
        ratios = [arm / local for arm, local in pairs]
        rows.append({
            "arm": name, "median_s": statistics.median(walls[name]),
            "ms_per_node": statistics.median(walls[name]) / args.nodes * 1000,
            "overhead_ms_per_node": statistics.median(extra), "ratio": statistics.median(ratios),
            "walls_s": walls[name],
        })  # fmt: skip
    return {
        "environment": environment(),
        "nodes": args.nodes,
        "rounds": args.rounds,
        "max_concurrency": args.max_concurrency,
        "actors": args.actors,
        "ray_cpus": args.ray_cpus,
        "ray_start_s": start_s,
        "warmup_s": warm,
        "loads": loads,
        "results": rows,
    }


COLUMNS = [
    ("arm", "model calls", "{}"),
    ("median_s", "wall (s, median)", "{:.1f}"),
    ("ms_per_node", "ms per node", "{:.2f}"),
    ("overhead_ms_per_node", "overhead vs local (ms per node, median of rounds)", "{:+.2f}"),
    ("ratio", "wall vs local", "{:.2f}x"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds")
    parser.add_argument("--max-concurrency", type=int, default=64, help="nodes in flight")
    parser.add_argument("--actors", type=int, default=2, help="relay actors")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    data = anyio.run(run, args)
    print_table(data["results"], COLUMNS)
    if args.json:
        write_json(args.json, data)


if __name__ == "__main__":
    main()
