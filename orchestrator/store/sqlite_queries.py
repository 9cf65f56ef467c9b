"""The SQLite store's queries: the statement and rows of every write, and every read.

Each is an operation that :class:`~orchestrator.store.sqlite_writer.BatchWriter` runs in
its worker thread, in a batch's transaction: a :class:`~orchestrator.store.sqlite_writer.Write`
(one statement; the rows of ``attempts`` and ``nodes`` grouped in multi-row statements),
or a function of the connection. Records are serialised here, in the writer thread.

A node's result is stored once, in ``nodes``; a finished run's result is stored without
its nodes and rebuilt from them on load (schema 2). Lease operations read the holder and
write the lease in one batch, which holds the write lock (``BEGIN IMMEDIATE``), so the
holder it reads is still the holder when it writes, and of two processes racing for a
stale lease exactly one takes it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orchestrator.plan import Plan
from orchestrator.pricing import to_usd
from orchestrator.results import Attempt, NodeResult, NodeStatus, RunResult
from orchestrator.store.base import RunSummary, StoredRun, spent_in, spent_on
from orchestrator.store.lease import Lease, LeaseOwner, claim, extend
from orchestrator.store.sqlite_writer import Op, Write

__all__ = [
    "PUT_ATTEMPT",
    "PUT_NODE",
    "READ_ONLY",
    "RELEASE_LEASE",
    "REVISE_PLAN",
    "START_PLANNING",
    "START_RUN",
    "extend_lease",
    "read_run",
    "read_summaries",
    "take_lease",
    "write_result",
]


def _start_run_row(
    run_id: str, plan: Plan, started_at: datetime, budget_usd: Decimal | None
) -> tuple[Any, ...]:
    return (run_id, plan.goal, "running", plan.model_dump_json(), started_at.isoformat(),
            _budget_text(budget_usd))  # fmt: skip


def _start_planning_row(
    run_id: str, goal: str, started_at: datetime, budget_usd: Decimal | None
) -> tuple[Any, ...]:
    return (run_id, goal, "planning", _NO_PLAN, started_at.isoformat(), _budget_text(budget_usd))


def _budget_text(budget_usd: Decimal | None) -> str | None:
    """A budget as stored: the exact decimal as text (``NULL``: no budget)."""
    return None if budget_usd is None else str(budget_usd)


_NO_PLAN = ""
"""The ``plan`` column of a run whose goal is being planned (the column is NOT NULL)."""


def _attempt_row(run_id: str, node_id: str, attempt: Attempt) -> tuple[Any, ...]:
    # The cost column is what the attempt counts as spent: while it runs, the worst case of
    # its calls in flight too (what ``runs`` sums; exact amounts are in the body).
    return (run_id, node_id, attempt.number, attempt.started_at.isoformat(),
            float(spent_on(attempt)), attempt.model_dump_json())  # fmt: skip


def _node_row(run_id: str, result: NodeResult) -> tuple[Any, ...]:
    return (run_id, result.id, result.status.value, result.model_dump_json())


_NOT_STARTED = frozenset({NodeStatus.SKIPPED, NodeStatus.NOT_RUN})


def write_result(db: sqlite3.Connection, result: RunResult) -> None:
    """Store the final result without its nodes: each node's row in ``nodes`` is its result.

    Nodes that ran have their rows already (``record_node``, before the run finished).
    Rows are written here for the nodes that did not start (skipped, not run), which no
    event recorded or whose row is an earlier process's, and for any node whose row is
    missing or holds another status (a write that failed): so the result rebuilt by
    :func:`read_run` is the one the engine returned.
    """
    recorded = dict(
        db.execute("SELECT node_id, status FROM nodes WHERE run_id=?", (result.run_id,))
    )
    rows = [
        _node_row(result.run_id, node)
        for node in result.nodes
        if node.status in _NOT_STARTED or recorded.get(node.id) != node.status.value
    ]
    if rows:
        db.executemany(PUT_NODE.sql, rows)
    db.execute(
        "UPDATE runs SET status=?, finished_at=?, result=? WHERE run_id=?",
        (result.status.value, result.finished_at.isoformat(),
         result.model_dump_json(exclude={"nodes"}), result.run_id),
    )  # fmt: skip


START_RUN = Write(
    "INSERT INTO runs (run_id, goal, status, plan, started_at, budget_usd)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(run_id) DO UPDATE SET status='running', finished_at=NULL, result=NULL,"
    " budget_usd=excluded.budget_usd,"
    " plan=CASE WHEN runs.plan='' THEN excluded.plan ELSE runs.plan END",  # planned: its plan
    _start_run_row,
)
REVISE_PLAN = Write(
    "UPDATE runs SET plan=? WHERE run_id=?",
    lambda run_id, plan: (plan.model_dump_json(), run_id),
)
START_PLANNING = Write(
    "INSERT INTO runs (run_id, goal, status, plan, started_at, budget_usd)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(run_id) DO UPDATE SET status='planning', finished_at=NULL, result=NULL,"
    " budget_usd=excluded.budget_usd",
    _start_planning_row,
)
PUT_ATTEMPT = Write(
    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET cost_usd=excluded.cost_usd, body=excluded.body",
    _attempt_row,
    grouped=True,
)
PUT_NODE = Write(
    "INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET status=excluded.status, body=excluded.body",
    _node_row,
    grouped=True,
)


# -- leases ----------------------------------------------------------------------------


def _read_lease(db: sqlite3.Connection, run_id: str) -> Lease | None:
    row = db.execute(
        "SELECT token, host, pid, process_started, since, expires_at FROM leases WHERE run_id=?",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    token, host, pid, started, since, expires_at = row
    return Lease(
        run_id, LeaseOwner(host, pid, token, started),
        datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(expires_at, UTC),
    )  # fmt: skip


def _put_lease(db: sqlite3.Connection, lease: Lease) -> None:
    owner = lease.owner
    db.execute(
        "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)",
        (lease.run_id, owner.token, owner.host, owner.pid, owner.started,
         lease.since.timestamp(), lease.expires_at.timestamp()),
    )  # fmt: skip


def take_lease(db: sqlite3.Connection, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
    """Read the holder and take the lease in one transaction (the batch's write lock)."""
    _put_lease(db, claim(_read_lease(db, run_id), run_id, owner, ttl_s))


def extend_lease(db: sqlite3.Connection, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
    """Renew ``owner``'s lease, read and written in one transaction."""
    _put_lease(db, extend(_read_lease(db, run_id), run_id, owner, ttl_s))


RELEASE_LEASE = Write(
    "DELETE FROM leases WHERE run_id=? AND token=?",
    lambda run_id, owner: (run_id, owner.token),
)


def read_run(db: sqlite3.Connection, run_id: str) -> StoredRun:
    """A run, its result rebuilt from its node rows (``KeyError`` naming it if unknown)."""
    row = db.execute(
        "SELECT goal, status, plan, started_at, finished_at, result FROM runs WHERE run_id=?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id!r} in the store")
    goal, status, plan, started_at, finished_at, result = row
    attempts: dict[str, list[Attempt]] = {}
    for node_id, body in db.execute(
        "SELECT node_id, body FROM attempts WHERE run_id=? ORDER BY node_id, started_at, number",
        (run_id,),
    ):
        attempts.setdefault(node_id, []).append(Attempt.model_validate_json(body))
    nodes = {
        node_id: NodeResult.model_validate_json(body)
        for node_id, body in db.execute("SELECT node_id, body FROM nodes WHERE run_id=?", (run_id,))
    }
    summary = _summary(run_id, goal, status, started_at, finished_at, spent_in(attempts))
    stored_plan = Plan.model_validate_json(plan) if plan != _NO_PLAN else None
    final = RunResult.model_validate_json(result) if result else None
    if final is not None and "nodes" not in final.model_fields_set:  # schema 2: in ``nodes``
        tasks = stored_plan.tasks if stored_plan is not None else []
        final.nodes = [nodes[task.id] for task in tasks if task.id in nodes]
    budget = _read_budget(db, run_id)
    if budget is None and final is not None:  # finished before stores kept budgets
        budget = final.budget_usd
    return StoredRun(
        summary=summary, plan=stored_plan, nodes=nodes, attempts=attempts, result=final,
        budget_usd=budget,
    )  # fmt: skip


def _read_budget(db: sqlite3.Connection, run_id: str) -> Decimal | None:
    """A run's stored budget; ``None`` if none (or a read-only older file has no column)."""
    try:
        row = db.execute("SELECT budget_usd FROM runs WHERE run_id=?", (run_id,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such column" not in str(exc):
            raise
        return None
    return None if row is None or row[0] is None else Decimal(row[0])


def read_summaries(db: sqlite3.Connection, limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs' summaries, newest first."""
    rows = db.execute(
        "SELECT r.run_id, r.goal, r.status, r.started_at, r.finished_at,"
        " COALESCE((SELECT SUM(cost_usd) FROM attempts a WHERE a.run_id = r.run_id), 0)"
        " FROM runs r ORDER BY r.started_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_summary(*row) for row in rows]


READ_ONLY: frozenset[Op] = frozenset({read_run, read_summaries})
"""The operations that do not write (their batches need no write lock)."""


def _summary(  # noqa: PLR0917  (one positional argument per column of the row)
    run_id: str,
    goal: str,
    status: str,
    started_at: str,
    finished_at: str | None,
    cost: Decimal | float,
) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        goal=goal,
        status=status,
        cost_usd=cost if isinstance(cost, Decimal) else to_usd(round(cost, 12)),
        started_at=datetime.fromisoformat(started_at),
        finished_at=datetime.fromisoformat(finished_at) if finished_at else None,
    )
