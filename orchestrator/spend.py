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
from orchestrator.results import Attempt
from orchestrator.tiers import Tier

__all__ = ["Spend", "add_spend", "now", "settle"]


def now() -> datetime:
    """The time, UTC (attempts' start and end)."""
    return datetime.now(UTC)


class Spend(list[Meter]):
    """The meters of one attempt.

    With listeners, each call's worst case is recorded on the attempt
    (:class:`~orchestrator.events.AttemptSpending`) before the call is sent.
    """

    __slots__ = ("_attempt", "_budget", "_bus", "_node_id", "_run_id")

    def __init__(
        self, budget: Budget, bus: EventBus, run_id: str, node_id: str, attempt: Attempt
    ) -> None:
        super().__init__()
        self._budget, self._bus, self._run_id = budget, bus, run_id
        self._node_id, self._attempt = node_id, attempt

    def meter(self, tier: Tier) -> Meter:
        """A new meter on ``tier``, charged to the run's budget and to this attempt."""
        meter = Meter(tier, self._budget, on_reserve=self._reserved if self._bus else None)
        self.append(meter)
        return meter

    async def _reserved(self, _: Meter) -> None:
        attempt = self._attempt
        attempt.cost_usd = sum((m.cost_usd for m in self), ZERO_USD)
        attempt.in_flight_usd = sum((m.in_flight_usd for m in self), ZERO_USD)
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
    attempt.calls = sum(meter.calls for meter in meters)
    if any(meter.cost_unknown for meter in meters):  # a call may have been billed unseen
        attempt.cost_unknown = True


def settle(attempt: Attempt, meters: Sequence[Meter]) -> None:
    """The attempt ended: its end time, and what its calls spent."""
    attempt.finished_at = now()
    add_spend(attempt, meters)
