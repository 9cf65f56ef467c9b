"""Run stores: where runs are recorded as they happen (SQLite by default)."""

from orchestrator.store.base import MemoryStore, RunStore, RunSummary, StoredRun, StoreListener
from orchestrator.store.lease import DEFAULT_TTL_S, HeldLease, Lease, LeaseOwner, hold_lease
from orchestrator.store.sqlite import SCHEMA_VERSION, SQLiteStore, StoreError

__all__ = [
    "DEFAULT_TTL_S",
    "SCHEMA_VERSION",
    "HeldLease",
    "Lease",
    "LeaseOwner",
    "MemoryStore",
    "RunStore",
    "RunSummary",
    "SQLiteStore",
    "StoreError",
    "StoreListener",
    "StoredRun",
    "hold_lease",
]
