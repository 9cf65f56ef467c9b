"""An attempt's spend: the meters of its calls, and what they leave on the attempt.

Each model call of an attempt (the answer's tool-loop turns, judge calls, a classifier
call) runs on a :class:`~orchestrator.budget.Meter` of the attempt's :class:`Spend`:
reserved in the run's budget before it is sent (with listeners, the worst case is
recorded on the attempt first, so a crash never loses it) and settled on the response.
:func:`settle` writes the tally onto the attempt when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.budget import Budget, Meter
from orchestrator.events import AttemptSpending, EventBus
from orchestrator.pricing import ZERO_USD, Usage
from orchestrator.results import Attempt, BatchCall
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

    __slots__ = ("_attempt", "_budget", "_bus", "_earlier", "_node_id", "_run_id")

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
        self._earlier = {c.custom_id: a for a in earlier for c in a.batch_pending}

    def meter(self, tier: Tier) -> Meter:
        """A new meter on ``tier``, charged to the run's budget and to this attempt."""
        meter = Meter(tier, self._budget, on_reserve=self._reserved if self._bus else None)
        if self._earlier:
            meter.earlier = {
                c.custom_id: c
                for a in self._earlier.values()
                for c in a.batch_pending
                if c.custom_id in self._earlier
            }
            meter.on_adopt = self._adopt
        self.append(meter)
        return meter

    async def _adopt(self, call: BatchCall) -> None:
        """``call`` moves from the earlier attempt that sent it to this one."""
        earlier = self._earlier.pop(call.custom_id)
        earlier.batch_pending = tuple(c for c in earlier.batch_pending if c != call)
        earlier.cost_usd -= call.reserved_usd  # it counted the call's worst case
        for meter in self:
            meter.earlier.pop(call.custom_id, None)
        if self._bus:
            await self._bus.emit(AttemptSpending(self._run_id, self._node_id, earlier))

    async def _reserved(self, _: Meter) -> None:
        attempt = self._attempt
        attempt.cost_usd = sum((m.cost_usd for m in self), ZERO_USD)
        attempt.in_flight_usd = sum((m.in_flight_usd for m in self), ZERO_USD)
        attempt.batch_pending = tuple(c for m in self for c in m.pending)
        await self._bus.emit(AttemptSpending(self._run_id, self._node_id, attempt))


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
