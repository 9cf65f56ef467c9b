"""The PostgreSQL store's queries: what every call of the interface reads and writes.

Each function takes a pooled connection (autocommit, UTC, the store's schema first on its
``search_path``: :func:`~orchestrator.store.postgres_schema.configure`). A call that is one
statement runs alone (one round trip, atomic by itself); one of several statements runs in
a transaction. Records go in as the JSON pydantic writes (``json`` columns keep it as it
is) and come out as text for pydantic to parse. Money is ``numeric``: an attempt's
``cost_usd`` column is what it counts as spent (:func:`~orchestrator.store.base.spent_on`),
exact, so ``runs`` sums it without rounding. Attempt and node rows are written in groups
by :mod:`~orchestrator.store.postgres_writer`, with the tables (:data:`ATTEMPTS`,
:data:`NODES`) and rows (:func:`attempt_row`, :func:`node_row`) given here.

A write given a lease owner (fenced: :mod:`~orchestrator.store.base`) is made only while
the lease row holds that owner's token: a run's own writes (start, revision, result) read
it ``FOR SHARE`` first in their transaction (so a process taking the lease over waits
until they commit) and raise :class:`~orchestrator.exceptions.RunLeased` without writing
when it is gone; grouped rows are fenced in their upsert itself
(:mod:`~orchestrator.store.postgres_writer`).

Leases follow :mod:`~orchestrator.store.lease`'s rules in Python: the holder is read and the
lease written in one transaction holding an advisory lock on the run's id, so of two
processes (on any hosts) racing for a stale lease, one reads and writes before the other
reads, and exactly one takes it. Reads of a whole run are one ``REPEATABLE READ`` snapshot:
a run loaded while another process writes it is as it was at one moment.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from orchestrator.exceptions import RunLeased
from orchestrator.plan import Plan
from orchestrator.results import Attempt, NodeResult, NodeStatus, RunResult
from orchestrator.store.base import RunSummary, StoredRun, spent_in, spent_on
from orchestrator.store.lease import Lease, LeaseOwner, check_ttl, claim, extend
from orchestrator.store.postgres_writer import Table

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "ATTEMPTS",
    "NODES",
    "attempt_row",
    "extend_lease",
    "list_summaries",
    "node_row",
    "read_run",
    "release_lease",
    "revise_plan",
    "start_planning",
    "start_run",
    "take_lease",
    "write_result",
]

_START = (
    "INSERT INTO runs (run_id, goal, status, plan, started_at, budget_usd)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, finished_at = NULL,"
    " result = NULL, budget_usd = excluded.budget_usd,"
    " plan = COALESCE(runs.plan, excluded.plan)"  # planned: its plan; resumed: the one it had
)
ATTEMPTS = Table(
    "attempts", ("run_id", "node_id", "number", "started_at", "cost_usd", "body"), key=4,
    update=("cost_usd", "body"),
    types=("text", "text", "integer", "timestamptz", "numeric", "json"),
)  # fmt: skip
NODES = Table(
    "nodes", ("run_id", "node_id", "status", "body"), key=2, update=("status", "body"),
    types=("text", "text", "text", "json"),
)  # fmt: skip
_PUT_NODE = NODES.upsert(1)
_LEASE_LOCK = 0x6C65
"""The advisory lock class of lease transactions; the object is the run id's hash."""


def attempt_row(run_id: str, node_id: str, attempt: Attempt) -> tuple[Any, ...]:
    """An attempt's row: its cost column is what it counts as spent."""
    return (run_id, node_id, attempt.number, attempt.started_at, spent_on(attempt),
            attempt.model_dump_json())  # fmt: skip


def node_row(run_id: str, result: NodeResult) -> tuple[Any, ...]:
    """A node result's row."""
    return (run_id, result.id, result.status.value, result.model_dump_json())


async def _fenced(db: AsyncConnection[Any], run_id: str, lease: LeaseOwner | None) -> None:
    """In a transaction: lock the run's lease row ``FOR SHARE`` if it is ``lease``'s.

    Raises:
        RunLeased: The lease is not ``lease``'s (nothing is written). No ``lease``: no check.
    """
    if lease is None:
        return
    cursor = await db.execute(
        "SELECT FROM leases WHERE run_id = %s AND token = %s FOR SHARE", (run_id, lease.token)
    )
    if await cursor.fetchone() is None:
        raise RunLeased(run_id)


async def _write(
    db: AsyncConnection[Any], run_id: str, lease: LeaseOwner | None, sql: str, row: tuple[Any, ...]
) -> None:
    """One statement: alone (one round trip), or fenced by ``lease`` in a transaction."""
    if lease is None:
        await db.execute(sql, row)
        return
    async with db.transaction():
        await _fenced(db, run_id, lease)
        await db.execute(sql, row)


async def start_run(  # noqa: PLR0917  (the interface's arguments)
    db: AsyncConnection[Any],
    run_id: str,
    plan: Plan,
    started_at: datetime,
    budget_usd: Decimal | None,
    lease: LeaseOwner | None = None,
) -> None:
    """A new run, or a resumed one marked running again (a planned one gets its plan)."""
    row = (run_id, plan.goal, "running", plan.model_dump_json(), started_at, budget_usd)
    await _write(db, run_id, lease, _START, row)


async def revise_plan(
    db: AsyncConnection[Any], run_id: str, plan: Plan, lease: LeaseOwner | None = None
) -> None:
    """Replace a run's plan with its revision."""
    row = (plan.model_dump_json(), run_id)
    await _write(db, run_id, lease, "UPDATE runs SET plan = %s WHERE run_id = %s", row)


async def start_planning(  # noqa: PLR0917  (the interface's arguments)
    db: AsyncConnection[Any],
    run_id: str,
    goal: str,
    started_at: datetime,
    budget_usd: Decimal | None,
    lease: LeaseOwner | None = None,
) -> None:
    """A run that plans its goal first (no plan yet), or one marked planning again."""
    row = (run_id, goal, "planning", None, started_at, budget_usd)
    await _write(db, run_id, lease, _START, row)


_NOT_STARTED = frozenset({NodeStatus.SKIPPED, NodeStatus.NOT_RUN})


async def write_result(
    db: AsyncConnection[Any], result: RunResult, lease: LeaseOwner | None = None
) -> None:
    """The final result without its nodes (each node's row is its result), in one transaction.

    Rows are written here for the nodes that did not start and for any whose row is missing
    or holds another status, so the result :func:`read_run` rebuilds is the one returned.
    """
    async with db.transaction(), db.cursor() as cursor:
        await _fenced(db, result.run_id, lease)
        await cursor.execute(
            "SELECT node_id, status FROM nodes WHERE run_id = %s", (result.run_id,)
        )
        recorded = {str(node): str(status) for node, status in await cursor.fetchall()}
        rows = [
            node_row(result.run_id, node)
            for node in result.nodes
            if node.status in _NOT_STARTED or recorded.get(node.id) != node.status.value
        ]
        if rows:
            await cursor.executemany(_PUT_NODE, rows)
        await cursor.execute(
            "UPDATE runs SET status = %s, finished_at = %s, result = %s WHERE run_id = %s",
            (result.status.value, result.finished_at,
             result.model_dump_json(exclude={"nodes"}), result.run_id),
        )  # fmt: skip


async def read_run(db: AsyncConnection[Any], run_id: str) -> StoredRun:
    """A run, its result rebuilt from its node rows (``KeyError`` naming it if unknown)."""
    async with db.transaction(), db.cursor() as cursor:
        await cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await cursor.execute(
            "SELECT goal, status, plan::text, started_at, finished_at, result::text, budget_usd"
            " FROM runs WHERE run_id = %s",
            (run_id,),
        )
        row = await cursor.fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in the store")
        await cursor.execute(
            "SELECT node_id, body::text FROM attempts WHERE run_id = %s"
            " ORDER BY node_id, started_at, number",
            (run_id,),
        )
        attempts: dict[str, list[Attempt]] = {}
        for node_id, body in await cursor.fetchall():
            attempts.setdefault(node_id, []).append(Attempt.model_validate_json(body))
        await cursor.execute("SELECT node_id, body::text FROM nodes WHERE run_id = %s", (run_id,))
        nodes = {
            str(node_id): NodeResult.model_validate_json(body)
            for node_id, body in await cursor.fetchall()
        }
    goal, status, plan, started_at, finished_at, result, budget = row
    stored_plan = Plan.model_validate_json(plan) if plan is not None else None
    final = RunResult.model_validate_json(result) if result is not None else None
    if final is not None:
        tasks = stored_plan.tasks if stored_plan is not None else []
        final.nodes = [nodes[task.id] for task in tasks if task.id in nodes]
    summary = RunSummary(
        run_id=run_id, goal=goal, status=status, cost_usd=spent_in(attempts),
        started_at=started_at, finished_at=finished_at,
    )  # fmt: skip
    return StoredRun(
        summary=summary, plan=stored_plan, nodes=nodes, attempts=attempts, result=final,
        budget_usd=budget,
    )  # fmt: skip


async def list_summaries(db: AsyncConnection[Any], limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs' summaries, newest first (spend summed exactly)."""
    cursor = await db.execute(
        "SELECT r.run_id, r.goal, r.status, r.started_at, r.finished_at,"
        " COALESCE((SELECT SUM(a.cost_usd) FROM attempts a WHERE a.run_id = r.run_id), 0)"
        " FROM runs r ORDER BY r.started_at DESC LIMIT %s",
        (limit,),
    )
    columns = ("run_id", "goal", "status", "started_at", "finished_at", "cost_usd")
    return [RunSummary(**dict(zip(columns, row, strict=True))) for row in await cursor.fetchall()]


# -- leases ----------------------------------------------------------------------------


async def _locked_lease(db: AsyncConnection[Any], run_id: str) -> Lease | None:
    """Lock the run's lease for this transaction, then read it."""
    await db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LEASE_LOCK, run_id))
    cursor = await db.execute(
        "SELECT token, host, pid, process_started, since, expires_at FROM leases WHERE run_id = %s",
        (run_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    token, host, pid, started, since, expires_at = row
    return Lease(run_id, LeaseOwner(host, pid, token, started), since, expires_at)


async def _put_lease(db: AsyncConnection[Any], lease: Lease) -> None:
    owner = lease.owner
    await db.execute(
        "INSERT INTO leases (run_id, token, host, pid, process_started, since, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET"
        " token = excluded.token, host = excluded.host, pid = excluded.pid,"
        " process_started = excluded.process_started, since = excluded.since,"
        " expires_at = excluded.expires_at",
        (
            lease.run_id,
            owner.token,
            owner.host,
            owner.pid,
            owner.started,
            lease.since,
            lease.expires_at,
        ),
    )


async def take_lease(
    db: AsyncConnection[Any], run_id: str, owner: LeaseOwner, ttl_s: float
) -> None:
    """Read the holder and take the lease in one locked transaction (``RunLeased``)."""
    check_ttl(ttl_s)
    async with db.transaction():
        await _put_lease(db, claim(await _locked_lease(db, run_id), run_id, owner, ttl_s))


async def extend_lease(
    db: AsyncConnection[Any], run_id: str, owner: LeaseOwner, ttl_s: float
) -> None:
    """Renew ``owner``'s lease, read and written in one locked transaction."""
    check_ttl(ttl_s)
    async with db.transaction():
        await _put_lease(db, extend(await _locked_lease(db, run_id), run_id, owner, ttl_s))


async def release_lease(db: AsyncConnection[Any], run_id: str, owner: LeaseOwner) -> None:
    """Give up ``owner``'s lease; nothing happens if it is not ``owner``'s."""
    await db.execute("DELETE FROM leases WHERE run_id = %s AND token = %s", (run_id, owner.token))
