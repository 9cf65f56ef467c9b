"""The learned gate: which tiers a task may start on, from what each tier gets wrong.

The half of :class:`~orchestrator.routing.CalibratedRouter` that reads the task. From a
:class:`~orchestrator.routing.quality.QualityModel` it estimates, per tier, the share of
answers to this task that would be silently wrong::

    silent(i) = P(rejected on tier i | task) * (1 - catch) / catch

and rules out the tiers whose estimate exceeds the top tier's by more than ``threshold``.
It learns from finished nodes: their first answering attempt, their shadow attempts, and
whether a sampled node's checks caught or missed a wrong answer (the catch rate).
"""

from __future__ import annotations

from collections import OrderedDict

from orchestrator.results import Attempt, NodeResult
from orchestrator.routing.features import Features
from orchestrator.routing.quality import QualityModel
from orchestrator.routing.rules import (
    CALIBRATION_ROUTE,
    PROBE_ROUTE,
    REFERENCE_CHECK,
    RouteRequest,
)
from orchestrator.tiers import Tier, TierLadder

__all__ = ["LearnedGate"]

_PENDING = 100_000  # requests remembered between routing and learning (by task id)


class LearnedGate:
    """Per task, the tiers whose estimated silent failures are within ``threshold`` of the top's.

    Args:
        quality: The learned model (P(rejected) per tier, the catch rate).
        threshold: Silent failures a cheaper start may add over the top tier's; ``None``:
            no gate (the model still learns, and :meth:`estimates` answers).
        min_samples: Examples every tier needs before the gate decides.
        decay: Weight kept by older catch-rate evidence per new piece.
    """

    def __init__(
        self, quality: QualityModel, *, threshold: float | None, min_samples: int, decay: float
    ) -> None:
        self.quality = quality
        self.threshold = threshold
        self.min_samples = min_samples
        self.decay = decay
        self._pending: OrderedDict[str, Features] = OrderedDict()

    # -- reading a task -----------------------------------------------------------------

    def features(self, request: RouteRequest) -> Features:
        """What the model reads of ``request``."""
        return self.quality.featurizer.features(request)

    def samples(self, tier: Tier) -> int:
        """Examples held for ``tier`` (0 if it now runs another model)."""
        record = self.quality.tiers.get(tier.name)
        return record.samples if record is not None and record.model == tier.model else 0

    def ready(self, ladder: TierLadder, arms: list[int]) -> bool:
        """Whether every tier in ``arms`` has ``min_samples`` examples."""
        return bool(arms) and all(self.samples(ladder[i]) >= self.min_samples for i in arms)

    def allowed(
        self, features: Features, ladder: TierLadder, arms: list[int]
    ) -> tuple[list[int], str] | None:
        """The tiers of ``arms`` the task may start on, and why, in words.

        ``None`` without a threshold or while a tier lacks ``min_samples`` examples.
        """
        quality, threshold = self.quality, self.threshold
        if threshold is None or not self.ready(ladder, arms):
            return None
        rejected = self._rejected(features, ladder, arms)
        silent = {i: quality.silent_rate(p) for i, p in zip(arms, rejected, strict=True)}
        top = max(arms)
        eligible = [i for i in arms if silent[i] - silent[top] <= threshold]
        estimates = ", ".join(f"{ladder[i].name} {silent[i]:.1%}" for i in arms)
        note = (
            f"learned: est. silently wrong {estimates} (catch rate {quality.catch_rate:.0%}, "
            f"threshold {threshold:.1%}): may start on "
            + ", ".join(ladder[i].name for i in eligible)
        )
        return eligible, note

    def settled(self, features: Features, ladder: TierLadder, arms: list[int]) -> bool:
        """Whether the catch rate is known well enough not to matter for this task.

        True when the gate lets the same tiers start with the catch rate at either end of
        its uncertainty (:attr:`QualityModel.catch_bounds`): a shadow run would teach little.
        """
        quality, threshold = self.quality, self.threshold
        if threshold is None or not self.ready(ladder, arms):
            return False
        ps = self._rejected(features, ladder, arms)

        def eligible(catch: float) -> list[bool]:
            top = quality.silent_rate(ps[-1], catch)
            return [quality.silent_rate(p, catch) - top <= threshold for p in ps]

        low, high = quality.catch_bounds
        return eligible(low) == eligible(high)

    def estimates(self, request: RouteRequest, ladder: TierLadder) -> dict[str, float] | None:
        """Per tier, the estimated share of silently wrong answers to this task.

        ``None`` before any tier has examples.
        """
        quality = self.quality
        features = self.features(request)
        out: dict[str, float] = {}
        for tier in ladder.tiers:
            p = quality.p_rejected(features, tier.name, tier.model)
            if p is not None:
                out[tier.name] = quality.silent_rate(p)
        return out or None

    def _rejected(self, features: Features, ladder: TierLadder, arms: list[int]) -> list[float]:
        """P(rejected) per tier of ``arms`` (0.5 for a tier without examples)."""
        found = (self.quality.p_rejected(features, ladder[i].name, ladder[i].model) for i in arms)
        return [0.5 if p is None else p for p in found]

    # -- learning -----------------------------------------------------------------------

    def remember(self, task_id: str, features: Features) -> None:
        """Keep what a routed task looked like until its node finishes."""
        self._pending[task_id] = features
        self._pending.move_to_end(task_id)
        while len(self._pending) > _PENDING:
            self._pending.popitem(last=False)

    def observe(self, result: NodeResult, request: RouteRequest | None = None) -> bool:
        """Learn from a finished node (``request``: default, the one remembered for its id)."""
        features = self._pending.pop(result.id, None)
        if request is not None:
            features = self.features(request)
        return features is not None and self._learn(result, features)

    def _learn(self, result: NodeResult, features: Features) -> bool:
        quality, decay = self.quality, self.decay
        first = next((a for a in result.attempts if a.answering), None)
        if first is None or first.model is None or not _judged(first):
            return False
        verdict = first.verdict
        calibrating = first.route_reason.startswith(CALIBRATION_ROUTE) and not (
            first.route_reason.startswith(f"{CALIBRATION_ROUTE}reference")
        )
        # A calibration run's comparison with the top tier is not the task's own check: an
        # answer it rejects passed those, and was silently wrong.
        missed = verdict is not None and not verdict.passed and verdict.verifier == REFERENCE_CHECK
        rejected = not first.passed and not missed
        quality.add(features, first.tier, first.model, rejected=rejected)
        quality.add_cost(first.tier, first.model, float(first.cost_usd), decay=decay)
        if missed:
            quality.add_shadow(caught=False, decay=decay)
        for shadow in result.attempts:
            if shadow.shadow and shadow.model is not None and _judged(shadow):
                quality.add(features, shadow.tier, shadow.model, rejected=not shadow.passed)
                if shadow.route_reason.startswith(PROBE_ROUTE) and not shadow.passed:
                    quality.add_shadow(caught=True, decay=decay)  # the cheaper one, caught
                elif first.passed and shadow.agrees is False:  # the cheaper one, missed
                    quality.add_shadow(caught=False, decay=decay)
        if (result.shadowed or calibrating) and rejected:  # a cheaper start, caught
            quality.add_shadow(caught=True, decay=decay)
        return True


def _judged(attempt: Attempt) -> bool:
    """The attempt reached a verdict (an error says nothing of what the tier can do)."""
    return attempt.error is None and attempt.verdict is not None
