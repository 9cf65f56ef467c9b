"""The run budget: reserve the worst case before each call, settle to the real cost after.

Reserving before the call is what makes ``cost <= budget`` hold under concurrency: a call
is only sent when its worst case (its prompt priced at the dearest input rate plus its full
``max_tokens`` of output) fits in what is neither spent nor reserved by calls in flight.

Money is exact (:class:`~decimal.Decimal`), so a reservation released is released to the
last digit and a budget with nothing in flight has nothing reserved. A call whose worst case
does not fit:

* fails at once with :class:`~orchestrator.exceptions.BudgetExhausted` when it could not fit
  even if every call in flight cost nothing: what is spent only grows, so it never will;
* otherwise waits for calls in flight to settle (they usually cost far less than their worst
  case), and is then admitted or refused.

The first refusal marks the budget exhausted: the run launches no more work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal

import anyio

from orchestrator.exceptions import BudgetExhausted
from orchestrator.pricing import ZERO_USD, Usage, to_usd
from orchestrator.results import Attempt, BatchCall
from orchestrator.tiers import Tier

__all__ = ["Budget", "CallTicket", "Meter", "Reservation", "collect_earlier", "resuming"]


@dataclass(slots=True)
class Reservation:
    """Money set aside for one call in flight."""

    amount_usd: Decimal
    settled: bool = False


class Budget:
    """A run's spending limit in USD, shared by every call of the run (planning included).

    Args:
        limit_usd: The most the run may spend; ``None`` for no limit. Floats are taken as
            their shortest decimal form (``0.1`` is exactly 0.1).
        spent_usd: What was already spent (e.g. before a resume).

    Raises:
        ValueError: If ``limit_usd`` or ``spent_usd`` is negative or not a finite number.
    """

    def __init__(
        self,
        limit_usd: Decimal | float | None = None,
        *,
        spent_usd: Decimal | float = ZERO_USD,
    ) -> None:
        limit = None if limit_usd is None else _amount(limit_usd, "budget")
        self.limit_usd: Decimal | None = limit
        self.spent_usd: Decimal = _amount(spent_usd, "spent")
        self.reserved_usd: Decimal = ZERO_USD
        self.exhausted = False
        """Set once a reservation was refused: the run stops launching work."""
        self._settled = anyio.Event()

    @property
    def remaining_usd(self) -> Decimal | None:
        """What can still be reserved now; ``None`` without a limit."""
        if self.limit_usd is None:
            return None
        return max(ZERO_USD, self.limit_usd - self.spent_usd - self.reserved_usd)

    @property
    def unspent_usd(self) -> Decimal | None:
        """What is not spent (reservations may still hold some of it); ``None``: no limit."""
        if self.limit_usd is None:
            return None
        return max(ZERO_USD, self.limit_usd - self.spent_usd)

    def fits(self, amount_usd: Decimal) -> bool:
        """Whether ``amount_usd`` could be reserved now."""
        remaining = self.remaining_usd
        return remaining is None or amount_usd <= remaining

    def reserve(self, amount_usd: Decimal) -> Reservation:
        """Set aside ``amount_usd`` for a call now, or refuse.

        Raises:
            BudgetExhausted: If the remaining budget cannot cover ``amount_usd``.
            ValueError: If ``amount_usd`` is negative or not a finite number.
        """
        amount = _amount(amount_usd, "reservation")
        if not self.fits(amount):
            self.exhausted = True
            raise BudgetExhausted(amount, self.remaining_usd or ZERO_USD)
        self.reserved_usd += amount
        return Reservation(amount)

    async def acquire(self, amount_usd: Decimal) -> Reservation:
        """Set aside ``amount_usd``, waiting for calls in flight to settle if that can help.

        Raises:
            BudgetExhausted: At once if ``amount_usd`` does not fit even if every call in
                flight cost nothing, or the budget was already exhausted; after waiting, if
                it still does not fit once those calls settled.
        """
        amount = _amount(amount_usd, "reservation")
        while not self.fits(amount) and self._may_fit_later(amount):
            await self._settled.wait()
        return self.reserve(amount)

    def _may_fit_later(self, amount: Decimal) -> bool:
        unspent = self.unspent_usd
        return (
            not self.exhausted and self.reserved_usd > 0 and (unspent is None or amount <= unspent)
        )

    def carry(self, amount_usd: Decimal) -> Reservation:
        """Hold again, as a reservation, ``amount_usd`` that was counted as spent.

        A call an earlier process left waiting in a Message Batch was counted at its worst
        case; the resumed run reads its result and settles it to what it really cost.
        """
        amount = _amount(amount_usd, "carried amount")
        self.spent_usd -= amount
        self.reserved_usd += amount
        return Reservation(amount)

    def settle(self, reservation: Reservation, actual_usd: Decimal) -> None:
        """Release a reservation and record what the call really cost."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd -= reservation.amount_usd
        self.spent_usd += _amount(actual_usd, "cost")
        self._settled.set()
        self._settled = anyio.Event()


def _amount(value: Decimal | float, what: str) -> Decimal:
    try:
        amount = to_usd(value)
    except (ValueError, ArithmeticError):
        raise ValueError(f"{what} must be a finite number of USD, not {value!r}") from None
    if amount < 0:
        raise ValueError(f"{what} must be a non-negative number of USD, not {value!r}")
    return amount


@dataclass(slots=True)
class CallTicket:
    """Filled in by the model client with the usage the API reported for one call."""

    usage: Usage | None = None
    """``None`` when the call failed before the API reported usage."""
    may_be_billed: bool = False
    """Set by the client when a call without usage may still have been billed: the request
    may have reached the server and its answer was not read (a timeout or a dropped
    connection after sending, a body that did not parse, a cancelled call). It then counts
    as its reserved worst case, an upper bound; otherwise (an error answer, a refused
    connection) as nothing."""
    batch: bool = False
    """The call is sent in a Message Batch (priced at the tier's ``batch_price``)."""
    custom_id: str | None = None
    """A batch call's id in its batch."""
    batch_id: str | None = None
    """The batch holding the call: set by :meth:`Meter.batched` once it is submitted, or
    on entry when an earlier process left this very call waiting in a batch (the client
    then reads that batch instead of submitting again)."""
    reserved_usd: Decimal = ZERO_USD
    """The worst case the budget holds for the call."""


SpendHook = Callable[["Meter"], Awaitable[None]]
"""Awaited with a meter once a call's worst case is reserved (before the request is sent),
or once a call is settled."""
AdoptHook = Callable[[BatchCall], Awaitable[None]]
"""Awaited when a call is collected from a batch an earlier process submitted."""


@dataclass(slots=True)
class Meter:
    """Budget gate and usage tally for the model calls of one attempt on one tier.

    Model clients wrap every HTTP request they send in ``async with meter.call(...)``, so
    the budget holds however many calls a tool loop makes.

    Attributes:
        in_flight_usd: The worst case reserved by this meter's calls now in flight. If the
            process dies, that much may have been billed: the store keeps it (through
            ``on_reserve``) and counts it as spent, an upper bound, until known otherwise.
        on_reserve: Awaited after a call is reserved and before it is sent; the engine
            records the attempt's spend there, so a call's worst case is durable before
            the request leaves.
        on_settle: Awaited after a call is settled (its cost spent), even when it failed.
    """

    tier: Tier
    budget: Budget
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = ZERO_USD
    calls: int = 0
    in_flight_usd: Decimal = ZERO_USD
    on_reserve: SpendHook | None = None
    cost_unknown: bool = False
    """Set once a call that may have been billed returned no usage: ``cost_usd`` counts its
    worst case, so it is an upper bound."""
    cache_saving_usd: Decimal = ZERO_USD
    """What prompt caching saved on these calls: their cost had nothing been cached, less
    their cost (negative when cache writes were never read back)."""
    batch_calls: int = 0
    """Calls sent in Message Batches."""
    batch_saving_usd: Decimal = ZERO_USD
    """What batching saved: the batched calls' cost one by one, less their batch cost."""
    pending: list[BatchCall] = field(default_factory=list)
    """Calls waiting in a Message Batch now (recorded through ``on_reserve`` when sent)."""
    earlier: dict[str, BatchCall] = field(default_factory=dict)
    """Calls an earlier process of the run left waiting in a batch, by ``custom_id``."""
    on_adopt: AdoptHook | None = None
    """Awaited when a call is collected from one of :attr:`earlier`."""
    answered: anyio.Event | None = None
    """Set once a call of this meter has settled (its answer, and what it wrote to the
    prompt cache, are there: calls waiting to read that prefix go on)."""
    on_settle: SpendHook | None = None

    @asynccontextmanager
    async def call(
        self,
        prompt_tokens: int,
        max_output_tokens: int,
        extra_usd: Decimal = ZERO_USD,
        *,
        batch: str | None = None,
        one_hour: bool = False,
    ) -> AsyncIterator[CallTicket]:
        """Reserve the worst case of one call, then settle to its real usage.

        Args:
            prompt_tokens: An upper estimate of the prompt's size in tokens.
            max_output_tokens: The call's ``max_tokens``.
            extra_usd: The most the call can cost beyond tokens (server-side tool fees).
            batch: For a call sent in a Message Batch, its ``custom_id``: the call is
                priced at the tier's ``batch_price``, and one an earlier process left
                waiting under this id is collected, not sent again (``ticket.batch_id``).
            one_hour: The call marks a 1-hour cache breakpoint (its writes may cost 2x).

        Raises:
            BudgetExhausted: Before the call, if its worst case does not fit.
        """
        worst_case = self.tier.worst_case_cost(prompt_tokens, max_output_tokens, one_hour=one_hour)
        if batch is not None:
            worst_case *= self.tier.batch_price
        ticket = CallTicket(batch=batch is not None, custom_id=batch)
        earlier = self.earlier.pop(batch, None) if batch is not None else None
        if earlier is not None:  # its worst case was counted as spent: hold it again
            reservation = self.budget.carry(earlier.reserved_usd)
            ticket.batch_id = earlier.batch_id
            self.pending.append(earlier)
            if self.on_adopt is not None:
                await self.on_adopt(earlier)
        else:
            reservation = await self.budget.acquire(worst_case + extra_usd)
        ticket.reserved_usd = reservation.amount_usd
        self.in_flight_usd += reservation.amount_usd
        try:
            if self.on_reserve is not None:
                await self.on_reserve(self)
            yield ticket
        finally:
            self.in_flight_usd -= reservation.amount_usd
            self.pending = [c for c in self.pending if c.custom_id != ticket.custom_id]
            self.record(
                reservation, ticket.usage, may_be_billed=ticket.may_be_billed, batch=ticket.batch
            )
            if self.on_settle is not None:
                with anyio.CancelScope(shield=True):  # reported even as the call is cancelled
                    await self.on_settle(self)

    async def batched(self, ticket: CallTicket, batch_id: str) -> None:
        """Note that the call of ``ticket`` waits in batch ``batch_id``; durable on return.

        The client awaits this after the batch is created and before it awaits results,
        so a process that dies meanwhile leaves the batch id stored for ``resume``.
        """
        ticket.batch_id = batch_id
        assert ticket.custom_id is not None, "a batch call has a custom_id"
        self.pending.append(BatchCall(batch_id=batch_id, custom_id=ticket.custom_id,
                                      reserved_usd=ticket.reserved_usd))  # fmt: skip
        if self.on_reserve is not None:
            await self.on_reserve(self)

    def record(
        self,
        reservation: Reservation,
        usage: Usage | None,
        *,
        may_be_billed: bool = False,
        batch: bool = False,
    ) -> None:
        """Settle ``reservation`` with ``usage`` and add it to this meter's tally.

        Without usage, the call costs nothing, or its worst case if it ``may_be_billed``.
        A ``batch`` call is priced at the tier's ``batch_price``.
        """
        if usage is not None:
            price = self.tier.batch_cost if batch else self.tier.cost
            cost = price(usage)
            self.usage = self.usage + usage
            if usage.cache_write_tokens or usage.cache_read_tokens:
                self.cache_saving_usd += price(usage.uncached()) - cost
            if batch:
                self.batch_saving_usd += self.tier.cost(usage) - cost
        elif may_be_billed:
            cost, self.cost_unknown = reservation.amount_usd, True
        else:
            cost = ZERO_USD
        self.budget.settle(reservation, cost)
        if self.answered is not None:
            self.answered.set()
        self.calls += 1
        self.batch_calls += batch
        self.cost_usd += cost


_RESUMED: ContextVar[tuple[Attempt, ...]] = ContextVar("resumed_batch_calls", default=())


@contextmanager
def resuming(attempts: Sequence[Attempt]) -> Iterator[None]:
    """Within it, :func:`collect_earlier` finds the batch calls ``attempts`` left waiting.

    For callers that make their own meters (a planner, planning again after a crash):
    a call it makes again is collected from its batch, not sent twice.
    """
    token = _RESUMED.set(tuple(a for a in attempts if a.batch_pending))
    try:
        yield
    finally:
        _RESUMED.reset(token)


def collect_earlier(
    meter: Meter,
    recorded: Callable[[Attempt], Awaitable[None]],
    attempts: Sequence[Attempt] | None = None,
) -> None:
    """Let ``meter`` collect the batch calls ``attempts`` left waiting (default: resuming's).

    A call collected moves from the attempt that sent it (its cost drops by the call's
    worst case, and ``recorded`` is awaited with it) to ``meter``.
    """
    left = _RESUMED.get() if attempts is None else attempts
    sent = {c.custom_id: a for a in left for c in a.batch_pending}
    if not sent:
        return
    meter.earlier = {c.custom_id: c for a in left for c in a.batch_pending}

    async def adopt(call: BatchCall) -> None:
        attempt = sent.pop(call.custom_id)
        attempt.batch_pending = tuple(c for c in attempt.batch_pending if c != call)
        attempt.cost_usd -= call.reserved_usd
        await recorded(attempt)

    meter.on_adopt = adopt
