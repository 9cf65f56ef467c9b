"""Learned routing: :class:`CalibratedRouter` starts each kind of task where it pays.

From the verified outcomes of finished nodes (its
:class:`~orchestrator.routing.calibration.Calibration`, fed by
:mod:`orchestrator.routing.learning`), it starts each kind of task on the tier that has
been cheapest for it without losing success, and keeps relearning as models change.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orchestrator.capabilities import Needs
from orchestrator.exceptions import UserError
from orchestrator.results import NodeResult
from orchestrator.routing.calibration import Calibration, TierRecord, needs_key
from orchestrator.routing.learning import learn_from_store, record_outcome
from orchestrator.routing.rules import CapabilityRouter, RouteDecision, Router, RouteRequest
from orchestrator.tiers import TierLadder

if TYPE_CHECKING:
    from orchestrator.store.base import RunStore

__all__ = ["CalibratedRouter"]


class CalibratedRouter:
    """Learns from verified outcomes which tier each kind of task should start on.

    Tasks are bucketed by their capability levels (:func:`needs_key`). For each bucket and
    each tier the router keeps what the nodes that *started* there cost in all (escalations
    included) and how often they ended with a verified answer. It then starts a node on
    the tier with the lowest cost per verified answer among those whose verified rate is
    not credibly below that of the tier ``prior`` picks (its Wilson upper bound reaches
    that rate minus ``tolerance``): never credibly worse than the rules, as cheap as the
    evidence allows. So a bucket whose nodes Haiku usually gets right starts on Haiku even
    if the planner asked for Sonnet, and one where cheap starts only add escalations starts
    high. Verification is what makes this safe to learn: a cheap start that fails is caught
    and escalated, and what that cost is what the router learns from. What it cannot see is
    a wrong answer a verifier accepted; a start with more attempts gets more such chances,
    which is why the rule ranks by cost and does not chase the highest verified rate.

    Two rules keep it from staying where nothing verifies. When every tier a bucket's nodes
    have started on (``min_samples`` times) has never ended verified, the next node starts
    on a tier not yet tried as a start: the cheapest above those tried (preferring one where
    escalations from below ended verified), else the nearest below within ``max_below``.
    And a tier with too few starts of its own borrows the evidence of the escalations that
    reached it (counted from their first attempt there on), so that when starts below it
    mostly end up verified on it, starting on it directly competes on cost; ``prior``'s own
    tier is judged on its starts only (its rate is the floor).

    Until ``min_samples`` nodes of a bucket have been seen on a tier, that tier is only
    explored: a share ``warmup_explore`` of the bucket's nodes goes to its least-observed
    tier, the rest follow ``prior`` (the capability rules by default). Afterwards a small
    share ``explore`` still goes to the least-observed tier, and old outcomes decay by
    ``decay`` per new observation of the same tier (0.998: the last ~500 count most), so
    routing follows models as they change. A record whose tier now runs another model is
    discarded. Only tiers whose context window fits the task, and at most ``max_below``
    under the rules' choice, are considered.

    Feed it with :meth:`observe` (the engine does so for every finished node when this
    router is its router), warm it from recorded runs with :meth:`learn_from_store` (or
    :meth:`observe_many`), and keep it across processes with :attr:`calibration` /
    ``CalibratedRouter(calibration=...)``.

    Args:
        prior: Routes buckets not yet calibrated; default :class:`CapabilityRouter`.
        min_samples: Nodes a tier needs in a bucket before the router relies on it.
        tolerance: How much verified success (a share, 0.02 = two points) the router may
            give up for a cheaper start.
        explore: Share of calibrated nodes sent to the least-observed tier.
        warmup_explore: Share of a bucket's nodes explored while any tier lacks samples.
        decay: Weight kept by older outcomes per new one (1.0: never forget).
        max_below: How many tiers under the rules' choice a node may start (``None``: any).
            Learned routing trusts the verifier; one tier keeps a lenient verifier's false
            accepts from teaching it to start hard tasks on the cheapest tier.
        seed: Seed of the exploration draws (reproducible routing).
        calibration: Memory to start from (e.g. loaded from JSON).
    """

    def __init__(
        self,
        prior: Router | None = None,
        *,
        min_samples: int = 30,
        tolerance: float = 0.02,
        explore: float = 0.02,
        warmup_explore: float = 0.2,
        decay: float = 0.998,
        max_below: int | None = 1,
        seed: int | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        if min_samples < 1:
            raise UserError(f"min_samples must be at least 1, got {min_samples}")
        if max_below is not None and max_below < 0:
            raise UserError(f"max_below must be 0 or more (or None: no limit), got {max_below}")
        for name, share in (
            ("tolerance", tolerance),
            ("explore", explore),
            ("warmup_explore", warmup_explore),
        ):
            if not 0.0 <= share <= 1.0:
                raise UserError(f"{name} must be between 0 and 1, got {share}")
        if not 0.0 < decay <= 1.0:
            raise UserError(f"decay must be in (0, 1], got {decay}")
        if decay < 1.0 and min_samples >= 1.0 / (1.0 - decay):
            raise UserError(
                f"min_samples={min_samples} can never be reached with decay={decay}: old "
                f"outcomes fade so that at most {1.0 / (1.0 - decay):.0f} nodes count; lower "
                "min_samples or raise decay"
            )
        self.prior = prior or CapabilityRouter()
        self.min_samples = min_samples
        self.tolerance = tolerance
        self.explore = explore
        self.warmup_explore = warmup_explore
        self.decay = decay
        self.max_below = max_below
        self.calibration = calibration or Calibration()
        self._random = random.Random(seed)

    # -- routing ------------------------------------------------------------------------

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        """Explore now and then (see the class), else :meth:`decide`."""
        needs = request.needs
        prior = self.prior.route(request, ladder)
        arms = self._arms(needs, ladder, prior.index)
        records = self._records(needs_key(needs), ladder)
        warming = any(records[i].nodes < self.min_samples for i in arms)
        share = self.warmup_explore if warming else self.explore
        if arms and share and self._random.random() < share:
            index = min(arms, key=lambda i: (records[i].nodes, i))
            return RouteDecision(
                index,
                _covers(needs, ladder, index),
                f"calibration: exploring {ladder[index].name} "
                f"({records[index].nodes:.0f} nodes with these needs seen there)",
            )
        return self._decide(needs, ladder, prior, arms, records)

    def decide(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        """The tier the calibration picks, without exploring; ``prior``'s until it can.

        Among the tiers it may start on (context fits, at most ``max_below`` under
        ``prior``'s choice) with ``min_samples`` observations: the lowest cost per verified
        answer whose verified rate's upper bound reaches ``prior``'s tier's rate minus
        ``tolerance``.
        """
        needs = request.needs
        prior = self.prior.route(request, ladder)
        arms = self._arms(needs, ladder, prior.index)
        records = self._records(needs_key(needs), ladder)
        return self._decide(needs, ladder, prior, arms, records)

    def _decide(
        self,
        needs: Needs,
        ladder: TierLadder,
        prior: RouteDecision,
        arms: list[int],
        records: list[TierRecord],
    ) -> RouteDecision:
        started = [i for i in arms if records[i].nodes >= self.min_samples]
        if prior.index not in started:
            return prior
        untried = _untried(arms, started, records)
        if untried is not None and not any(records[i].verified for i in started):
            tried = ", ".join(f"{ladder[i].name}: 0 of {records[i].nodes:.0f}" for i in started)
            return RouteDecision(
                untried,
                _covers(needs, ladder, untried),
                f"calibrated: starting on {ladder[untried].name}, not yet tried as a start: "
                f"nodes with these needs that started elsewhere never ended verified "
                f"({tried} verified; rules: {ladder[prior.index].name})",
            )
        evidence = [r if r.nodes >= self.min_samples else r.with_escalations() for r in records]
        ready = [i for i in arms if evidence[i].nodes >= self.min_samples]
        floor = records[prior.index].success_rate - self.tolerance
        eligible = [i for i in ready if evidence[i].success_upper_bound() >= floor]
        index = min(eligible, key=lambda i: (evidence[i].cost_per_verified_usd, i))
        chosen = evidence[index]
        borrowed = (
            f", {records[index].escalated:.0f} of them escalated to it"
            if chosen is not records[index]
            else ""
        )
        return RouteDecision(
            index,
            _covers(needs, ladder, index),
            f"calibrated: starting on {ladder[index].name}, ${chosen.cost_per_verified_usd:.4g} "
            f"per verified answer, {chosen.success_rate:.1%} verified, over "
            f"{chosen.nodes:.0f} nodes with these needs{borrowed} "
            f"(rules: {ladder[prior.index].name})",
        )

    def _arms(self, needs: Needs, ladder: TierLadder, rules: int) -> list[int]:
        """Tiers a task may start on: its context fits, at most ``max_below`` under ``rules``."""
        lowest = 0 if self.max_below is None else rules - self.max_below
        return [
            i
            for i, tier in enumerate(ladder.tiers)
            if i >= lowest and needs.context_tokens <= tier.context_window
        ]

    def _records(self, key: str, ladder: TierLadder) -> list[TierRecord]:
        bucket = self.calibration.entries.get(key, {})
        out = []
        for tier in ladder.tiers:
            record = bucket.get(tier.name)
            out.append(
                record if record and record.model == tier.model else TierRecord(model=tier.model)
            )
        return out

    # -- learning -----------------------------------------------------------------------

    def observe(self, result: NodeResult) -> bool:
        """Learn from a finished node; returns whether it was counted.

        Counted: model nodes that succeeded or failed after attempts that all reached a
        verdict. Not counted: Python nodes, skipped or unrun nodes, and nodes with an
        attempt that errored (rate limits, outages, cancellation, an interrupted process),
        which say nothing about what the tier can do.
        """
        return record_outcome(self.calibration, result, decay=self.decay)

    def observe_many(self, results: Iterable[NodeResult]) -> int:
        """Learn from past nodes, oldest first; returns how many were counted."""
        return sum(self.observe(result) for result in results)

    async def learn_from_store(self, store: RunStore, *, runs: int = 500) -> int:
        """Learn from the nodes of the last ``runs`` runs in ``store``, oldest first.

        Every recorded run counts, whichever router ran it: the tier a node started on and
        how it ended is all the router needs. Returns how many nodes were counted.
        """
        return await learn_from_store(self, store, runs=runs)

    def table(self, ladder: TierLadder) -> list[dict[str, object]]:
        """What the router has learned, one row per (needs bucket, tier) observed.

        ``start`` marks the tier :meth:`decide` picks for the bucket (context size aside),
        which has a row even if nothing started there yet when it is not ``prior``'s pick
        (``verified`` is then ``None``);
        ``cost_per_verified_usd`` is ``None`` while nothing started there was verified.
        """
        rows: list[dict[str, object]] = []
        for key in sorted(self.calibration.entries):
            records = self._records(key, ladder)
            levels = dict(part.split("=") for part in key.split(","))
            needs = Needs(**{k: int(v) for k, v in levels.items()})
            request = RouteRequest(needs)
            start = self.decide(request, ladder).index
            untried = start if start != self.prior.route(request, ladder).index else None
            for index, (tier, record) in enumerate(zip(ladder.tiers, records, strict=True)):
                if record.nodes or index == untried:  # calibration may pick an untried start
                    rows.append(
                        {
                            "needs": key,
                            "tier": tier.name,
                            "nodes": round(record.nodes, 1),
                            "verified": round(record.success_rate, 4) if record.nodes else None,
                            "mean_cost_usd": record.mean_cost_usd,
                            "cost_per_verified_usd": (
                                record.cost_per_verified_usd if record.verified else None
                            ),
                            "start": index == start,
                        }
                    )
        return rows


def _untried(arms: list[int], started: list[int], records: list[TierRecord]) -> int | None:
    """Where to start when no tier started on ever verified; ``None``: all were tried.

    A tier not yet tried as a start: the cheapest above those tried (one where escalations
    from below ended verified first), else the nearest below.
    """
    fresh = [i for i in arms if i not in started]
    above = [i for i in fresh if i > max(started)]
    proven = [i for i in above if records[i].escalated_verified]
    if proven or above:
        return (proven or above)[0]
    return max(fresh, default=None)


def _covers(needs: Needs, ladder: TierLadder, index: int) -> bool:
    tier = ladder[index]
    return not needs.shortfalls(tier.capabilities, tier.context_window)
