"""Message Batches: calls that can wait, collected and sent together at the batch price.

A :class:`BatchQueue` serves one endpoint. Batch calls that arrive while no batch is
forming start one; every call that arrives within ``collect_s`` joins it (in a DAG run:
the nodes that became ready together, and those that become ready meanwhile); then it is
created in one request. Calls arriving after that form the next batch, so escalations and
dependents ride in later batches. Each caller then waits for its own result: one of them
polls the batch (at ``poll_s``, doubling up to ``poll_max_s``) and the others wait for
it; if that caller is cancelled another takes over, so no call is left waiting on a
poller that is gone.

The queue knows nothing of the SDK: a :class:`BatchTransport` creates, polls and reads
batches (:mod:`orchestrator.models.anthropic` gives it the SDK's ``messages.batches``).
Creating a batch is shielded from cancellation: once sent, its id is always known, so a
call is never in a batch nobody can name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio

__all__ = ["BatchOutcome", "BatchQueue", "BatchTransport", "custom_id_of"]


def custom_id_of(params: dict[str, Any]) -> str:
    """The id of a request in a batch: a digest of its body (the same call, the same id).

    A resumed run that makes a call again finds it under this id in the batch an earlier
    process sent it in.
    """
    body = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return "call_" + hashlib.sha256(body.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One request's result in an ended batch."""

    kind: Literal["succeeded", "errored", "canceled", "expired"]
    """The API's ``result.type``."""
    message: Any = None
    """The message, when it succeeded (the provider's object)."""
    error_type: str | None = None
    """The error's type, when it errored (``invalid_request_error``, ``api_error``...)."""
    error: str = ""
    """The error's message."""
    simulated: bool = False
    """Whether the endpoint is a simulator (it said so on the batch's responses)."""


class BatchTransport(Protocol):
    """The provider's batch endpoints, as the queue uses them."""

    async def create(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> str:
        """Create a batch of ``(custom_id, params)`` requests; return its id."""
        ...

    async def ended(self, batch_id: str) -> bool:
        """Whether the batch has ended (its results can be read)."""
        ...

    async def results(self, batch_id: str) -> dict[str, BatchOutcome]:
        """Every request's outcome in an ended batch, by ``custom_id``."""
        ...


@dataclass(slots=True)
class _Job:
    """Work one waiter drives for all: creating a forming batch, or polling a batch."""

    driving: bool = False
    done: bool = False
    error: BaseException | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


@dataclass(slots=True)
class _Forming(_Job):
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    callers: dict[str, int] = field(default_factory=dict)
    batch_id: str | None = None


@dataclass(slots=True)
class _Poll(_Job):
    results: dict[str, BatchOutcome] = field(default_factory=dict)
    waiters: int = 0


class BatchQueue:
    """Collects one endpoint's batch calls into Message Batches and reads their results.

    Args:
        transport: The endpoint's batch API.
        collect_s: How long a forming batch waits for more calls before it is created.
        poll_s: First wait between polls of a batch; doubles up to ``poll_max_s``.
        poll_max_s: Longest wait between polls.
        max_requests: Most requests in one batch (the API's limit is 100,000).
    """

    def __init__(
        self,
        transport: BatchTransport,
        *,
        collect_s: float = 1.0,
        poll_s: float = 1.0,
        poll_max_s: float = 60.0,
        max_requests: int = 10_000,
    ) -> None:
        self.transport = transport
        self.collect_s = collect_s
        self.poll_s = poll_s
        self.poll_max_s = poll_max_s
        self.max_requests = max_requests
        self.created = 0
        """Batches this queue created."""
        self._forming: _Forming | None = None
        self._polls: dict[str, _Poll] = {}

    @property
    def waiting(self) -> int:
        """Batches being waited for now."""
        return len(self._polls)

    async def submit(self, custom_id: str, params: dict[str, Any]) -> str:
        """Put a call in the next batch; return the batch's id once it is created.

        The same ``custom_id`` twice in one batch is one request (the same body): both
        callers read its one result.

        Raises:
            Exception: What creating the batch raised (the call is in no batch).
        """
        forming = self._forming
        if forming is None or len(forming.entries) >= self.max_requests:
            forming = self._forming = _Forming()
        forming.entries[custom_id] = params
        forming.callers[custom_id] = forming.callers.get(custom_id, 0) + 1
        try:
            while not forming.done:
                if forming.driving:
                    await forming.changed.wait()
                    continue
                forming.driving = True
                try:
                    await anyio.sleep(self.collect_s)  # the others join meanwhile
                    await self._create(forming)
                finally:
                    forming.driving = False
                    forming.notify()
        except anyio.get_cancelled_exc_class():
            if not forming.done:  # not sent: the call leaves the batch
                forming.callers[custom_id] -= 1
                if not forming.callers[custom_id]:
                    del forming.entries[custom_id], forming.callers[custom_id]
            raise
        if forming.error is not None:
            raise forming.error
        assert forming.batch_id is not None
        return forming.batch_id

    async def _create(self, forming: _Forming) -> None:
        if self._forming is forming:
            self._forming = None  # calls from now on form the next batch
        with anyio.CancelScope(shield=True):  # once sent, its id must be known
            try:
                if forming.entries:
                    forming.batch_id = await self.transport.create(list(forming.entries.items()))
                    self.created += 1
            except Exception as exc:  # noqa: BLE001  (every caller raises it)
                forming.error = exc
            forming.done = True

    async def result(self, batch_id: str, custom_id: str) -> BatchOutcome:
        """Wait for batch ``batch_id`` to end; return the outcome of ``custom_id`` in it.

        Raises:
            Exception: What polling or reading the batch raised for good (the transport
                retries what is transient).
        """
        poll = self._polls.get(batch_id)
        if poll is None:
            poll = self._polls[batch_id] = _Poll()
        poll.waiters += 1
        try:
            while not poll.done:
                if poll.driving:
                    await poll.changed.wait()
                    continue
                poll.driving = True
                try:
                    await self._poll(batch_id, poll)
                finally:
                    poll.driving = False
                    poll.notify()
        finally:
            poll.waiters -= 1
            if poll.waiters == 0 and self._polls.get(batch_id) is poll:
                del self._polls[batch_id]  # everyone has read it
        if poll.error is not None:
            raise poll.error
        outcome = poll.results.get(custom_id)
        if outcome is None:
            return BatchOutcome(
                "errored", error_type="not_found_error", error=f"{custom_id} is not in {batch_id}"
            )
        return outcome

    async def _poll(self, batch_id: str, poll: _Poll) -> None:
        delay = self.poll_s
        try:
            while not await self.transport.ended(batch_id):
                await anyio.sleep(delay)
                delay = min(delay * 2, self.poll_max_s)
            poll.results = await self.transport.results(batch_id)
        except Exception as exc:  # noqa: BLE001  (every waiter raises it)
            poll.error = exc
        poll.done = True
