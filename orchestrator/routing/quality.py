"""What each tier gets wrong, learned from what is true: the learned router's model.

A verifier's *rejections* are true (a caught answer was wrong); its passes are not (a
lenient check passes wrong answers). So the model learns, per tier and from every first
attempt and shadow attempt there, the chance that the tier's answer to a task like this is
*rejected* (a logistic regression on :mod:`~orchestrator.routing.features`), and scales it
by how much of what is wrong the checks catch (the catch rate, estimated from shadow runs:
a sample of nodes also answered by the top tier, see :class:`CalibratedRouter`). So

    silent failures on tier i  ~  P(rejected on i | task) * (1 - catch) / catch

and the learned router starts a node on the cheapest tier whose silent failures exceed the
top tier's by at most its ``threshold``. Attempts that escalated to a tier are not learned
from: only tasks a cheaper tier failed reach it, which would teach it that every task is
hard.

Fitting runs in a worker thread by default (it takes a second on a few thousand examples
and must not stall the event loop); the coefficients in use are swapped when it is done.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from orchestrator.routing.features import Features, Featurizer

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FitMode", "QualityModel", "TierQuality"]

FitMode = Literal["background", "inline"]
"""Where refits run: a worker thread (the default), or in the caller (reproducible)."""


@dataclass(frozen=True, slots=True)
class _Fitted:
    coef: np.ndarray
    intercept: float


@dataclass(slots=True)
class TierQuality:
    """One tier's (one model's) examples and fitted rejection model."""

    model: str
    examples: deque[tuple[Features, bool]]
    fitted: _Fitted | None = None
    since_fit: int = 0
    rejected: int = 0
    cost_usd: float = 0.0
    cost_count: float = 0.0
    pending: Future[_Fitted | None] | None = field(default=None, repr=False)

    @property
    def samples(self) -> int:
        """Examples held (the last ``window``)."""
        return len(self.examples)

    @property
    def mean_cost_usd(self) -> float | None:
        """Mean cost of a first attempt here (decayed), ``None`` until one is seen."""
        return self.cost_usd / self.cost_count if self.cost_count else None


class QualityModel:
    """Per tier: P(an answer to this task is rejected), and the checks' catch rate.

    Args:
        featurizer: Turns requests into features (the default reads text, family, kind,
            needs and size).
        window: Examples kept per tier (the most recent), so the model follows a tier
            whose model changes in place.
        c: Inverse regularisation strength of the logistic regression.
        refit_every: Refit once this share of the window is new (and at least 20).
        fit: ``"background"`` (a worker thread) or ``"inline"``.
    """

    def __init__(
        self,
        featurizer: Featurizer | None = None,
        *,
        window: int = 5000,
        c: float = 1.0,
        refit_every: float = 0.1,
        fit: FitMode = "background",
    ) -> None:
        self.featurizer = featurizer or Featurizer()
        self.window = window
        self.c = c
        self.refit_every = refit_every
        self.fit_mode: FitMode = fit
        self.tiers: dict[str, TierQuality] = {}
        self.caught = 0.0
        self.silent = 0.0
        self._pool: ThreadPoolExecutor | None = None

    # -- evidence -----------------------------------------------------------------------

    def tier(self, name: str, model: str) -> TierQuality:
        """The record of ``name``, afresh when the tier now runs another model."""
        record = self.tiers.get(name)
        if record is None or record.model != model:
            record = self.tiers[name] = TierQuality(model, deque(maxlen=self.window))
        return record

    def add(self, features: Features, tier: str, model: str, *, rejected: bool) -> None:
        """Learn one answer of ``tier``: was it rejected by verification?"""
        record = self.tier(tier, model)
        if len(record.examples) == record.examples.maxlen and record.examples[0][1]:
            record.rejected -= 1
        record.examples.append((features, rejected))
        record.rejected += rejected
        record.since_fit += 1
        if record.since_fit >= max(20, self.refit_every * len(record.examples)):
            self._refit(record)

    def add_cost(self, tier: str, model: str, cost_usd: float, *, decay: float) -> None:
        """Count what a first attempt on ``tier`` cost (the router's cost estimates)."""
        record = self.tier(tier, model)
        record.cost_usd = record.cost_usd * decay + cost_usd
        record.cost_count = record.cost_count * decay + 1.0

    def add_shadow(self, *, caught: bool, decay: float) -> None:
        """A sampled node's start answer was caught, or passed and disagreed with the top."""
        self.caught = self.caught * decay + caught
        self.silent = self.silent * decay + (not caught)

    @property
    def catch_rate(self) -> float:
        """Share of wrong answers the checks reject: (caught + 1) / (wrong seen + 2).

        Wrong, as far as a router can know: rejected, or passed while the top tier's
        answer (which passed) said otherwise. 0.5 before any shadow run: a cautious guess.
        """
        return (self.caught + 1.0) / (self.caught + self.silent + 2.0)

    # -- estimates ----------------------------------------------------------------------

    def p_rejected(self, features: Features, tier: str, model: str) -> float | None:
        """P(the tier's answer to this task is rejected); ``None`` with no examples."""
        record = self.tiers.get(tier)
        if record is None or record.model != model or not record.examples:
            return None
        self._collect(record)
        if record.fitted is None:  # one class only so far: a smoothed rate
            return (record.rejected + 1.0) / (len(record.examples) + 2.0)
        coef = record.fitted.coef
        score = record.fitted.intercept + sum(
            float(coef[i]) * v for i, v in zip(features.indices, features.values, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, score))))

    @property
    def catch_bounds(self) -> tuple[float, float]:
        """Where the catch rate may be: its Wilson interval at two standard errors."""
        catch, seen, z2 = self.catch_rate, self.caught + self.silent + 2.0, 4.0
        centre = (catch + z2 / (2.0 * seen)) / (1.0 + z2 / seen)
        spread = math.sqrt(catch * (1.0 - catch) / seen + z2 / (4.0 * seen * seen))
        spread *= 2.0 / (1.0 + z2 / seen)
        return max(1e-6, centre - spread), min(1.0, centre + spread)

    def silent_rate(self, p_rejected: float, catch: float | None = None) -> float:
        """Expected silent failures of an answer rejected with ``p_rejected``.

        ``catch``: the catch rate to assume (default: the estimate, :attr:`catch_rate`).
        """
        catch = self.catch_rate if catch is None else catch
        return min(1.0 - p_rejected, p_rejected * (1.0 - catch) / catch)

    def wait(self) -> None:
        """Finish the fits in progress (tests and benchmarks that want them in place)."""
        for record in self.tiers.values():
            if record.pending is not None:
                record.pending.result()
                self._collect(record)

    # -- fitting ------------------------------------------------------------------------

    def _refit(self, record: TierQuality) -> None:
        record.since_fit = 0
        if record.rejected in (0, len(record.examples)):
            record.fitted = None  # one class: the smoothed rate answers
            return
        rows = [f for f, _ in record.examples]
        labels = [r for _, r in record.examples]
        if self.fit_mode == "inline":
            record.fitted = _fit(self.featurizer, rows, labels, self.c)
            return
        if record.pending is not None and not record.pending.done():
            return  # one fit per tier at a time; the next refit catches up
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-fit")
        record.pending = self._pool.submit(_fit, self.featurizer, rows, labels, self.c)

    def _collect(self, record: TierQuality) -> None:
        pending = record.pending
        if pending is not None and pending.done():
            record.pending = None
            fitted = pending.result()
            if fitted is not None:
                record.fitted = fitted


def _fit(
    featurizer: Featurizer, rows: Sequence[Features], labels: Sequence[bool], c: float
) -> _Fitted | None:
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415  (the learn extra)

    learner = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    learner.fit(featurizer.matrix(rows), labels)
    return _Fitted(learner.coef_[0].copy(), float(learner.intercept_[0]))
