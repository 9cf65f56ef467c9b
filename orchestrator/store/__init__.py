"""Run stores: where runs are recorded as they happen (SQLite by default)."""

from orchestrator.store.base import MemoryStore, RunStore, RunSummary, StoredRun, StoreListener
from orchestrator.store.sqlite import SCHEMA_VERSION, SQLiteStore, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "RunStore",
    "RunSummary",
    "SQLiteStore",
    "StoreError",
    "StoreListener",
    "StoredRun",
]
