"""The run budget: reserve the worst case before a call, settle to the real cost after."""

from __future__ import annotations

import math
from decimal import Decimal

import anyio
import pytest

from orchestrator import Budget, BudgetExhausted, RunError, Usage, default_ladder
from orchestrator.budget import CallTicket, Meter

SONNET = default_ladder().get("sonnet")


# --- Budget ------------------------------------------------------------------------------------


def test_reserve_and_settle_arithmetic() -> None:
    budget = Budget(1.0)
    assert budget.remaining_usd == 1.0
    first = budget.reserve(0.25)
    second = budget.reserve(0.5)
    assert budget.reserved_usd == Decimal("0.75")
    assert budget.remaining_usd == Decimal("0.25")
    assert budget.spent_usd == 0.0

    budget.settle(first, 0.05)
    assert budget.reserved_usd == Decimal("0.5")
    assert budget.spent_usd == Decimal("0.05")
    assert budget.remaining_usd == Decimal("0.45")

    budget.settle(second, 0.5)
    assert budget.reserved_usd == Decimal("0.0")
    assert budget.spent_usd == Decimal("0.55")
    assert budget.remaining_usd == Decimal("0.45")
    assert budget.exhausted is False


def test_reserve_exactly_the_remainder() -> None:
    budget = Budget(0.5, spent_usd=0.25)
    budget.reserve(0.25)
    assert budget.remaining_usd == 0.0
    assert budget.exhausted is False


def test_reserve_beyond_remaining_raises_and_marks_exhausted() -> None:
    budget = Budget(1.0)
    held = budget.reserve(0.75)
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(0.5)
    error = info.value
    assert isinstance(error, RunError)
    assert error.needed_usd == 0.5
    assert error.remaining_usd == Decimal("0.25")
    assert "0.500000" in str(error)
    assert "0.250000" in str(error)
    assert budget.exhausted is True
    # The refused reservation holds nothing.
    assert budget.reserved_usd == Decimal("0.75")
    budget.settle(held, 0.1)
    assert budget.spent_usd == Decimal("0.1")


def test_spent_before_a_resume_counts() -> None:
    budget = Budget(1.0, spent_usd=0.9)
    assert budget.remaining_usd == Decimal("0.1")
    with pytest.raises(BudgetExhausted):
        budget.reserve(0.2)


def test_remaining_never_goes_negative() -> None:
    budget = Budget(1.0)
    reservation = budget.reserve(0.5)
    budget.settle(reservation, 3.0)  # the real cost overshot the estimate
    assert budget.spent_usd == 3.0
    assert budget.remaining_usd == 0.0


def test_settle_is_idempotent() -> None:
    budget = Budget(1.0)
    reservation = budget.reserve(0.5)
    other = budget.reserve(0.25)
    budget.settle(reservation, 0.125)
    budget.settle(reservation, 0.125)
    budget.settle(reservation, 0.9)
    assert budget.spent_usd == 0.125
    assert budget.reserved_usd == Decimal("0.25")  # other's reservation still held
    assert reservation.settled is True
    assert other.settled is False


def test_no_limit_never_exhausts() -> None:
    budget = Budget()
    assert budget.remaining_usd is None
    reservation = budget.reserve(Decimal(10**9))
    budget.settle(reservation, Decimal(123))
    assert budget.spent_usd == 123
    assert budget.remaining_usd is None
    assert budget.exhausted is False


def test_zero_budget_allows_only_free_calls() -> None:
    budget = Budget(0.0)
    budget.reserve(0.0)
    with pytest.raises(BudgetExhausted):
        budget.reserve(1e-9)


@pytest.mark.parametrize("limit", [-0.01, -1.0, math.nan, -math.inf, math.inf, Decimal("NaN")])
def test_negative_or_nan_limit_is_rejected(limit: float | Decimal) -> None:
    with pytest.raises(ValueError, match=r"budget must be a (finite|non-negative) number"):
        Budget(limit)


# --- acquire: waiting for calls in flight -------------------------------------------------------


@pytest.mark.anyio
async def test_acquire_waits_for_calls_in_flight_to_settle() -> None:
    budget = Budget(1.0)
    in_flight = budget.reserve(0.75)
    acquired: list[float] = []

    async def next_call() -> None:
        reservation = await budget.acquire(0.5)
        acquired.append(reservation.amount_usd)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(next_call)
            await anyio.wait_all_tasks_blocked()
            assert acquired == []  # 0.5 does not fit beside the 0.75 in flight
            budget.settle(in_flight, 0.125)
    assert acquired == [0.5]
    assert budget.remaining_usd == Decimal("0.375")
    assert budget.exhausted is False


@pytest.mark.anyio
async def test_acquire_raises_when_it_cannot_fit_even_with_nothing_in_flight() -> None:
    budget = Budget(1.0)
    in_flight = budget.reserve(0.5)
    errors: list[BudgetExhausted] = []

    async def next_call() -> None:
        try:
            await budget.acquire(0.95)
        except BudgetExhausted as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(next_call)
            await anyio.wait_all_tasks_blocked()
            assert errors == []
            budget.settle(in_flight, 0.25)
    (error,) = errors
    assert error.remaining_usd == Decimal("0.75")
    assert budget.exhausted is True


@pytest.mark.anyio
async def test_acquire_without_anything_in_flight_fails_at_once() -> None:
    budget = Budget(0.1)
    with anyio.fail_after(5), pytest.raises(BudgetExhausted):
        await budget.acquire(0.2)
    assert budget.exhausted is True


# --- Meter ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_meter_reserves_the_worst_case_then_settles_to_real_usage() -> None:
    budget = Budget(10.0)
    meter = Meter(tier=SONNET, budget=budget)
    worst = SONNET.worst_case_cost(20_000, 1_000)
    usage = Usage(input_tokens=15_000, output_tokens=300, cache_read_tokens=2_000)

    async with meter.call(20_000, 1_000) as ticket:
        assert isinstance(ticket, CallTicket)
        assert ticket.usage is None
        assert budget.reserved_usd == worst
        assert budget.remaining_usd == Decimal(10) - worst
        ticket.usage = usage

    real = SONNET.cost(usage)
    assert real < worst
    assert budget.reserved_usd == Decimal("0.0")
    assert budget.spent_usd == real
    assert meter.cost_usd == real
    assert meter.usage == usage
    assert meter.calls == 1


@pytest.mark.anyio
async def test_meter_tallies_several_calls() -> None:
    budget = Budget(10.0)
    meter = Meter(tier=SONNET, budget=budget)
    first = Usage(input_tokens=1000, output_tokens=100)
    second = Usage(input_tokens=2000, output_tokens=50, cache_write_tokens=500)
    for usage in (first, second):
        async with meter.call(5000, 500) as ticket:
            ticket.usage = usage
    assert meter.calls == 2
    assert meter.usage == first + second
    assert meter.cost_usd == pytest.approx(SONNET.cost(first) + SONNET.cost(second))
    assert budget.spent_usd == pytest.approx(meter.cost_usd)


@pytest.mark.anyio
async def test_failed_call_settles_at_zero_cost_and_the_error_propagates() -> None:
    budget = Budget(10.0)
    meter = Meter(tier=SONNET, budget=budget)

    tickets: list[CallTicket] = []

    class Boom(Exception):
        pass

    async def failing_call() -> None:
        async with meter.call(20_000, 1_000) as ticket:
            tickets.append(ticket)
            assert budget.reserved_usd > 0
            raise Boom("connection reset")

    with pytest.raises(Boom, match="connection reset"):
        await failing_call()

    assert [ticket.usage for ticket in tickets] == [None]
    assert budget.reserved_usd == Decimal("0.0")
    assert budget.spent_usd == 0.0
    assert budget.remaining_usd == Decimal("10.0")
    assert meter.cost_usd == 0.0
    assert meter.usage == Usage()
    assert meter.calls == 1


@pytest.mark.anyio
async def test_call_that_failed_after_usage_was_reported_is_still_billed() -> None:
    budget = Budget(10.0)
    meter = Meter(tier=SONNET, budget=budget)
    usage = Usage(input_tokens=1000, output_tokens=10)

    async def call_failing_after_usage() -> None:
        async with meter.call(1000, 100) as ticket:
            ticket.usage = usage
            raise RuntimeError("stream broke after usage arrived")

    with pytest.raises(RuntimeError, match="stream broke"):
        await call_failing_after_usage()
    assert budget.spent_usd == pytest.approx(SONNET.cost(usage))
    assert meter.usage == usage


@pytest.mark.anyio
async def test_meter_refuses_a_call_whose_worst_case_does_not_fit() -> None:
    worst = SONNET.worst_case_cost(100_000, 8192)
    budget = Budget(worst / 2)
    meter = Meter(tier=SONNET, budget=budget)
    entered = False
    with pytest.raises(BudgetExhausted) as info:
        async with meter.call(100_000, 8192):
            entered = True
    assert entered is False
    assert info.value.needed_usd == pytest.approx(worst)
    assert budget.exhausted is True
    assert budget.spent_usd == 0.0
    assert meter.calls == 0


# --- exact money: nothing left over, nothing waits for ever ------------------------------------


@pytest.mark.anyio
async def test_reservations_released_leave_exactly_nothing_reserved() -> None:
    # In floats, 0.1 + 0.2 + 0.3 - 0.1 - 0.2 - 0.3 is 5.55e-17, not 0: a call that did not
    # fit then waited for ever for "calls in flight" that did not exist.
    budget = Budget(0.027826550000000002)
    held = [budget.reserve(Decimal(amount)) for amount in ("0.001", "0.002", "0.003")]
    for reservation, cost in zip(held, ("0.0001", "0.0002", "0.0003"), strict=True):
        budget.settle(reservation, Decimal(cost))
    assert budget.reserved_usd == 0
    assert budget.spent_usd == Decimal("0.0006")
    with anyio.fail_after(5), pytest.raises(BudgetExhausted):
        await budget.acquire(Decimal("0.03"))


@pytest.mark.anyio
async def test_a_call_that_can_never_fit_fails_at_once_despite_calls_in_flight() -> None:
    budget = Budget(Decimal("1.0"), spent_usd=Decimal("0.5"))
    budget.reserve(Decimal("0.25"))  # in flight, and never settled in this test
    with anyio.fail_after(5), pytest.raises(BudgetExhausted):
        await budget.acquire(Decimal("0.6"))  # 0.6 > 0.5 unspent: settling cannot help
    assert budget.exhausted is True


def test_amounts_are_exact_decimals() -> None:
    budget = Budget(0.3)
    assert budget.limit_usd == Decimal("0.3")  # a float is read as its shortest form
    reservation = budget.reserve(0.1)
    assert reservation.amount_usd == Decimal("0.1")
    budget.settle(reservation, 0.2)
    assert budget.remaining_usd == Decimal("0.1")


@pytest.mark.anyio
async def test_the_meter_reports_a_calls_worst_case_before_it_is_sent() -> None:
    budget = Budget(10.0)
    seen: list[tuple[Decimal, Decimal]] = []

    async def reserved(meter: Meter) -> None:
        seen.append((meter.in_flight_usd, budget.reserved_usd))

    meter = Meter(tier=SONNET, budget=budget, on_reserve=reserved)
    worst = SONNET.worst_case_cost(1_000, 500)
    async with meter.call(1_000, 500) as ticket:
        assert seen == [(worst, worst)]  # recorded before the body runs (before the send)
        ticket.usage = Usage(input_tokens=900, output_tokens=100)
    assert meter.in_flight_usd == 0
    assert meter.cost_usd == SONNET.cost(Usage(input_tokens=900, output_tokens=100))
