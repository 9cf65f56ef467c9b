"""The calibrated router: learns from verified outcomes where each kind of task should start."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from orchestrator import (
    CalibratedRouter,
    Calibration,
    CapabilityRouter,
    Engine,
    LearningRouter,
    Needs,
    Plan,
    Router,
    Task,
    UserError,
    default_ladder,
)
from orchestrator.cli import main
from orchestrator.models.test import TestModel
from orchestrator.results import Attempt, NodeResult, NodeStatus, Verdict
from orchestrator.routing import RouteRequest, needs_key
from orchestrator.routing.calibration import TierRecord

pytestmark = pytest.mark.anyio

LADDER = default_ladder()
HAIKU, SONNET, OPUS = (tier.name for tier in LADDER.tiers)
MODEL = {tier.name: tier.model for tier in LADDER.tiers}
STRONG = Needs(reasoning=2)  # the rules start these on Sonnet
PLAN = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"


def finished(
    tiers: list[str],
    *,
    passed_last: bool = True,
    cost: float = 0.01,
    needs: Needs = STRONG,
    error_type: str | None = None,
) -> NodeResult:
    """A finished node whose attempts ran on ``tiers`` in turn (only the last may pass)."""
    attempts = []
    for number, tier in enumerate(tiers, start=1):
        last = number == len(tiers)
        passed = passed_last and last
        attempt = Attempt(
            number=number, tier=tier, model=MODEL[tier], started_at=datetime.now(UTC),
            cost_usd=cost, verdict=None if error_type else Verdict(passed=passed),
            error="boom" if error_type else None, error_type=error_type,
        )  # fmt: skip
        attempts.append(attempt)
    status = NodeStatus.SUCCEEDED if passed_last and not error_type else NodeStatus.FAILED
    return NodeResult(id="t", needs=needs, status=status, attempts=attempts)


def teach(router: CalibratedRouter, count: int, tiers: list[str], **kwargs: object) -> None:
    for _ in range(count):
        assert router.observe(finished(tiers, **kwargs))  # type: ignore[arg-type]


def test_it_is_a_learning_router() -> None:
    router = CalibratedRouter()
    assert isinstance(router, Router)
    assert isinstance(router, LearningRouter)
    assert not isinstance(CapabilityRouter(), LearningRouter)


def test_before_any_outcome_it_routes_like_the_capability_rules() -> None:
    router = CalibratedRouter(warmup_explore=0.0, shadow=0.0)  # no 2% shadow draw: flaky
    decision = router.route(RouteRequest(STRONG), LADDER)
    assert LADDER[decision.index].name == SONNET
    assert decision == CapabilityRouter().route(RouteRequest(STRONG), LADDER)


def test_starts_cheaper_when_the_cheap_tier_has_been_verified_as_good_enough() -> None:
    router = CalibratedRouter(min_samples=20, explore=0.0, warmup_explore=0.0)
    teach(router, 40, [HAIKU], cost=0.001)  # Haiku-started nodes: verified, cheap
    teach(router, 40, [SONNET], cost=0.02)
    teach(router, 40, [OPUS], cost=0.04)
    decision = router.route(RouteRequest(STRONG), LADDER)
    assert LADDER[decision.index].name == HAIKU
    assert decision.reason.startswith("calibrated: starting on haiku")
    assert "rules: sonnet" in decision.reason
    assert decision.covered is False  # Haiku does not cover reasoning 2: said, not hidden
    # other needs are a separate bucket: still the rules
    other = router.route(RouteRequest(Needs(reasoning=2, coding=2)), LADDER)
    assert LADDER[other.index].name == SONNET


def test_starts_higher_when_cheap_starts_only_add_escalations() -> None:
    router = CalibratedRouter(min_samples=20, explore=0.0, warmup_explore=0.0)
    teach(router, 40, [HAIKU, SONNET, OPUS], cost=0.02)  # Haiku and Sonnet always rejected
    teach(router, 40, [SONNET, OPUS], cost=0.03)
    teach(router, 40, [OPUS], cost=0.04)
    assert LADDER[router.route(RouteRequest(STRONG), LADDER).index].name == OPUS


def test_a_cheap_start_that_verifies_credibly_less_often_is_not_chosen() -> None:
    router = CalibratedRouter(min_samples=20, explore=0.0, warmup_explore=0.0)
    for number in range(200):  # 60% verified, and very cheap per verified answer
        router.observe(finished([HAIKU], passed_last=number % 5 < 3, cost=0.001))
    teach(router, 200, [SONNET], cost=0.02)  # always verified
    assert LADDER[router.route(RouteRequest(STRONG), LADDER).index].name == SONNET
    # ...unless the user accepts that much less success for the saving
    loose = CalibratedRouter(
        min_samples=20, explore=0.0, warmup_explore=0.0, tolerance=0.5,
        calibration=router.calibration,
    )  # fmt: skip
    assert LADDER[loose.route(RouteRequest(STRONG), LADDER).index].name == HAIKU


def test_warm_up_explores_the_least_observed_tier_and_says_so() -> None:
    router = CalibratedRouter(min_samples=5, warmup_explore=1.0, seed=1)
    teach(router, 5, [SONNET])
    teach(router, 2, [OPUS])
    decision = router.route(RouteRequest(STRONG), LADDER)
    assert LADDER[decision.index].name == HAIKU  # 0 observations
    assert decision.reason.startswith("calibration: exploring haiku")


def test_exploration_is_reproducible_with_a_seed() -> None:
    def picks(seed: int) -> list[int]:
        router = CalibratedRouter(min_samples=50, warmup_explore=0.5, seed=seed)
        return [router.route(RouteRequest(STRONG), LADDER).index for _ in range(200)]

    assert picks(3) == picks(3)
    explored = picks(3).count(0)  # Haiku, never the rules' choice here
    assert 60 < explored < 140  # about half of 200


def test_only_tiers_whose_context_window_fits_are_considered() -> None:
    router = CalibratedRouter(min_samples=1, warmup_explore=1.0, seed=0)
    big = Needs(reasoning=2, context_tokens=LADDER[0].context_window + 1)
    for _ in range(20):
        assert router.route(RouteRequest(big), LADDER).index != 0


def test_outcomes_of_a_replaced_model_are_forgotten() -> None:
    router = CalibratedRouter(min_samples=20, explore=0.0, warmup_explore=0.0)
    stale = TierRecord(model="claude-haiku-old", nodes=500, verified=500, cost_usd=0.5)
    router.calibration.entries[needs_key(STRONG)] = {HAIKU: stale}
    teach(router, 40, [SONNET], cost=0.02)
    assert LADDER[router.route(RouteRequest(STRONG), LADDER).index].name == SONNET
    router.observe(finished([HAIKU], cost=0.001))  # the new model starts a fresh record
    record = router.calibration.entries[needs_key(STRONG)][HAIKU]
    assert (record.model, record.nodes) == (MODEL[HAIKU], 1.0)


def test_old_outcomes_decay_so_routing_follows_a_model_that_changes() -> None:
    router = CalibratedRouter(min_samples=5, explore=0.0, warmup_explore=0.0, decay=0.9)
    teach(router, 100, [HAIKU], cost=0.001)
    teach(router, 100, [SONNET], cost=0.02)
    assert LADDER[router.route(RouteRequest(STRONG), LADDER).index].name == HAIKU
    teach(router, 100, [HAIKU, SONNET], cost=0.021)  # Haiku got worse at this: now rejected
    assert LADDER[router.route(RouteRequest(STRONG), LADDER).index].name == SONNET


def test_only_verified_outcomes_of_model_nodes_are_learned() -> None:
    router = CalibratedRouter()
    assert not router.observe(finished([HAIKU], error_type="rate_limit_error"))
    assert not router.observe(NodeResult(id="t", status=NodeStatus.SKIPPED))
    python = finished([HAIKU])
    python.attempts[0].model = None
    assert not router.observe(python)
    assert router.calibration.entries == {}
    assert router.observe_many([finished([HAIKU]), finished([SONNET], passed_last=False)]) == 2
    records = router.calibration.entries[needs_key(STRONG)]
    assert records[HAIKU].success_rate == 1.0
    assert records[SONNET].success_rate == 0.0


def test_calibration_round_trips_through_json() -> None:
    router = CalibratedRouter(min_samples=10, explore=0.0, warmup_explore=0.0)
    teach(router, 20, [HAIKU], cost=0.001)
    teach(router, 20, [SONNET], cost=0.02)
    saved = router.calibration.model_dump_json()
    again = CalibratedRouter(
        min_samples=10, explore=0.0, warmup_explore=0.0,
        calibration=Calibration.model_validate_json(saved),
    )  # fmt: skip
    assert again.route(RouteRequest(STRONG), LADDER) == router.route(RouteRequest(STRONG), LADDER)
    assert [row["tier"] for row in again.table(LADDER)] == [HAIKU, SONNET]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("min_samples", 0),
        ("tolerance", -0.1),
        ("explore", 1.5),
        ("decay", 0.0),
        ("max_below", -1),
    ],
)
def test_bad_settings_are_refused_by_name(setting: str, value: float) -> None:
    with pytest.raises(UserError, match=setting):
        CalibratedRouter(**{setting: value})  # type: ignore[arg-type]


def test_a_sample_size_the_decay_never_reaches_is_refused() -> None:
    with pytest.raises(UserError, match="at most 20 nodes count"):
        CalibratedRouter(min_samples=20, decay=0.95)


async def test_the_engine_feeds_it_and_later_nodes_start_where_verification_passed() -> None:
    """Haiku's answers to these Sonnet-level tasks pass verification, so after enough
    verified outcomes the engine starts them on Haiku; nothing but the router is told."""
    router = CalibratedRouter(min_samples=10, warmup_explore=0.5, explore=0.0, seed=2)
    engine = Engine(TestModel("a sound answer"), LADDER, router=router)
    plan = Plan(
        goal="many similar tasks",
        tasks=[Task(id=f"t{i}", instruction=f"task {i}", needs=STRONG) for i in range(60)],
    )
    with anyio.fail_after(30):
        first = await engine.run(plan, max_concurrency=1)
        second = await engine.run(plan, max_concurrency=1)
    assert first.status == second.status == "succeeded"
    records = router.calibration.entries[needs_key(STRONG)]
    assert records[HAIKU].nodes >= 10
    assert records[SONNET].nodes >= 10
    starts = [node.attempts[0].tier for node in second.nodes]
    assert starts[-20:] == [HAIKU] * 20
    assert second.cost_usd < first.cost_usd


async def test_where_the_cheap_tier_is_rejected_it_learns_to_start_above_it() -> None:
    router = CalibratedRouter(min_samples=10, warmup_explore=0.5, explore=0.0, seed=2)
    engine = Engine(TestModel("a sound answer", by_tier={HAIKU: ""}), LADDER, router=router)
    plan = Plan(
        goal="tasks Haiku cannot do",
        tasks=[Task(id=f"t{i}", instruction=f"t {i}", needs=Needs()) for i in range(60)],
    )  # the rules start these on Haiku; its empty answers are rejected
    with anyio.fail_after(30):
        await engine.run(plan, max_concurrency=1)
        second = await engine.run(plan, max_concurrency=1)
    starts = [node.attempts[0].tier for node in second.nodes]
    assert starts[-20:] == [SONNET] * 20
    assert all(node.status == "succeeded" for node in second.nodes)


def test_the_cli_learns_from_the_runs_in_the_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routing"]) == 0
    assert "nothing learned yet" in capsys.readouterr().out
    for _ in range(2):
        assert main(["run", "--offline", "--plan", str(PLAN), "--json"]) == 0
    capsys.readouterr()
    assert main(["routing", "--json"]) == 0
    learned = json.loads(capsys.readouterr().out)
    nodes = len(json.loads(PLAN.read_text())["tasks"])
    assert learned["nodes_counted"] == 2 * nodes  # every node of both runs was verified
    assert {row["tier"] for row in learned["rows"]} <= {HAIKU, SONNET, OPUS}
    assert sum(row["nodes"] for row in learned["rows"]) == 2 * nodes
    assert all(row["start"] for row in learned["rows"])  # one tier seen per kind: the rules'

    assert main(["run", "--offline", "--plan", str(PLAN), "--router", "calibrated"]) == 0
    assert f"routing: calibrated from {2 * nodes} verified nodes" in capsys.readouterr().err
    assert main(["routing"]) == 0
    table = capsys.readouterr().out
    assert f"learned from {3 * nodes} verified nodes" in table
    assert "*" in table


def test_it_starts_at_most_max_below_tiers_under_the_rules() -> None:
    """A lenient verifier can make the cheapest start look best; by default a node starts
    at most one tier under the rules' choice, explored or decided."""
    hard = Needs(reasoning=3)  # the rules start these on Opus
    bounded = CalibratedRouter(min_samples=20, explore=0.0, warmup_explore=0.0)
    for tiers, cost in (([HAIKU], 0.001), ([SONNET], 0.02), ([OPUS], 0.04)):
        for _ in range(40):
            bounded.observe(finished(tiers, cost=cost, needs=hard))
    assert LADDER[bounded.route(RouteRequest(hard), LADDER).index].name == SONNET
    free = CalibratedRouter(
        min_samples=20, explore=0.0, warmup_explore=0.0, max_below=None,
        calibration=bounded.calibration,
    )  # fmt: skip
    assert LADDER[free.route(RouteRequest(hard), LADDER).index].name == HAIKU
    exploring = CalibratedRouter(min_samples=20, warmup_explore=1.0, seed=0)
    assert {LADDER[exploring.route(RouteRequest(hard), LADDER).index].name for _ in range(30)} == {
        SONNET
    }


def test_a_tier_with_nothing_verified_shows_no_cost_per_verified_answer() -> None:
    router = CalibratedRouter()
    router.observe(finished([HAIKU], passed_last=False, cost=0.001))
    (row,) = router.table(LADDER)
    assert row["cost_per_verified_usd"] is None
    json.dumps(row, allow_nan=False)  # valid JSON for `orchestrator routing --json`


def test_where_every_start_tried_never_verified_it_tries_the_next_tier_up() -> None:
    """Issue 14, 10b: six runs of six nodes each, every Sonnet start escalated to Opus and
    none verified; the router kept starting on Sonnet ("$inf per verified answer")."""
    router = CalibratedRouter(explore=0.0, warmup_explore=0.0, decay=1.0)  # min_samples 30
    for _run in range(6):
        teach(router, 6, [SONNET, OPUS], passed_last=False)
    decision = router.decide(RouteRequest(STRONG), LADDER)
    assert LADDER[decision.index].name == OPUS
    assert "not yet tried as a start" in decision.reason
    assert "sonnet: 0 of 36" in decision.reason
    assert "inf" not in decision.reason
    assert decision.covered
    starts = [row for row in router.table(LADDER) if row["start"]]
    assert [(row["tier"], row["verified"]) for row in starts] == [(OPUS, None)]
    # once Opus has been tried as often and verifies, it is the calibrated start
    teach(router, 30, [OPUS])
    decision = router.decide(RouteRequest(STRONG), LADDER)
    assert decision.reason.startswith("calibrated: starting on opus, $")


def test_when_nothing_above_is_untried_it_tries_below_within_max_below() -> None:
    hard = Needs(reasoning=3)  # the rules start these on Opus, the top tier
    router = CalibratedRouter(explore=0.0, warmup_explore=0.0, min_samples=10, decay=1.0)
    teach(router, 10, [OPUS], passed_last=False, needs=hard)
    assert (
        LADDER[router.decide(RouteRequest(hard), LADDER).index].name == SONNET
    )  # one under the rules
    teach(router, 10, [SONNET, OPUS], passed_last=False, needs=hard)
    # every tier it may start on was tried and none verified: the cheaper start, and not
    # Haiku, two under the rules (max_below=1)
    assert LADDER[router.decide(RouteRequest(hard), LADDER).index].name == SONNET
    some = CalibratedRouter(explore=0.0, warmup_explore=0.0, min_samples=10, decay=1.0)
    teach(some, 9, [SONNET, OPUS], passed_last=False)
    teach(some, 1, [SONNET])  # one verified: the usual rule, not a jump
    assert LADDER[some.decide(RouteRequest(STRONG), LADDER).index].name == SONNET


def test_escalations_that_verify_above_are_evidence_for_starting_there() -> None:
    """Every Sonnet start is rejected and then verified on Opus: Sonnet's record says 100%
    verified, at the price of both attempts. Opus was never a start, but the escalations
    that reached it show a start there verifies for the Opus attempt alone."""
    router = CalibratedRouter(explore=0.0, warmup_explore=0.0, decay=1.0)
    teach(router, 40, [SONNET, OPUS], cost=0.01)
    decision = router.decide(RouteRequest(STRONG), LADDER)
    assert LADDER[decision.index].name == OPUS
    assert "$0.01 per verified answer" in decision.reason
    assert "40 of them escalated to it" in decision.reason
    records = router.calibration.entries[needs_key(STRONG)]
    assert (records[OPUS].nodes, records[OPUS].escalated) == (0.0, 40.0)
    assert records[OPUS].escalated_cost_usd == pytest.approx(0.4)  # from Opus on


async def test_the_engine_moves_a_start_where_nothing_verified_up_a_tier() -> None:
    """The 6-runs scenario through the engine: Sonnet's and Opus's answers are rejected."""
    router = CalibratedRouter(explore=0.0, warmup_explore=0.0)
    engine = Engine(TestModel(""), LADDER, router=router)
    plan = Plan(
        goal="tasks nothing gets right",
        tasks=[Task(id=f"t{i}", instruction=f"t {i}", needs=STRONG) for i in range(6)],
    )
    starts: list[str] = []
    with anyio.fail_after(30):
        for _run in range(6):
            ran = await engine.run(plan, max_concurrency=1)
            starts += [node.attempts[0].tier for node in ran.nodes]
        seventh = await engine.run(plan, max_concurrency=1)
    assert starts[:30] == [SONNET] * 30  # the rules, until Sonnet has its 30 samples
    assert SONNET not in starts[starts.index(OPUS) :]  # then Opus, and it stays tried
    assert [node.attempts[0].tier for node in seventh.nodes] == [OPUS] * 6


async def test_the_engine_learns_to_start_where_escalations_verify() -> None:
    router = CalibratedRouter(min_samples=10, explore=0.0, warmup_explore=0.0)
    engine = Engine(TestModel("a sound answer", by_tier={SONNET: ""}), LADDER, router=router)
    plan = Plan(
        goal="tasks only Opus gets right",
        tasks=[Task(id=f"t{i}", instruction=f"t {i}", needs=STRONG) for i in range(12)],
    )
    with anyio.fail_after(30):
        first = await engine.run(plan, max_concurrency=1)
        second = await engine.run(plan, max_concurrency=1)
    assert [node.attempts[0].tier for node in first.nodes][:10] == [SONNET] * 10
    assert [node.attempts[0].tier for node in second.nodes] == [OPUS] * 12
    assert second.status == "succeeded"
    assert second.cost_usd < first.cost_usd
