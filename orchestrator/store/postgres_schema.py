"""The PostgreSQL store's database: where its tables live, and opening it safely.

The store keeps its tables in one PostgreSQL *schema* (a namespace) of the database the URL
names, ``orchestrator`` unless told otherwise, so they never meet another application's
``runs`` table. The schema's ``meta`` table carries the same application marker as a
SQLite store file and this layout's version. Opening checks, before anything is written:

- the server is reachable and lets the user in (else a :class:`StoreError` naming the
  URL without its password, and libpq's reason);
- a schema of that name, if there is one, is a run store (the marker) of a version this
  code reads; another application's schema, or a newer store, is refused and left as it is;
- a new store's schema, tables and marker are created in one transaction (DDL is
  transactional in PostgreSQL), under an advisory lock, so of two processes opening a new
  database at once one creates it and the other finds it whole.

Each pooled connection is set to UTC and to the store's schema (``search_path``), so the
statements of :mod:`~orchestrator.store.postgres_queries` name bare tables.

This module imports psycopg only when a store is opened: ``import orchestrator`` works
without the ``postgres`` extra.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orchestrator.store.sqlite_schema import APP_MARKER, StoreError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "CREATE_LOCK",
    "DEFAULT_SCHEMA",
    "POSTGRES_SCHEMA_VERSION",
    "RATE_LIMIT_TABLES",
    "check_schema_name",
    "configure",
    "connect_once",
    "connection_params",
    "ensure_schema",
    "redact",
    "unreachable",
]

POSTGRES_SCHEMA_VERSION = 1
"""The layout of the tables in the store's schema (its own numbering; see the module)."""
DEFAULT_SCHEMA = "orchestrator"
"""The PostgreSQL schema the store's tables live in unless another is given."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CREATE_LOCK = (0x6F72, 0)
"""Advisory lock (class, object) held while a new store's schema is created."""

_TABLES = """
CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE {schema}.runs (
    run_id text PRIMARY KEY, goal text NOT NULL, status text NOT NULL, plan json,
    started_at timestamptz NOT NULL, finished_at timestamptz, result json, budget_usd numeric
);
CREATE INDEX runs_newest ON {schema}.runs (started_at DESC);
CREATE TABLE {schema}.attempts (
    run_id text NOT NULL REFERENCES {schema}.runs (run_id), node_id text NOT NULL,
    number integer NOT NULL, started_at timestamptz NOT NULL, cost_usd numeric NOT NULL,
    body json NOT NULL, PRIMARY KEY (run_id, node_id, number, started_at)
);
CREATE TABLE {schema}.nodes (
    run_id text NOT NULL REFERENCES {schema}.runs (run_id), node_id text NOT NULL,
    status text NOT NULL, body json NOT NULL, PRIMARY KEY (run_id, node_id)
);
CREATE TABLE {schema}.leases (
    run_id text PRIMARY KEY, token text NOT NULL, host text NOT NULL, pid integer NOT NULL,
    process_started text, since timestamptz NOT NULL, expires_at timestamptz NOT NULL
);
"""
RATE_LIMIT_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.ratelimit_buckets (
    scope text NOT NULL, name text NOT NULL, level double precision NOT NULL,
    updated double precision NOT NULL, PRIMARY KEY (scope, name)
);
CREATE TABLE IF NOT EXISTS {schema}.ratelimit_pauses (
    scope text PRIMARY KEY, paused_until double precision NOT NULL
)
"""
"""The shared rate-limit state (:mod:`~orchestrator.store.postgres_ratelimit`): created with
a new store, and by the rate limits on a store made before they were kept here."""


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a plain lower-case identifier; ``ValueError`` otherwise."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"schema must be a lower-case identifier (letters, digits, _), got {schema!r}"
        )
    return schema


def redact(url: str) -> str:
    """``url`` as it may be shown: any password replaced by ``***``, the rest as it was.

    Works on URLs (``postgresql://user:secret@host/db?password=...``) and on libpq's
    ``key=value`` strings, whether or not they would parse.
    """
    scheme, sep, rest = url.partition("://")
    value = r"[^&#\s]+" if sep else r".*?(?=\s+\w+\s*=|\s*$)"  # up to the next key
    userinfo, at, after = rest.rpartition("@")  # the last '@': a password may hold '/'
    if sep and at and ":" in userinfo:  # hides too much rather than too little
        rest = f"{userinfo.partition(':')[0]}:***@{after}"
    text = f"{scheme}{sep}{rest}"
    return re.sub(rf"(password\s*=\s*)('(?:[^'\\]|\\.)*'|{value})", r"\1***", text, flags=re.I)


def _secrets(url: str) -> list[str]:
    """What may be a password in ``url`` (its first word, after ``password=``)."""
    found = re.findall(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url, flags=re.I)
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    return found


def unreachable(shown: str, exc: BaseException, password: str | None = None) -> StoreError:
    """The error for a store that cannot be opened: the URL (redacted) and libpq's reason."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    return StoreError(f"cannot open the PostgreSQL run store {shown}: {reason}")


def connection_params(url: str, shown: str, connect_timeout_s: float) -> dict[str, Any]:
    """Libpq's parameters of ``url``, with a connect timeout unless it names one.

    Raises:
        StoreError: If ``url`` is not a PostgreSQL URL (or connection string).
    """
    import psycopg  # noqa: PLC0415  (the postgres extra, loaded when a store opens)
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        if _secrets(url):  # libpq quotes what it could not parse: perhaps part of a password
            reason = re.sub(r'"([^"]*)"', lambda m: m[0] if m[1] == "=" else '"***"', reason)
        raise StoreError(f"not a PostgreSQL URL: {shown} ({reason})") from None
    params.setdefault("connect_timeout", str(max(1, round(connect_timeout_s))))
    return params


async def connect_once(params: dict[str, Any], shown: str) -> AsyncConnection[Any]:
    """One connection (autocommit), or a :class:`StoreError` naming ``shown`` and why not."""
    import psycopg  # noqa: PLC0415  (the postgres extra)

    try:
        return await psycopg.AsyncConnection.connect(**params, autocommit=True)
    except psycopg.Error as exc:
        raise unreachable(shown, exc, params.get("password")) from None


async def configure(connection: AsyncConnection[Any], schema: str) -> None:
    """A pooled connection's settings: autocommit, UTC, the store's schema first."""
    from psycopg import sql  # noqa: PLC0415  (the postgres extra)

    await connection.set_autocommit(True)
    await connection.execute(
        sql.SQL("SET TIME ZONE 'UTC'; SET search_path TO {}, pg_catalog").format(
            sql.Identifier(schema)
        )
    )


async def ensure_schema(connection: AsyncConnection[Any], schema: str, shown: str) -> None:
    """Check the store's schema, or create it whole if it is missing (see the module).

    Raises:
        StoreError: Another application's schema, a newer store, or no right to create it.
    """
    import psycopg  # noqa: PLC0415  (the postgres extra)
    from psycopg import sql  # noqa: PLC0415

    where = f"schema {schema!r} of {shown}"
    name = sql.Identifier(schema)
    try:
        if await _exists(connection, schema):
            _check_marker(await _meta(connection, schema), where)
            return
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", CREATE_LOCK)
            if await _exists(connection, schema):  # another process created it meanwhile
                _check_marker(await _meta(connection, schema), where)
                return
            await connection.execute(sql.SQL("CREATE SCHEMA {}").format(name))
            for statement in (_TABLES + RATE_LIMIT_TABLES).split(";"):
                await connection.execute(sql.SQL(statement).format(schema=name))
            await connection.execute(
                sql.SQL("INSERT INTO {}.meta VALUES ('app', %s), ('schema_version', %s)").format(
                    name
                ),
                (APP_MARKER, str(POSTGRES_SCHEMA_VERSION)),
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(
            f"cannot create the run store's {where}: {exc}; create it for this user "
            f"(CREATE SCHEMA {schema} AUTHORIZATION <user>), or give another with a "
            "schema of its own"
        ) from None
    except psycopg.Error as exc:
        raise StoreError(f"cannot open the run store's {where}: {exc}") from None


async def _exists(connection: AsyncConnection[Any], schema: str) -> bool:
    cursor = await connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return await cursor.fetchone() is not None


async def _meta(connection: AsyncConnection[Any], schema: str) -> dict[str, str] | None:
    cursor = await connection.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.meta",))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    from psycopg import sql  # noqa: PLC0415  (the postgres extra)

    query = sql.SQL("SELECT key, value FROM {}.meta").format(sql.Identifier(schema))
    cursor = await connection.execute(query)
    return {str(key): str(value) for key, value in await cursor.fetchall()}


def _check_marker(meta: dict[str, str] | None, where: str) -> None:
    if meta is None or meta.get("app") != APP_MARKER:
        raise StoreError(
            f"{where} belongs to another application (it is not a run store); not touching "
            "it: give the store another schema"
        )
    raw = meta.get("schema_version", "")
    if not raw.isdigit():
        raise StoreError(f"{where} has no valid store schema version ({raw!r}); not touching it")
    if int(raw) > POSTGRES_SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written by a newer version (PostgreSQL store schema {raw}; this "
            f"version reads up to {POSTGRES_SCHEMA_VERSION}); upgrade tiered-orchestrator"
        )
