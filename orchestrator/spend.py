"""An attempt's spend: the meters of its calls, and what they leave on the attempt.

Each model call of an attempt (the answer's tool-loop turns, judge calls, a classifier
call) runs on a :class:`~orchestrator.budget.Meter` of the attempt's :class:`Spend`:
reserved in the run's budget before it is sent (with listeners, the worst case is
recorded on the attempt first, so a crash never loses it) and settled on the response
(with listeners, a :class:`~orchestrator.events.CostUpdated` follows).
:func:`settle` writes the tally onto the attempt when it ends.

The :class:`Spend` also reports its calls as they go: the text of each (to listeners that
want it, :meth:`Spend.on_text`) and the tool calls of the tool loop
(:class:`~orchestrator.turns.ToolObserver`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from orchestrator.budget import Budget, Meter, collect_earlier
from orchestrator.events import (
    AttemptSpending,
    CostUpdated,
    EventBus,
    TextDelta,
    ToolCalled,
    ToolReturned,
)
from orchestrator.pricing import ZERO_USD, Usage
from orchestrator.results import Attempt
from orchestrator.tiers import Tier

__all__ = ["Spend", "add_spend", "now", "settle"]


def now() -> datetime:
    """The time, UTC (attempts' start and end)."""
    return datetime.now(UTC)


class Spend(list[Meter]):
    """The meters of one attempt.

    With listeners, each call's worst case is recorded on the attempt
    (:class:`~orchestrator.events.AttemptSpending`) before the call is sent, and so is
    the id of the batch a batch call waits in, before its result is awaited.

    ``earlier``: the node's attempts of an earlier process (a resumed run). A call one of
    them left waiting in a Message Batch is collected from that batch when this attempt
    makes it again; its worst case then moves from that attempt to this one.
    """

    __slots__ = (
        "_attempt", "_budget", "_bus", "_calls", "_earlier", "_node_id", "_run_id", "answered",
    )  # fmt: skip

    def __init__(
        self,
        budget: Budget,
        bus: EventBus,
        run_id: str,
        node_id: str,
        attempt: Attempt,
        *,
        earlier: Sequence[Attempt] = (),
    ) -> None:
        super().__init__()
        self._budget, self._bus, self._run_id = budget, bus, run_id
        self._node_id, self._attempt = node_id, attempt
        self._earlier = [a for a in earlier if a.batch_pending]
        self.answered: anyio.Event | None = None
        """Set once the first meter's first call is answered (other nodes wait for the
        prefix it writes to the prompt cache)."""
        self._calls = 0  # model calls whose text was asked for

    def meter(self, tier: Tier) -> Meter:
        """A new meter on ``tier``, charged to the run's budget and to this attempt."""
        meter = Meter(tier, self._budget, on_reserve=self._reserved if self._bus else None)
        if not self:
            meter.answered = self.answered
        meter.on_settle = self._settled if self._bus else None
        if self._earlier:
            collect_earlier(meter, self._moved, self._earlier)
        self.append(meter)
        return meter

    async def _moved(self, earlier: Attempt) -> None:
        """A call moved from ``earlier`` (an earlier process's attempt) to this one: store it."""
        if self._bus:
            await self._bus.emit(AttemptSpending(self._run_id, self._node_id, earlier))

    async def _reserved(self, _: Meter) -> None:
        attempt = self._attempt
        attempt.cost_usd = sum((m.cost_usd for m in self), ZERO_USD)
        attempt.in_flight_usd = sum((m.in_flight_usd for m in self), ZERO_USD)
        attempt.batch_pending = tuple(c for m in self for c in m.pending)
        await self._bus.emit(AttemptSpending(self._run_id, self._node_id, attempt))

    async def _settled(self, _: Meter) -> None:
        budget = self._budget
        cost = sum((m.cost_usd for m in self), ZERO_USD)
        event = CostUpdated(self._run_id, self._node_id, self._attempt.number, cost,
                            budget.spent_usd, budget.reserved_usd, budget.limit_usd)  # fmt: skip
        await self._bus.emit(event)

    def on_text(self, purpose: str) -> Callable[[str, int], Awaitable[None]] | None:
        """The text hook of this attempt's next model call (``None``: nobody wants text)."""
        if not self._bus.wants_text:
            return None
        self._calls += 1
        call, bus = self._calls, self._bus
        run_id, node_id, number = self._run_id, self._node_id, self._attempt.number

        async def text(delta: str, retry: int) -> None:
            await bus.emit_text(TextDelta(run_id, node_id, number, call, purpose, retry, delta))

        return text

    async def tool_called(self, call_id: str, name: str, arguments: Any) -> None:
        """The tool loop runs a call the model asked for (the ``ToolObserver`` protocol)."""
        if self._bus:
            event = ToolCalled(self._run_id, self._node_id, self._attempt.number, call_id, name,
                               arguments)  # fmt: skip
            await self._bus.emit(event)

    async def tool_returned(self, call_id: str, name: str, content: str, is_error: bool) -> None:
        """A tool call returned (the ``ToolObserver`` protocol)."""
        if self._bus:
            number = self._attempt.number
            event = ToolReturned(self._run_id, self._node_id, number, call_id, name, content,
                                 is_error)  # fmt: skip
            await self._bus.emit(event)


def add_spend(attempt: Attempt, meters: Sequence[Meter]) -> None:
    """Set the attempt's tokens, cost and calls to what its meters counted."""
    usage = Usage()
    for meter in meters:
        usage = usage + meter.usage
    attempt.input_tokens = usage.input_tokens
    attempt.output_tokens = usage.output_tokens
    attempt.cache_write_tokens = usage.cache_write_tokens
    attempt.cache_read_tokens = usage.cache_read_tokens
    attempt.cost_usd = sum((meter.cost_usd for meter in meters), ZERO_USD)
    attempt.cache_saving_usd = sum((meter.cache_saving_usd for meter in meters), ZERO_USD)
    attempt.in_flight_usd = ZERO_USD
    attempt.batch_pending = ()
    attempt.calls = sum(meter.calls for meter in meters)
    attempt.batch_calls = sum(meter.batch_calls for meter in meters)
    attempt.batch_saving_usd = sum((meter.batch_saving_usd for meter in meters), ZERO_USD)
    if any(meter.cost_unknown for meter in meters):  # a call may have been billed unseen
        attempt.cost_unknown = True


def settle(attempt: Attempt, meters: Sequence[Meter]) -> None:
    """The attempt ended: its end time, and what its calls spent."""
    attempt.finished_at = now()
    add_spend(attempt, meters)
