"""The request log: one record per request, in memory and optionally as JSON lines.

Records carry the ground truth benchmarks need (was the answer flawed, and how) next to
what a client saw (status, fault, usage). The file is written through anyio's thread-backed
file API, so logging never blocks the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field

from orchestrator_sim.config import FaultKind

__all__ = ["RequestLog", "RequestRecord"]


class RequestRecord(BaseModel):
    """What the server did with one request (fields also readable as ``record["kind"]``).

    Attributes:
        time: When the request arrived (UTC).
        request_id: The ``request-id`` header sent back.
        method: HTTP method.
        path: Request path.
        model: Model id asked for, if the body named one.
        stream: Whether the answer was streamed.
        kind: How the brain classified the request (``task``, ``tool_turn``, ``judge``,
            ``plan``), or ``count_tokens`` / ``models`` / ``batch`` (a Message Batches
            endpoint; ``notes["action"]`` says which); ``None`` if it never got there.
        task_hash: Short hash of the instruction (the same across retries and tiers).
        status: HTTP status answered (200 also for dropped and slow answers).
        error_type: ``error.type`` of an error answer.
        fault: The fault injected, if any.
        usage: The ``usage`` object answered.
        capability: The model's capability.
        difficulty: The task's true difficulty.
        flawed: Whether the answer was flawed (ground truth).
        flaw: The flaw's kind (``missing_section``, ``invented_citation``...).
        flaw_detail: The flaw in words.
        subtle: Whether the flaw is subtle.
        latency_s: Real seconds the server waited before answering (simulated latency).
        notes: Extra ground truth (judge verdicts, broken plans).
        batch_id: The Message Batch a ``/v1/messages/batches`` request is about, and the
            batch of a batch entry (a request answered inside a batch, logged when the
            batch ends).
        custom_id: A batch entry's ``custom_id``.
    """

    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    request_id: str
    method: str
    path: str
    model: str | None = None
    stream: bool = False
    kind: str | None = None
    task_hash: str | None = None
    status: int = 200
    error_type: str | None = None
    fault: FaultKind | None = None
    usage: dict[str, Any] | None = None
    capability: int | None = None
    difficulty: int | None = None
    flawed: bool | None = None
    flaw: str | None = None
    flaw_detail: str | None = None
    subtle: bool | None = None
    latency_s: float = 0.0
    notes: dict[str, Any] = Field(default_factory=dict)
    batch_id: str | None = None
    custom_id: str | None = None

    def __getitem__(self, key: str) -> Any:
        """Read a field by name, as in the JSON line (``record["kind"]``)."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Read a field by name, or ``default`` if there is no such field."""
        return getattr(self, key) if key in type(self).model_fields else default


class RequestLog:
    """Keeps every record in memory and appends it to ``path`` (if given) as a JSON line.

    Args:
        path: The JSON-lines file, or ``None`` for memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[RequestRecord] = []
        self._file: anyio.AsyncFile[str] | None = None
        self._lock = anyio.Lock()

    async def open(self) -> None:
        """Open the file for appending (creating its directory)."""
        if self.path is not None:
            await anyio.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = await anyio.open_file(self.path, "a", encoding="utf-8")

    async def write(self, record: RequestRecord) -> None:
        """Add ``record`` (and append it to the file)."""
        self.records.append(record)
        if self._file is None:
            return
        line = record.model_dump_json() + "\n"
        async with self._lock:
            await self._file.write(line)
            await self._file.flush()

    async def aclose(self) -> None:
        """Close the file."""
        if self._file is not None:
            file, self._file = self._file, None
            with anyio.CancelScope(shield=True):
                await file.aclose()
