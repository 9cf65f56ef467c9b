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
- :mod:`~orchestrator.routing.calibrated`: :class:`CalibratedRouter`, which learns from the
  verified outcomes of finished nodes to start each kind of task on the tier that has been
  cheapest for it without losing success, and keeps relearning as models change.

Both routers plug in through the :class:`Router` protocol.
"""

from orchestrator.routing.calibrated import CalibratedRouter
from orchestrator.routing.calibration import Calibration, needs_key
from orchestrator.routing.rules import (
    CapabilityRouter,
    LearningRouter,
    RouteDecision,
    Router,
    RouteRequest,
)

__all__ = [
    "CalibratedRouter",
    "Calibration",
    "CapabilityRouter",
    "LearningRouter",
    "RouteDecision",
    "RouteRequest",
    "Router",
    "needs_key",
]
