"""A local server that speaks the Anthropic Messages API, with a documented fake brain.

Offline runs, tests, demos and benchmarks point the real ``anthropic`` SDK at it over
loopback HTTP. Its answers are **simulated** (deterministic templates, not a model) and
every response says so in the ``x-orchestrator-simulated: true`` header. See docs/sim.md.

Entry points: :func:`serve` (async context manager), :func:`start_in_thread` (sync),
:func:`run_forever` (for ``orchestrator sim serve``).
"""

from orchestrator.wire import SIMULATED_HEADER
from orchestrator_sim.brain import Brain, BrainReply, BrainRequest, DefaultBrain
from orchestrator_sim.config import FAULT_KINDS, FaultKind, SimConfig, SimModel, default_models
from orchestrator_sim.reqlog import RequestRecord
from orchestrator_sim.server import (
    SimServer,
    ThreadedSimServer,
    run_forever,
    serve,
    start_in_thread,
)
from orchestrator_sim.writer import Flaw

__all__ = [
    "FAULT_KINDS",
    "SIMULATED_HEADER",
    "Brain",
    "BrainReply",
    "BrainRequest",
    "DefaultBrain",
    "FaultKind",
    "Flaw",
    "RequestRecord",
    "SimConfig",
    "SimModel",
    "SimServer",
    "ThreadedSimServer",
    "default_models",
    "run_forever",
    "serve",
    "start_in_thread",
]
