"""The run budget: reserve the worst case before each call, settle to the real cost after.

Reserving before the call is what makes ``cost <= budget`` hold under concurrency: a call
is only sent when its worst case (its prompt priced at the dearest input rate plus its full
``max_tokens`` of output) fits in what is neither spent nor reserved by calls in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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

    @property
    def remaining_usd(self) -> float:
        """What can still be reserved (``inf`` without a limit)."""
        if self.limit_usd is None:
            return math.inf
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def reserve(self, amount_usd: float) -> Reservation:
        """Set aside ``amount_usd`` for a call, or refuse.

        Raises:
            BudgetExhausted: If the remaining budget cannot cover ``amount_usd``.
        """
        if amount_usd > self.remaining_usd:
            self.exhausted = True
            raise BudgetExhausted(amount_usd, self.remaining_usd)
        self.reserved_usd += amount_usd
        return Reservation(amount_usd)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release a reservation and record what the call really cost."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd = max(0.0, self.reserved_usd - reservation.amount_usd)
        self.spent_usd += actual_usd


@dataclass(slots=True)
class CallTicket:
    """Filled in by the model client with the usage the API reported for one call."""

    usage: Usage | None = None
    """``None`` when the call failed before the API reported usage (nothing billed)."""


@dataclass(slots=True)
class Meter:
    """Budget gate and usage tally for the model calls of one attempt on one tier.

    Model clients call :meth:`call` around every HTTP request they send, so the budget
    holds however many calls a tool loop makes.
    """

    tier: Tier
    budget: Budget
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: int = 0

    @contextmanager
    def call(self, prompt_tokens: int, max_output_tokens: int) -> Iterator[CallTicket]:
        """Reserve the worst case of one call, then settle to its real usage.

        Args:
            prompt_tokens: An upper estimate of the prompt's size in tokens.
            max_output_tokens: The call's ``max_tokens``.

        Raises:
            BudgetExhausted: Before the call, if its worst case does not fit.
        """
        reservation = self.budget.reserve(
            self.tier.worst_case_cost(prompt_tokens, max_output_tokens)
        )
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
