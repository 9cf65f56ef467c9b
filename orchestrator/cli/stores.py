"""Which run store a command uses: ``--store URL``, else ``$ORCHESTRATOR_STORE``, else SQLite.

SQLite (``runs.db`` in the data directory) is the default. ``--store
postgresql://user:password@host:port/dbname`` (or ``postgres://``), or the same URL in
``ORCHESTRATOR_STORE``, records runs in PostgreSQL instead, where processes on several
machines list, show and resume the same runs, and share each tier's rate limits (in the
same database, instead of ``ratelimits.db`` in the home). A value that is not such a URL, or a
server that cannot be reached or refuses the user, exits 2 with a message naming the URL
with its password replaced by ``***`` (the password is never printed).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from orchestrator.cli.home import store_path
from orchestrator.exceptions import UserError
from orchestrator.models.shared_ratelimit import RateLimitState
from orchestrator.store import PostgresStore, RunStore, RunSummary, SQLiteStore, StoredRun
from orchestrator.store.postgres_ratelimit import PostgresRateLimits
from orchestrator.store.postgres_schema import redact

__all__ = [
    "ENV_VAR",
    "add_store_flag",
    "list_stored",
    "load_stored",
    "open_store",
    "opened_store",
    "shared_rate_limits",
    "store_name",
]

ENV_VAR = "ORCHESTRATOR_STORE"
_SCHEMES = ("postgresql://", "postgres://")


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    """``--store URL``: the run store (PostgreSQL), instead of ``runs.db`` in the home."""
    parser.add_argument(
        "--store", metavar="URL",
        help="record runs in PostgreSQL: postgresql://user:password@host:port/dbname "
        f"(default ${ENV_VAR}, else runs.db in the data directory)",
    )  # fmt: skip


def _url(args: argparse.Namespace) -> tuple[str, str] | None:
    """The PostgreSQL URL asked for and where it came from; ``None`` for SQLite."""
    given = getattr(args, "store", None)
    if given:
        source = "--store"
    else:
        given, source = os.environ.get(ENV_VAR, "").strip(), ENV_VAR
    if not given:
        return None
    if not given.lower().startswith(_SCHEMES):
        raise UserError(
            f"{source} {redact(given)}: not a PostgreSQL URL (postgresql://user@host/dbname); "
            "without it runs go to runs.db in the data directory (--home)"
        )
    return given, source


def store_name(args: argparse.Namespace) -> str:
    """The store as a message names it: the URL without its password, or the SQLite file."""
    url = _url(args)
    return redact(url[0]) if url is not None else str(store_path(args))


def shared_rate_limits(args: argparse.Namespace) -> Path | RateLimitState:
    """Where the tiers' rate limits are shared: the store's database, else the home's file.

    The PostgreSQL state is opened and closed by the client it is given to.
    """
    url = _url(args)
    if url is None:  # `plan` has no --home flag
        return store_path(argparse.Namespace(home=getattr(args, "home", None))).parent
    return PostgresRateLimits(url[0])


async def open_store(args: argparse.Namespace) -> RunStore:
    """Open the store the command's flags and environment name (see the module)."""
    url = _url(args)
    if url is None:
        return await SQLiteStore.open(store_path(args))
    try:
        return await PostgresStore.open(url[0])
    except UserError as exc:
        raise UserError(f"{url[1]}: {exc}") from None


@asynccontextmanager
async def opened_store(args: argparse.Namespace) -> AsyncIterator[RunStore]:
    """The store, closed on exit."""
    store = await open_store(args)
    try:
        yield store
    finally:
        await store.aclose()


async def load_stored(args: argparse.Namespace, run_id: str) -> StoredRun:
    """One stored run; a :class:`UserError` naming the store if it has no such run."""
    async with opened_store(args) as store:
        try:
            return await store.load_run(run_id)
        except KeyError:
            raise UserError(
                f"no run {run_id!r} in {store_name(args)}; `orchestrator runs` lists them"
            ) from None


async def list_stored(args: argparse.Namespace, limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs of the store."""
    async with opened_store(args) as store:
        return await store.list_runs(limit)
