"""The SQLite store's file: its tables, its marker and version, and opening it safely.

The file carries an application marker and a schema version in ``meta``. A file that is
not SQLite, a damaged store (SQLite's ``quick_check`` fails), a SQLite database of another
application, or a store written by a newer version gets a clear :class:`StoreError`, and
the file is left untouched: those checks read it through a read-only connection, and
nothing is written before they pass. A new store gets its tables and marker in one
transaction, before it is switched to WAL, so a process killed while creating it leaves
either no store or a whole one; of processes creating one new file at once, one creates
it and the others wait for its transaction and find it whole (they used to fail, ``UNIQUE
constraint failed: meta.key`` or ``database is locked``). :func:`connect` does all this
and opens the store in WAL mode (``synchronous=NORMAL``, foreign keys on, a 5 s busy
timeout).

Run leases (:mod:`orchestrator.store.lease`) are rows of ``leases``, one per leased run.
The table is created with a new store, and on opening an older file that lacks it (a file
that cannot be written is still opened, for reading; its lease operations fail). The
schema version stays 2: older versions never read ``meta`` beyond their checks nor any
table they do not know, so they still read and write such a file correctly (only without
leases, as before), and nothing an older version writes makes a lease wrong. Raising the
version would lock them out of their own runs for a table that changes nothing they store.

A run's budget is the column ``runs.budget_usd`` (the exact decimal as text, ``NULL`` for
none), added the same way to an older file when it is opened: older versions name the
columns they read and write, so they ignore it (a run they start or resume keeps the
budget stored before). A read-only file without it reads an unfinished run with no
budget (a finished one with its result's).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.exceptions import UserError

__all__ = ["APP_MARKER", "SCHEMA_VERSION", "StoreError", "connect"]

SCHEMA_VERSION = 2
"""2: a finished run's ``result`` is stored without its nodes, which are in ``nodes``
(1 stored them twice). Version 1 files are read as written, and marked 2 once opened."""
APP_MARKER = "tiered-orchestrator run store"
BUSY_TIMEOUT_S = 5.0
"""How long a connection waits for another process's lock before ``database is locked``."""
_WAL_TRIES = 20
"""How many times :func:`_use_wal` waits for another writer before it gives up."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, goal TEXT NOT NULL, status TEXT NOT NULL, plan TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, result TEXT, budget_usd TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id), node_id TEXT NOT NULL,
    number INTEGER NOT NULL, started_at TEXT NOT NULL, cost_usd REAL NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, number, started_at)
);
CREATE TABLE IF NOT EXISTS nodes (
    run_id TEXT NOT NULL REFERENCES runs(run_id), node_id TEXT NOT NULL,
    status TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, token TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    process_started TEXT, since REAL NOT NULL, expires_at REAL NOT NULL
);
"""


class StoreError(UserError):
    """The store file cannot be used (not SQLite, another application's, or too new)."""


def connect(path: Path) -> sqlite3.Connection:
    """Open the store at ``path``, creating it if it is new or empty.

    It blocks: :class:`~orchestrator.store.sqlite.SQLiteStore` calls it in a worker thread.
    Processes opening one new file at once all get the store: one creates it, the others
    wait for its transaction and find it whole (see :func:`_create`).

    Raises:
        StoreError: If the file is not a store this version can use; it is not modified.
    """
    existed = path.exists() and path.stat().st_size > 0
    version = _check_existing(path) if existed else SCHEMA_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        if not existed and not _create(db):  # another process created it meanwhile
            version = _check_existing(path)
            existed = True
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if existed:
            _add_leases(db)
            _add_budget_column(db)
        if version < SCHEMA_VERSION:  # what it holds reads as it is; what is added is newer
            with db:
                db.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from None
    return db


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (a no-op once it is), waiting out other processes' writes.

    SQLite does not wait for the lock this needs when another connection holds the write
    lock (it answers ``database is locked`` at once, to avoid a deadlock): another process
    creating or upgrading the file. Then this waits for that transaction (``BEGIN
    IMMEDIATE`` waits up to the busy timeout) and tries again.
    """
    for _ in range(_WAL_TRIES):
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        else:
            return
        db.execute("BEGIN IMMEDIATE")  # returns once the other writer has committed
        db.execute("ROLLBACK")
    db.execute("PRAGMA journal_mode=WAL")  # still busy: the error says so


def _add_leases(db: sqlite3.Connection) -> None:
    """Create ``leases`` in a file written before it existed (see the module)."""
    known = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'")
    if known.fetchone() is not None:
        return
    leases = next(part for part in _SCHEMA.split(";") if "TABLE IF NOT EXISTS leases" in part)
    try:
        with db:
            db.execute(leases)
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            raise  # a read-only file stays readable; anything else is an error


def _add_budget_column(db: sqlite3.Connection) -> None:
    """Add ``runs.budget_usd`` to a file written before it existed (see the module)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "budget_usd" in columns:
        return
    try:
        with db:
            db.execute("ALTER TABLE runs ADD COLUMN budget_usd TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" in str(exc):
            return  # another process opening the file added it meanwhile
        if "readonly" not in str(exc):
            raise  # a read-only file stays readable (its runs read with no budget)


def _create(db: sqlite3.Connection) -> bool:
    """Tables and marker in one transaction: a killed process leaves all or nothing.

    The transaction takes the write lock first (``BEGIN IMMEDIATE``: it waits up to the
    busy timeout for another process's), then creates the store only if the file is still
    empty. Returns whether it did: ``False`` when another process created the file between
    this one finding it new and taking the lock (the caller then checks it as it checks any
    existing file), so that processes opening one new file at once all get its store.
    """
    level, db.isolation_level = db.isolation_level, None  # explicit BEGIN/COMMIT below
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
                db.execute("ROLLBACK")
                return False
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("app", APP_MARKER), ("schema_version", str(SCHEMA_VERSION))],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return True
    finally:
        db.isolation_level = level


def _check_existing(path: Path) -> int:
    """Read-only checks of a file that already exists (never writes to it); its version."""
    uri = f"{path.resolve().as_uri()}?mode=ro"  # percent-encoded: '#', '?' and '%' are safe
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)  # another may be writing
        try:
            (health,) = db.execute("PRAGMA quick_check(1)").fetchone()
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not an orchestrator run store ({exc}); "
            "point ORCHESTRATOR_HOME or --home at another directory"
        ) from None
    if rows.get("app") != APP_MARKER:
        raise StoreError(f"{path} is a SQLite database of another application; not touching it")
    if health != "ok":
        raise StoreError(
            f"{path} is a damaged run store (SQLite quick_check: {health}); it was left as it "
            "is: move it aside (or recover it with the sqlite3 shell's .recover) and start a "
            "new one"
        )
    raw_version = rows.get("schema_version", "")
    if not raw_version.isdigit():
        raise StoreError(
            f"{path} has no valid store schema version ({raw_version!r}); not touching it"
        )
    version = int(raw_version)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer version (store schema {version}; this version "
            f"reads up to {SCHEMA_VERSION}); upgrade tiered-orchestrator to read it"
        )
    return version
