"""Store overhead per node: no store vs the SQLite store vs the PostgreSQL store.

Run from the repository root (the project's venv, with the ``postgres`` extra)::

    .venv/bin/python -m bench.store_backends --json out/bench/store_backends.json

Each workload runs through ``Engine(listeners=[StoreListener(store)])`` as the CLI records
runs, with test-double models (``TestModel``: no network, no simulated latency), so what
differs between the columns is the store alone. Per workload and store: one warm-up run,
then ``--repeats`` timed runs alternating between the stores; the median whole
``engine.run`` call is reported, and the overhead per node is (median with the store -
median without) / nodes. Workloads:

* ``chain``: N model nodes one after another: each node's records (its attempt when it
  starts, before its call, when it ends; its result) are written before its dependent
  starts, one round trip after another: the latency of a write;
* ``fanout``: N independent model nodes at ``max_concurrency`` 64: writes in parallel
  (SQLite group-commits them; PostgreSQL commits each on one of its pooled connections);
* ``python``: N plain Python nodes in a chain: free work, written behind in batches.

``--lease``: each run holds its lease (``hold_lease``) and its listener fences its writes
with it (``StoreListener(store, lease=...)``), as ``orchestrator run`` and ``resume`` do:
the record before each call, node results and the run's own writes check the lease in
their transaction. The lease is acquired before the clock starts and released after it
stops (once a run, not per node). ``--lease-ab`` measures what fencing adds alone: per
workload and store, runs with and without the lease alternate (ABBA, ``--repeats`` pairs
after a warm-up pair) in one process, so the machine's drift cancels out in each pair;
reported are both medians per node and the median of the paired ratios.

PostgreSQL is a throwaway server started for the run (``tests/pg_server.py``, with
``fsync`` on, as a real server runs) on loopback TCP, unless ``--postgres URL`` names one.
SQLite is a file in a temporary directory (WAL, ``synchronous=NORMAL``, as shipped).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio

from orchestrator import Engine, Plan, Task, Workflow
from orchestrator.engine import new_run_id
from orchestrator.store import PostgresStore, RunStore, SQLiteStore, StoreListener, hold_lease
from orchestrator.testing import TestModel

STORES = ("none", "sqlite", "postgresql")
_SCHEMAS = itertools.count()


def chain_plan(nodes: int) -> Plan:
    tasks = [
        Task(id=f"n{i}", instruction=f"step {i}", depends_on=[f"n{i - 1}"] if i else [])
        for i in range(nodes)
    ]
    return Plan(goal="chain", tasks=tasks)


def fanout_plan(nodes: int) -> Plan:
    return Plan(goal="fanout", tasks=[Task(id=f"n{i}", instruction=f"t{i}") for i in range(nodes)])


async def _step() -> None:
    return None


def python_chain(nodes: int) -> Workflow:
    workflow = Workflow("python chain")
    previous: Any = None
    for index in range(nodes):
        depends = [previous] if previous is not None else []
        previous = workflow.task(name=f"s{index}", depends_on=depends)(_step)
    return workflow


WORKLOADS: dict[str, tuple[Callable[[int], Any], int]] = {
    "chain": (chain_plan, 1),
    "fanout": (fanout_plan, 64),
    "python": (python_chain, 1),
}


@asynccontextmanager
async def opened(kind: str, postgres_url: str, tmp: Path) -> AsyncIterator[RunStore | None]:
    if kind == "none":
        yield None
        return
    store: RunStore
    if kind == "sqlite":
        store = await SQLiteStore.open(tmp / f"runs-{next(_SCHEMAS)}.db")
    else:
        store = await PostgresStore.open(postgres_url, schema=f"bench_{next(_SCHEMAS)}")
    try:
        yield store
    finally:
        await store.aclose()


async def timed_run(
    store: RunStore | None, work: Any, concurrency: int, *, lease: bool
) -> tuple[float, Any]:
    """One ``engine.run`` (its lease held around it with ``lease``): seconds, result."""
    run_id = new_run_id()
    held = hold_lease(store, run_id) if store is not None and lease else nullcontext(None)
    async with held as holding:
        listeners = [StoreListener(store, lease=holding)] if store is not None else []
        engine = Engine(TestModel("ok"), listeners=listeners)
        started = time.perf_counter()
        result = await engine.run(work, run_id=run_id, max_concurrency=concurrency)
        return time.perf_counter() - started, result


async def measure(
    workload: str, nodes: int, repeats: int, postgres_url: str, lease: bool = False
) -> dict[str, Any]:
    make, concurrency = WORKLOADS[workload]
    times: dict[str, list[float]] = {kind: [] for kind in STORES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(repeats + 1):
            order = STORES if round_index % 2 == 0 else tuple(reversed(STORES))
            for kind in order:
                async with opened(kind, postgres_url, Path(tmp)) as store:
                    elapsed, result = await timed_run(store, make(nodes), concurrency, lease=lease)
                    assert result.status == "succeeded", result.status
                    if store is not None:
                        stored = await store.load_run(result.run_id)
                        assert len(stored.nodes) == nodes
                if round_index:  # the first round warms up
                    times[kind].append(elapsed)
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    return {
        "workload": workload,
        "nodes": nodes,
        "repeats": repeats,
        "lease": lease,
        "median_s": medians,
        "per_node_us": {kind: medians[kind] / nodes * 1e6 for kind in STORES},
        "overhead_per_node_us": {
            kind: (medians[kind] - medians["none"]) / nodes * 1e6 for kind in STORES[1:]
        },
    }


async def lease_ab(workload: str, nodes: int, repeats: int, postgres_url: str) -> dict[str, Any]:
    """Runs with and without the lease alternating in one process (see the module)."""
    make, concurrency = WORKLOADS[workload]
    row: dict[str, Any] = {"workload": workload, "nodes": nodes, "pairs": repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in STORES[1:]:
            times: dict[bool, list[float]] = {True: [], False: []}
            for index in range(2 * repeats + 2):
                lease = (index + index // 2) % 2 == 0  # ABBA
                async with opened(kind, postgres_url, Path(tmp)) as store:
                    elapsed, result = await timed_run(store, make(nodes), concurrency, lease=lease)
                assert result.status == "succeeded", result.status
                if index >= 2:  # the first pair warms up
                    times[lease].append(elapsed / nodes * 1e6)
            ratios = [a / b for a, b in zip(times[True], times[False], strict=True)]
            row[kind] = {
                "unfenced_us": statistics.median(times[False]),
                "fenced_us": statistics.median(times[True]),
                "paired_ratio": statistics.median(ratios),
                "ratios": ratios,
            }
    return row


def _server(url: str | None) -> AbstractContextManager[Any]:
    if url:
        return nullcontext(None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pg_server import postgres_server  # noqa: PLC0415  (the tests' throwaway server)

    return postgres_server(durable=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="an existing server's database")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--lease", action="store_true", help="hold each run's lease, its writes fenced (the CLI)"
    )
    parser.add_argument(
        "--lease-ab", action="store_true", help="fenced vs unfenced runs, paired in one process"
    )
    args = parser.parse_args()
    rows = []
    with _server(args.postgres) as server:
        url = args.postgres or server.create_database("bench")
        for workload in WORKLOADS:
            if args.lease_ab:
                row = anyio.run(lease_ab, workload, args.nodes, args.repeats, url)
                rows.append(row)
                for kind in STORES[1:]:
                    cell = row[kind]
                    print(
                        f"{workload:<7} {args.nodes} nodes, {kind:<10}: unfenced "
                        f"{cell['unfenced_us']:7.1f} µs  fenced {cell['fenced_us']:7.1f} µs a node"
                        f"   paired ratio {cell['paired_ratio']:.3f}"
                        f" ({min(cell['ratios']):.2f} to {max(cell['ratios']):.2f})"
                    )
                continue
            row = anyio.run(measure, workload, args.nodes, args.repeats, url, args.lease)
            rows.append(row)
            cells = "  ".join(f"{kind} {row['per_node_us'][kind]:8.1f} µs" for kind in STORES)
            extra = "  ".join(
                f"+{kind} {us:7.1f} µs" for kind, us in row["overhead_per_node_us"].items()
            )
            print(f"{workload:<7} {args.nodes} nodes: {cells}   overhead/node: {extra}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
