"""The SDK's ``messages.batches`` as a :class:`~orchestrator.models.batch.BatchTransport`.

With :mod:`orchestrator.models.anthropic`, the only module that imports the ``anthropic``
SDK. Polling a batch outlives network trouble: a transient failure of ``retrieve`` or of
reading the results is retried (the batch is still there), a missing batch or a refused
key is not. An entry that did not succeed becomes a :class:`BatchEntryError`, which the
client retries (in the next batch) when the API's error is transient or the entry expired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anthropic
import anyio

from orchestrator.exceptions import ModelAPIError, ModelAPIUserError
from orchestrator.models.batch import BatchOutcome
from orchestrator.wire import SIMULATED_HEADER, is_simulated

__all__ = ["BatchEntryError", "SDKBatches"]

_TRANSIENT = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class BatchEntryError(Exception):
    """A batch request that ended without a message (errored, expired or canceled)."""

    def __init__(self, outcome: BatchOutcome) -> None:
        super().__init__(outcome.error or outcome.kind)
        self.outcome = outcome

    def api_error(self, where: str) -> ModelAPIError:
        """The error as the engine reports it (transient ones are retried)."""
        outcome = self.outcome
        if outcome.kind == "expired":
            return ModelAPIError(
                f"{where}: the batch expired before this request ran (not billed)",
                error_type="batch_expired",
            )
        if outcome.kind == "canceled":
            return ModelAPIUserError(
                f"{where}: the batch was canceled before this request ran (not billed)",
                status_code=None,
                error_type="batch_canceled",
            )
        kind = outcome.error_type or "api_error"
        message = f"{where}: batch request errored: {kind}: {outcome.error}"
        if kind in {"invalid_request_error", "authentication_error", "permission_error"}:
            return ModelAPIUserError(message, status_code=400, error_type=kind)
        return ModelAPIError(message, error_type=kind)


class SDKBatches:
    """One endpoint's Message Batches through the SDK.

    Args:
        sdk: The endpoint's client.
        on_error: Called with the error type of each failed poll (the client's tally).
        retry_s: Wait before polling again after a transient failure.
    """

    def __init__(
        self,
        sdk: anthropic.AsyncAnthropic,
        on_error: Callable[[str], None],
        *,
        retry_s: float = 1.0,
    ) -> None:
        self._sdk = sdk
        self._on_error = on_error
        self._retry_s = retry_s
        self._simulated: dict[str, bool] = {}

    async def create(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> str:
        """Create the batch (its failures are the caller's to retry: nothing was queued)."""
        raw = await self._sdk.messages.batches.with_raw_response.create(
            requests=[{"custom_id": cid, "params": params} for cid, params in requests]  # type: ignore[typeddict-item]
        )
        batch = await raw.parse()
        self._simulated[batch.id] = is_simulated(raw.headers.get(SIMULATED_HEADER))
        return batch.id

    async def ended(self, batch_id: str) -> bool:
        """Whether the batch ended; transient failures count as not yet."""
        try:
            raw = await self._sdk.messages.batches.with_raw_response.retrieve(batch_id)
            batch = await raw.parse()
        except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
            self._transient(exc)
            await anyio.sleep(self._retry_s)
            return False
        self._simulated[batch_id] = is_simulated(raw.headers.get(SIMULATED_HEADER))
        return batch.processing_status == "ended"

    async def results(self, batch_id: str) -> dict[str, BatchOutcome]:
        """Every entry's outcome, read again after a transient failure."""
        while True:
            try:
                return await self._results(batch_id)
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                self._transient(exc)
                await anyio.sleep(self._retry_s)

    async def _results(self, batch_id: str) -> dict[str, BatchOutcome]:
        simulated = self._simulated.pop(batch_id, False)
        outcomes: dict[str, BatchOutcome] = {}
        async for line in await self._sdk.messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":
                outcomes[line.custom_id] = BatchOutcome(
                    "succeeded", message=result.message, simulated=simulated
                )
            elif result.type == "errored":
                error = result.error.error
                outcomes[line.custom_id] = BatchOutcome(
                    "errored", error_type=error.type, error=error.message, simulated=simulated
                )
            else:
                outcomes[line.custom_id] = BatchOutcome(result.type, simulated=simulated)
        return outcomes

    def _transient(self, exc: anthropic.APIConnectionError | anthropic.APIStatusError) -> None:
        """Note a failed poll; raise it when waiting cannot help (a lost batch, a bad key)."""
        if isinstance(exc, anthropic.APIStatusError):
            self._on_error(exc.type or f"http_{exc.status_code}")
            if exc.status_code not in _TRANSIENT:
                raise ModelAPIUserError(
                    f"reading a message batch failed: HTTP {exc.status_code}: "
                    f"{exc.api_message or exc.message}",
                    status_code=exc.status_code,
                    error_type=exc.type or f"http_{exc.status_code}",
                ) from None
        else:
            self._on_error("connection_error")
