"""Routing: which tier a node's first attempt runs on.

The flow, one module each:

- :mod:`~orchestrator.routing.rules`: the :class:`Router` protocol and the built-in
  :class:`CapabilityRouter`, which picks the cheapest tier whose capability profile covers
  every need (capability levels and context windows only, never model names, so a new
  model release is a change to the tiers file).
- :mod:`~orchestrator.routing.calibration`: a learned router's memory (:class:`Calibration`,
  one :class:`~orchestrator.routing.calibration.TierRecord` per kind of task and tier),
  saved to and loaded from JSON.
- :mod:`~orchestrator.routing.learning`: what finished nodes teach it, live or replayed
  from the runs in a store.
- :mod:`~orchestrator.routing.features`: what the learned router reads of a task (hashed
  words of its prompt, its family, kind, needs, size and any classifier label).
- :mod:`~orchestrator.routing.quality`: per tier, P(an answer to this task is rejected)
  and the share of wrong answers the checks catch, learned.
- :mod:`~orchestrator.routing.gate`: the learned gate, per task the tiers whose estimated
  silent failures are within ``threshold`` of the top tier's; what finished nodes teach it.
- :mod:`~orchestrator.routing.classifier`: :class:`TaskClassifier`, an optional cheap-tier
  call that labels each task before it is routed.
- :mod:`~orchestrator.routing.calibrated`: :class:`CalibratedRouter`, the learned router:
  it gates starts on the estimated silent failures of each tier for this task, and picks
  among the tiers left by what nodes with the same needs cost, relearning as models
  change.

Both routers plug in through the :class:`Router` protocol.
"""

from orchestrator.routing.calibrated import CalibratedRouter
from orchestrator.routing.calibration import Calibration, needs_key
from orchestrator.routing.classifier import TaskClassifier
from orchestrator.routing.rules import (
    CapabilityRouter,
    ClassifyingRouter,
    LearningRouter,
    RouteDecision,
    Router,
    RouteRequest,
)

__all__ = [
    "CalibratedRouter",
    "Calibration",
    "CapabilityRouter",
    "ClassifyingRouter",
    "LearningRouter",
    "RouteDecision",
    "RouteRequest",
    "Router",
    "TaskClassifier",
    "needs_key",
]
