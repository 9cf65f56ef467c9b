"""Learned routing: :class:`CalibratedRouter` starts each task on the cheapest adequate tier.

Two halves: the learned gate (:class:`~orchestrator.routing.gate.LearnedGate`), which reads
the task and rules out the tiers that would get it silently wrong too often, and the needs
buckets (:class:`~orchestrator.routing.calibration.Calibration`, fed by
:mod:`orchestrator.routing.learning`), which pick among the rest the tier that has been
cheapest per verified answer for tasks with these needs. This module holds the router:
exploration, shadow runs, and the decision that joins the two.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orchestrator.capabilities import Needs
from orchestrator.exceptions import UserError
from orchestrator.results import NodeResult
from orchestrator.routing.calibration import Calibration, TierRecord, needs_key, untried_start
from orchestrator.routing.classifier import TaskClassifier
from orchestrator.routing.features import Features
from orchestrator.routing.gate import LearnedGate
from orchestrator.routing.learning import learn_from_store, record_outcome
from orchestrator.routing.quality import FitMode, QualityModel
from orchestrator.routing.rules import (
    CapabilityRouter,
    RouteDecision,
    Router,
    RouteRequest,
)
from orchestrator.tiers import TierLadder

if TYPE_CHECKING:
    from orchestrator.store.base import RunStore

__all__ = ["CalibratedRouter"]

SETTLED_SHADOW = 0.1  # share of `shadow` left where the catch rate cannot change the start


class CalibratedRouter:
    """The learned router: starts each task on the cheapest tier that is adequate for it.

    It reads the task (:class:`RouteRequest`: its prompt's words, family, kind, needs, size
    and any ``classifier`` label; :mod:`~orchestrator.routing.features`) and learns, per
    tier, how likely an answer to a task like it is to be *rejected* (a logistic
    regression, :class:`~orchestrator.routing.quality.QualityModel`; the ``learn`` extra).
    Rejections are true, passes are not (a lenient check passes wrong answers), so the
    rejection chance is scaled by the checks' catch rate, learned from **shadow runs**: a
    share ``shadow`` of the nodes passing below the top tier are answered on the top tier
    too, and a share ``probe`` of those passing on the top tier on the cheapest tier (paid
    shadow attempts, the result unchanged; a cheaper answer that passed while the dearer
    one differs is a failure the checks missed; top-tier shadows drop to a tenth,
    :data:`SETTLED_SHADOW`, once the catch rate cannot change the start)::

        silent(i) = P(rejected on tier i | task) * (1 - catch) / catch

    Tiers whose ``silent(i)`` exceeds the top tier's by more than ``threshold`` (RouteLLM's
    knob: the share of answers per task you accept to get silently wrong for a cheaper
    start) are ruled out; the needs buckets below pick among the rest. Until a tier has
    ``min_samples`` examples a share ``warmup_explore`` of the nodes goes to the tier with
    the fewest, afterwards ``explore``. Each tier keeps its last ``window`` examples,
    refitted in a worker thread (``fit="inline"``: reproducible); a new model starts afresh.

    The needs buckets (alone with ``threshold=None``): per capability levels
    (:func:`needs_key`) and tier, what the nodes that *started* there cost in all and how
    often they ended verified; a node starts where the cost per verified answer is lowest
    among tiers whose verified rate is not credibly below ``prior``'s tier's (Wilson upper
    bound, ``tolerance``). When no tier started on ever verified, the next start is a tier
    not yet tried (:func:`~orchestrator.routing.calibration.untried_start`). A tier with
    few starts borrows the escalations that reached it; outcomes decay by ``decay`` per new
    one; only tiers whose context fits, at most ``max_below`` under the rules', are tried.

    Feed it with :meth:`observe` (the engine does, for every finished node), warm it from
    recorded runs with :meth:`learn_from_store`, keep the buckets with :attr:`calibration`.

    Args:
        prior: Routes buckets not yet calibrated; default :class:`CapabilityRouter`.
        threshold: Silent failures (a share of answers) a cheaper start may add over the
            top tier's; ``None``: route on declared needs alone (no scikit-learn needed).
        shadow: Share of the nodes passing below the top tier that are also answered on
            the top tier (paid shadow attempts) to learn what the checks miss; a tenth
            of it once the catch rate cannot change the node's start.
        probe: Share of the nodes passing on the top tier that are also answered on the
            cheapest tier they could start on (shadow attempts too, at its price; off by
            default: measured, it moved along the same cost-accuracy curve).
        min_samples: Examples (or, by needs, nodes) a tier needs before the router relies on
            it.
        tolerance: How much verified success (a share, 0.02 = two points) the needs buckets
            may give up for a cheaper start.
        explore: Share of calibrated nodes sent to the least-observed tier.
        warmup_explore: Share of nodes explored while any tier lacks samples.
        decay: Weight kept by older outcomes per new one (1.0: never forget).
        max_below: How many tiers under the rules' choice a node may start (``None``: any).
        window: Examples the learned model keeps per tier.
        fit: ``"background"`` refits in a worker thread; ``"inline"`` in the caller.
        seed: Seed of the exploration and shadow draws (reproducible routing).
        calibration: Needs-bucket memory to start from (e.g. loaded from JSON).
        quality: A learned model to start from (default: a fresh one when ``threshold``
            is set).
        classifier: Label each task with a cheap-tier call before routing it (paid, in
            the budget; the label is one more feature), see :class:`TaskClassifier`.
    """

    def __init__(
        self,
        prior: Router | None = None,
        *,
        threshold: float | None = 0.1,
        shadow: float = 0.02,
        probe: float = 0.0,
        min_samples: int = 30,
        tolerance: float = 0.02,
        explore: float = 0.02,
        warmup_explore: float = 0.2,
        decay: float = 0.998,
        max_below: int | None = 1,
        window: int = 5000,
        fit: FitMode = "background",
        seed: int | None = None,
        calibration: Calibration | None = None,
        quality: QualityModel | None = None,
        classifier: TaskClassifier | None = None,
    ) -> None:
        if min_samples < 1:
            raise UserError(f"min_samples must be at least 1, got {min_samples}")
        if max_below is not None and max_below < 0:
            raise UserError(f"max_below must be 0 or more (or None: no limit), got {max_below}")
        for name, share in (
            ("tolerance", tolerance),
            ("explore", explore),
            ("warmup_explore", warmup_explore),
            ("shadow", shadow),
            ("probe", probe),
            ("threshold", 0.0 if threshold is None else threshold),
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
        self.shadow, self.probe = shadow, probe
        self.classifier = classifier
        if quality is None and threshold is not None:
            quality = QualityModel(window=window, fit=fit)
        self.gate = (
            LearnedGate(quality, threshold=threshold, min_samples=min_samples, decay=decay)
            if quality is not None
            else None
        )
        self._random = random.Random(seed)

    @property
    def threshold(self) -> float | None:
        """The learned gate's ``threshold`` (``None``: routing on declared needs alone)."""
        return self.gate.threshold if self.gate is not None else None

    @property
    def quality(self) -> QualityModel | None:
        """The learned model (``None`` without one)."""
        return self.gate.quality if self.gate is not None else None

    def estimates(self, request: RouteRequest, ladder: TierLadder) -> dict[str, float] | None:
        """Per tier, the estimated share of silently wrong answers to this task.

        What :meth:`route` weighs against ``threshold`` (the gap to the top tier's), for
        explaining a decision or scoring a router; ``None`` without a learned model or
        before any tier has examples.
        """
        return self.gate.estimates(request, ladder) if self.gate is not None else None

    # -- routing ------------------------------------------------------------------------

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        """Explore now and then (see the class), else :meth:`decide`; maybe a shadow."""
        needs = request.needs
        prior = self.prior.route(request, ladder)
        arms = self._arms(needs, ladder, prior.index)
        records = self._records(needs_key(needs), ladder)
        counts = {i: int(records[i].nodes) for i in arms}  # nodes of these needs per tier
        gate, features = self.gate, None
        if gate is not None:  # and answers to any task there, for the learned gate
            features = gate.features(request)
            counts = {i: min(counts[i], gate.samples(ladder[i])) for i in arms}
        warming = any(counts[i] < self.min_samples for i in arms)
        share = self.warmup_explore if warming else self.explore
        if arms and share and self._random.random() < share:
            index = min(arms, key=lambda i: (counts[i], i))
            decision = RouteDecision(
                index,
                _covers(needs, ladder, index),
                f"calibration: exploring {ladder[index].name} "
                f"({counts[index]} answers to tasks seen there)",
            )
        else:
            decision = self._choose(request, features, ladder, prior, arms=arms, records=records)
        if gate is None or features is None:
            return decision
        gate.remember(request.task_id, features)
        return self._sample(gate, decision, features, ladder, arms)

    def _sample(
        self,
        gate: LearnedGate,
        decision: RouteDecision,
        features: Features,
        ladder: TierLadder,
        arms: list[int],
    ) -> RouteDecision:
        """Maybe a shadow run: the top tier after a cheaper start, the cheapest after a top one."""
        if len(arms) < 2:
            return decision
        draw, top, cheapest = self._random.random(), max(arms), min(arms)
        if decision.index == top:  # a probe: cheap, and what the cheap tier does on such tasks
            if draw >= self.probe:
                return decision
            note, tier = f"probed on {ladder[cheapest].name}", cheapest
        else:
            if draw >= self.shadow:
                return decision
            if draw >= self.shadow * SETTLED_SHADOW and gate.settled(features, ladder, arms):
                return decision  # the catch rate cannot change this start: a tenth as often
            note, tier = "shadowed on the top tier", top
        return RouteDecision(
            decision.index, decision.covered, f"{decision.reason}; {note}", shadow=True,
            shadow_tier=tier,
        )  # fmt: skip

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
        features = self.gate.features(request) if self.gate is not None else None
        return self._choose(request, features, ladder, prior, arms=arms, records=records)

    def _choose(
        self,
        request: RouteRequest,
        features: Features | None,
        ladder: TierLadder,
        prior: RouteDecision,
        *,
        arms: list[int],
        records: list[TierRecord],
    ) -> RouteDecision:
        gate = None
        if self.gate is not None and features is not None:
            gate = self.gate.allowed(features, ladder, arms)
        if gate is None:
            return self._decide(request.needs, ladder, prior, arms, records)
        eligible, note = gate
        decision = self._decide(request.needs, ladder, prior, eligible, records)
        if decision.index not in eligible:  # the rules' pick, which the gate rules out
            index = min((i for i in eligible if i > decision.index), default=max(eligible))
            decision = RouteDecision(
                index, _covers(request.needs, ladder, index),
                f"{ladder[decision.index].name} ruled out, starting on {ladder[index].name}",
            )  # fmt: skip
        return RouteDecision(decision.index, decision.covered, f"{decision.reason}; {note}")

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
        untried = untried_start(arms, started, records)
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

    def observe(self, result: NodeResult, request: RouteRequest | None = None) -> bool:
        """Learn from a finished node; returns whether it was counted.

        ``request`` is what the node was routed with (default: the one this router routed
        for its id). Counted in the needs buckets: model nodes that succeeded or failed
        after attempts that all reached a verdict. Not counted: Python nodes, skipped or
        unrun nodes, and nodes with an attempt that errored (rate limits, outages,
        cancellation, an interrupted process), which say nothing about what the tier can
        do. The learned model learns from the first attempt and any shadow attempt that
        reached a verdict, and from each sampled node whether the checks missed a failure.
        """
        counted = record_outcome(self.calibration, result, decay=self.decay)
        if self.gate is not None:
            counted = self.gate.observe(result, request) or counted
        return counted

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


def _covers(needs: Needs, ladder: TierLadder, index: int) -> bool:
    tier = ladder[index]
    return not needs.shortfalls(tier.capabilities, tier.context_window)
