"""The Message Batches API: create, retrieve, list, cancel, delete, and results as JSONL.

A batch's requests are checked when it is created only as far as the real API checks them
then: the envelope (``requests``, 1 to 100,000 of them, each a ``custom_id`` matching
``^[a-zA-Z0-9_-]{1,64}$``, unique, and a ``params`` object; the 256 MB body limit is the
HTTP layer's). Their ``params`` are validated, as the real API does, *asynchronously*: a
request the Messages API would refuse ends ``errored`` with that very error.

Timing is in simulated seconds, scaled by ``time_scale`` into real ones. Each request
takes between 0.5x and 1.5x ``batch_delay_s`` (seeded by batch and ``custom_id``); one that
would take longer than ``batch_expiry_s`` is ``expired``; the batch ends when its last
request does, or at its expiry, or when it is cancelled (requests not finished by then are
``canceled``). Requests are answered (by the same code as ``POST /v1/messages``, usage with
``service_tier: "batch"``) when the batch is first looked at after it ended, and logged
then; expired and canceled ones are never answered, so never billed.

Batches live in memory, at most ``max_batches`` of them: creating one more forgets the
oldest (its id then answers 404).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio
from pydantic import BaseModel, ConfigDict, Field

from orchestrator_sim.api import ApiError, parse_body
from orchestrator_sim.config import SimConfig
from orchestrator_sim.http import HttpRequest, HttpResponse
from orchestrator_sim.reqlog import RequestRecord
from orchestrator_sim.seeding import short_id, unit

__all__ = ["BATCHES_PATH", "MAX_REQUESTS", "Batch", "BatchApi", "Entry"]

BATCHES_PATH = "/v1/messages/batches"
MAX_REQUESTS = 100_000
_CUSTOM_ID = r"^[a-zA-Z0-9_-]{1,64}$"
_LIST_DEFAULT, _LIST_MAX = 20, 1000


class _RequestParam(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    custom_id: Annotated[str, Field(pattern=_CUSTOM_ID)]
    params: dict[str, Any]


class _CreateParams(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    requests: Annotated[list[_RequestParam], Field(min_length=1, max_length=MAX_REQUESTS)]


@dataclass(slots=True)
class Entry:
    """One request of a batch.

    Attributes:
        custom_id: The client's id for it.
        params: Its Messages-API body (JSON), dropped once answered.
        finish_s: Simulated seconds after the batch's creation at which it ends.
        result: The ``result`` object of its JSONL line, once the batch has ended.
    """

    custom_id: str
    params: bytes
    finish_s: float
    result: dict[str, Any] | None = None


@dataclass(slots=True)
class Batch:
    """One Message Batch.

    Attributes:
        id: ``msgbatch_...``.
        created: Clock time of its creation (seconds since the epoch).
        entries: Its requests, in the order sent.
        cancel_at: Clock time cancellation was asked for, if it was.
        settled: Whether every entry has its result.
        counts: Entries by result type, once settled.
        cache_time: The prompt cache's clock when its entries were answered: they run
            concurrently, so each sees the cache as it was then.
    """

    id: str
    created: float
    entries: list[Entry]
    cancel_at: float | None = None
    settled: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    cache_time: float | None = None


Answer = Callable[[Batch, Entry], Awaitable[dict[str, Any]]]
"""Answers one entry of an ended batch: its ``result`` object (succeeded or errored)."""


class BatchApi:
    """Serves ``/v1/messages/batches`` from an in-memory store.

    Args:
        config: The server's configuration (timing, bounds, error rate, seed).
        clock: Returns the time in seconds since the epoch (injectable for tests).
        answer: Answers one entry; called when its batch has ended.
    """

    def __init__(self, config: SimConfig, clock: Callable[[], float], answer: Answer) -> None:
        self._config = config
        self._clock = clock
        self._answer = answer
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._created = 0
        self._lock = anyio.Lock()

    async def handle(self, request: HttpRequest, path: str, record: RequestRecord) -> HttpResponse:
        """Answer one request to a ``/v1/messages/batches`` path."""
        record.kind = "batch"
        rest = path.removeprefix(BATCHES_PATH).strip("/").split("/")
        method = request.method
        if rest == [""] and method in ("POST", "GET"):
            action = "create" if method == "POST" else "list"
        elif len(rest) == 1 and method in ("GET", "DELETE"):
            action = "retrieve" if method == "GET" else "delete"
        elif len(rest) == 2 and (method, rest[1]) in (("POST", "cancel"), ("GET", "results")):
            action = rest[1]
        else:
            raise ApiError(404, "Not Found")
        record.notes["action"] = action
        base = f"http://{request.headers.get('host', '127.0.0.1')}"
        if action == "create":
            batch = self._create(request.body)
            record.batch_id = batch.id
            return _json(self._view(batch, base, status="in_progress"))
        if action == "list":
            return _json(await self._list(request.query, base))
        batch = self._get(rest[0])
        record.batch_id = batch.id
        if action == "cancel":
            status = self._cancel(batch)
            await self._settle(batch)
            return _json(self._view(batch, base, status=status))
        await self._settle(batch)
        if action == "retrieve":
            return _json(self._view(batch, base))
        if action == "delete":
            return _json(self._delete(batch))
        return self._results(batch)

    # -- the store ----------------------------------------------------------------------

    def _create(self, body: bytes) -> Batch:
        params = parse_body(_CreateParams, body)
        seen: set[str] = set()
        for index, request in enumerate(params.requests):
            if request.custom_id in seen:
                raise ApiError(
                    400,
                    f"requests.{index}.custom_id: Duplicate custom_id '{request.custom_id}'; "
                    "each request in a Message Batch must have a unique custom_id.",
                )
            seen.add(request.custom_id)
        self._created += 1
        batch_id = short_id("msgbatch_", self._config.seed, "batch", self._created)
        delay, seed = self._config.batch_delay_s, self._config.seed
        entries = [
            Entry(
                request.custom_id,
                json.dumps(request.params).encode("utf-8"),
                delay * (0.5 + unit(seed, "batch-delay", batch_id, request.custom_id)),
            )
            for request in params.requests
        ]
        batch = Batch(batch_id, self._clock(), entries)
        self._batches[batch_id] = batch
        while len(self._batches) > self._config.max_batches:
            self._batches.popitem(last=False)
        return batch

    def _get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"message_batch: {batch_id}")
        return batch

    def _real(self, batch: Batch, simulated_s: float) -> float:
        return batch.created + self._config.scaled(simulated_s)

    def _ends_at(self, batch: Batch) -> float:
        last = max(entry.finish_s for entry in batch.entries)
        natural = self._real(batch, min(last, self._config.batch_expiry_s))
        return natural if batch.cancel_at is None else min(natural, batch.cancel_at)

    def _ended(self, batch: Batch) -> bool:
        return self._clock() >= self._ends_at(batch)

    def _cancel(self, batch: Batch) -> str | None:
        if batch.cancel_at is not None or self._ended(batch):
            return None  # already cancelled, or ended: nothing changes
        batch.cancel_at = self._clock()
        return "canceling"  # what the real API answers; it has ended by the next look

    def _delete(self, batch: Batch) -> dict[str, Any]:
        if not self._ended(batch):
            raise ApiError(
                400,
                f"Message Batch {batch.id} cannot be deleted while it is processing; "
                "cancel it first, then delete it once it has ended.",
            )
        del self._batches[batch.id]
        return {"id": batch.id, "type": "message_batch_deleted"}

    async def _settle(self, batch: Batch) -> None:
        """Give every entry of an ended batch its result (answering those that ran)."""
        if batch.settled or not self._ended(batch):
            return
        async with self._lock:
            if batch.settled:
                return
            for entry in batch.entries:
                entry.result = await self._fate(batch, entry)
                entry.params = b""
            counts = dict.fromkeys(("succeeded", "errored", "canceled", "expired"), 0)
            for entry in batch.entries:
                counts[str((entry.result or {}).get("type"))] += 1
            batch.counts, batch.settled = counts, True

    async def _fate(self, batch: Batch, entry: Entry) -> dict[str, Any]:
        if batch.cancel_at is not None and self._real(batch, entry.finish_s) > batch.cancel_at:
            return {"type": "canceled"}
        if entry.finish_s > self._config.batch_expiry_s:
            return {"type": "expired"}
        return await self._answer(batch, entry)

    async def _list(self, query: str, base: str) -> dict[str, Any]:
        args = {key: values[-1] for key, values in parse_qs(query).items()}
        limit = _limit(args.get("limit"))
        before, after = args.get("before_id"), args.get("after_id")
        if before is not None and after is not None:
            raise ApiError(400, "before_id and after_id cannot be used together")
        ids = list(reversed(self._batches))  # newest first
        if after is not None:
            rest = ids[ids.index(after) + 1 :] if after in ids else []
            page, more = rest[:limit], len(rest) > limit
        elif before is not None:
            rest = ids[: ids.index(before)] if before in ids else []
            page, more = rest[-limit:], len(rest) > limit
        else:
            page, more = ids[:limit], len(ids) > limit
        batches = [self._batches[batch_id] for batch_id in page]
        for batch in batches:
            await self._settle(batch)
        return {
            "data": [self._view(batch, base) for batch in batches],
            "has_more": more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    # -- shapes -------------------------------------------------------------------------

    def _view(self, batch: Batch, base: str, status: str | None = None) -> dict[str, Any]:
        """The ``message_batch`` object; ``status`` forces ``in_progress``/``canceling``."""
        ended = status is None and batch.settled
        if status is None:
            status = "ended" if ended else "canceling" if batch.cancel_at else "in_progress"
        counts = {"processing": 0 if ended else len(batch.entries)}
        for kind in ("succeeded", "errored", "canceled", "expired"):
            counts[kind] = batch.counts.get(kind, 0) if ended else 0
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _iso(batch.created),
            "ended_at": _iso(self._ends_at(batch)) if ended else None,
            "expires_at": _iso(self._real(batch, self._config.batch_expiry_s)),
            "cancel_initiated_at": _iso(batch.cancel_at) if batch.cancel_at else None,
            "archived_at": None,
            "results_url": f"{base}{BATCHES_PATH}/{batch.id}/results" if ended else None,
        }

    def _results(self, batch: Batch) -> HttpResponse:
        if not batch.settled:
            raise ApiError(
                400,
                f"Message Batch {batch.id} has not finished processing; its results are "
                "available once processing_status is ended.",
            )
        lines = [
            json.dumps({"custom_id": entry.custom_id, "result": entry.result}) + "\n"
            for entry in batch.entries
        ]
        body = "".join(lines).encode("utf-8")
        return HttpResponse(200, [("content-type", "application/x-jsonl")], body)


def _limit(value: str | None) -> int:
    if value is None:
        return _LIST_DEFAULT
    try:
        limit = int(value)
    except ValueError:
        raise ApiError(400, "limit: Input should be a valid integer") from None
    if limit < 1:
        raise ApiError(400, "limit: Input should be greater than or equal to 1")
    if limit > _LIST_MAX:
        raise ApiError(400, f"limit: Input should be less than or equal to {_LIST_MAX}")
    return limit


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _json(document: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, [("content-type", "application/json")], json.dumps(document).encode())
