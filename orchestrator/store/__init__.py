"""Run stores: where runs are recorded as they happen (SQLite by default).

One concept per module:

- :mod:`~orchestrator.store.base`: the :class:`RunStore` interface, the records it holds
  (:class:`RunSummary`, :class:`StoredRun`) and ``spent_on``, what an attempt counts as spent.
- :mod:`~orchestrator.store.lease`: run leases (one owner of a run at a time): their values,
  the rules every store applies to them, and :func:`hold_lease`.
- :mod:`~orchestrator.store.memory`: :class:`MemoryStore`, the store in a dict.
- :mod:`~orchestrator.store.listener`: :class:`StoreListener`, engine events into a store.
- :mod:`~orchestrator.store.sqlite`: :class:`SQLiteStore`, the durable store in one file,
  put together from :mod:`~orchestrator.store.sqlite_schema` (the file: tables, marker,
  version, safe opening), :mod:`~orchestrator.store.sqlite_writer` (every call batched off
  the event loop on one connection) and :mod:`~orchestrator.store.sqlite_queries` (what
  each call reads and writes).
- :mod:`~orchestrator.store.postgres`: :class:`PostgresStore`, the store in a PostgreSQL
  database that processes on several hosts share (the ``postgres`` extra), put together
  from :mod:`~orchestrator.store.postgres_schema` (the store's schema in the database:
  marker, version, safe opening) and :mod:`~orchestrator.store.postgres_queries`.
"""

from orchestrator.store.base import RunStore, RunSummary, StoredRun
from orchestrator.store.lease import DEFAULT_TTL_S, HeldLease, Lease, LeaseOwner, hold_lease
from orchestrator.store.listener import StoreListener
from orchestrator.store.memory import MemoryStore
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import SCHEMA_VERSION, SQLiteStore, StoreError

__all__ = [
    "DEFAULT_TTL_S",
    "SCHEMA_VERSION",
    "HeldLease",
    "Lease",
    "LeaseOwner",
    "MemoryStore",
    "PostgresStore",
    "RunStore",
    "RunSummary",
    "SQLiteStore",
    "StoreError",
    "StoreListener",
    "StoredRun",
    "hold_lease",
]
