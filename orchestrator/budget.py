"""The run budget: reserve the worst case before each call, settle to the real cost after.

Reserving before the call is what makes ``cost <= budget`` hold under concurrency: a call
is only sent when its worst case (its prompt priced at the dearest input rate plus its full
``max_tokens`` of output) fits in what is neither spent nor reserved by calls in flight.
When it does not fit only because other calls hold reservations, it waits for them to
settle (they usually cost far less than their worst case); when it does not fit even with
nothing in flight, the budget is exhausted and the run stops launching work.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from orchestrator.exceptions import BudgetExhausted
from orchestrator.pricing import Usage
from orchestrator.tiers import Tier

__all__ = ["Budget", "CallTicket", "Meter", "Reservation"]


@dataclass(slots=True)
class Reservation:
    """Money set aside for one call in flight."""

    amount_usd: float
    settled: bool = False


class Budget:
    """A run's spending limit in USD, shared by every node of the run.

    Args:
        limit_usd: The most the run may spend; ``None`` for no limit.
        spent_usd: What was already spent (e.g. before a resume).
    """

    def __init__(self, limit_usd: float | None = None, *, spent_usd: float = 0.0) -> None:
        if limit_usd is not None and (limit_usd < 0 or math.isnan(limit_usd)):
            raise ValueError(f"budget must be a non-negative number of USD, got {limit_usd}")
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = 0.0
        self.exhausted = False
        """Set once a reservation was refused: the run stops launching nodes."""
        self._settled = anyio.Event()

    @property
    def remaining_usd(self) -> float:
        """What can still be reserved (``inf`` without a limit)."""
        if self.limit_usd is None:
            return math.inf
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def reserve(self, amount_usd: float) -> Reservation:
        """Set aside ``amount_usd`` for a call now, or refuse.

        Raises:
            BudgetExhausted: If the remaining budget cannot cover ``amount_usd``.
            ValueError: If ``amount_usd`` is negative or not a number.
        """
        if not math.isfinite(amount_usd) or amount_usd < 0:
            raise ValueError(f"a reservation must be a finite amount >= 0, not {amount_usd!r}")
        if amount_usd > self.remaining_usd:
            self.exhausted = True
            raise BudgetExhausted(amount_usd, self.remaining_usd)
        self.reserved_usd += amount_usd
        return Reservation(amount_usd)

    async def acquire(self, amount_usd: float) -> Reservation:
        """Set aside ``amount_usd``, waiting for calls in flight to settle if need be.

        Raises:
            BudgetExhausted: If ``amount_usd`` does not fit even with nothing in flight.
        """
        while amount_usd > self.remaining_usd and self.reserved_usd > 0 and not self.exhausted:
            await self._settled.wait()
        return self.reserve(amount_usd)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release a reservation and record what the call really cost."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd = max(0.0, self.reserved_usd - reservation.amount_usd)
        self.spent_usd += actual_usd
        self._settled.set()
        self._settled = anyio.Event()


@dataclass(slots=True)
class CallTicket:
    """Filled in by the model client with the usage the API reported for one call."""

    usage: Usage | None = None
    """``None`` when the call failed before the API reported usage (nothing billed)."""


@dataclass(slots=True)
class Meter:
    """Budget gate and usage tally for the model calls of one attempt on one tier.

    Model clients wrap every HTTP request they send in ``async with meter.call(...)``, so
    the budget holds however many calls a tool loop makes.
    """

    tier: Tier
    budget: Budget
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: int = 0

    @asynccontextmanager
    async def call(
        self, prompt_tokens: int, max_output_tokens: int, extra_usd: float = 0.0
    ) -> AsyncIterator[CallTicket]:
        """Reserve the worst case of one call, then settle to its real usage.

        Args:
            prompt_tokens: An upper estimate of the prompt's size in tokens.
            max_output_tokens: The call's ``max_tokens``.
            extra_usd: The most the call can cost beyond tokens (server-side tool fees).

        Raises:
            BudgetExhausted: Before the call, if its worst case does not fit.
        """
        worst_case = self.tier.worst_case_cost(prompt_tokens, max_output_tokens) + extra_usd
        reservation = await self.budget.acquire(worst_case)
        ticket = CallTicket()
        try:
            yield ticket
        finally:
            self.record(reservation, ticket.usage)

    def record(self, reservation: Reservation, usage: Usage | None) -> None:
        """Settle ``reservation`` with ``usage`` and add it to this meter's tally."""
        cost = 0.0 if usage is None else self.tier.cost(usage)
        self.budget.settle(reservation, cost)
        self.calls += 1
        if usage is not None:
            self.usage = self.usage + usage
            self.cost_usd += cost
