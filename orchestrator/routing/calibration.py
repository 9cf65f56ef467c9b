"""A learned router's memory: per kind of task and tier, what starts there cost and won.

:class:`TierRecord` holds one tier's (decayed) counts for one kind of task;
:class:`Calibration` holds them all, keyed by :func:`needs_key`, and is what a
:class:`~orchestrator.routing.CalibratedRouter` saves to and loads from JSON.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.capabilities import Needs

__all__ = ["Calibration", "TierRecord", "needs_key", "untried_start"]

_Z95 = 1.96


class TierRecord(BaseModel):
    """What nodes that *started* on one tier cost and how often they ended verified.

    Counts decay (see :class:`CalibratedRouter`), so they are floats: recent nodes weigh
    more than old ones, and a model that changes is relearned rather than averaged away.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    """The tier's model when these outcomes were observed (a new model starts afresh)."""
    nodes: float = Field(default=0.0, ge=0.0)
    """Nodes observed (decayed)."""
    verified: float = Field(default=0.0, ge=0.0)
    """Of those, nodes that ended with a verified answer, on any tier (decayed)."""
    cost_usd: float = Field(default=0.0, ge=0.0)
    """What those nodes cost in all, escalations included (decayed)."""
    escalated: float = Field(default=0.0, ge=0.0)
    """Nodes that started on another tier and escalated to this one (decayed)."""
    escalated_verified: float = Field(default=0.0, ge=0.0)
    """Of those, nodes that ended with a verified answer, here or above (decayed)."""
    escalated_cost_usd: float = Field(default=0.0, ge=0.0)
    """What those nodes cost from their first attempt on this tier on (decayed)."""

    @property
    def success_rate(self) -> float:
        """Share of nodes that ended verified (0 when none observed)."""
        return self.verified / self.nodes if self.nodes else 0.0

    @property
    def mean_cost_usd(self) -> float:
        """Mean spend per node, escalations included (0 when none observed)."""
        return self.cost_usd / self.nodes if self.nodes else 0.0

    @property
    def cost_per_verified_usd(self) -> float:
        """What one verified answer costs, failures paid for included (inf: none yet)."""
        return self.cost_usd / self.verified if self.verified else math.inf

    def with_escalations(self) -> TierRecord:
        """This tier as a start, counting the nodes that escalated to it as if started here.

        They count from their first attempt here on. A cautious estimate: those are the
        nodes a cheaper tier failed, harder than most.
        """
        return TierRecord(
            model=self.model,
            nodes=self.nodes + self.escalated,
            verified=self.verified + self.escalated_verified,
            cost_usd=self.cost_usd + self.escalated_cost_usd,
        )

    def success_upper_bound(self, z: float = _Z95) -> float:
        """Wilson upper bound of the success rate (1 when nothing observed)."""
        if not self.nodes:
            return 1.0
        n, p = self.nodes, self.success_rate
        centre = p + z * z / (2 * n)
        spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return min(1.0, (centre + spread) / (1 + z * z / n))


class Calibration(BaseModel):
    """A :class:`CalibratedRouter`'s memory, as saved to and loaded from JSON.

    ``entries`` maps a needs key (see :func:`needs_key`) to tier name to record.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    entries: dict[str, dict[str, TierRecord]] = Field(default_factory=dict)


def needs_key(needs: Needs) -> str:
    """The calibration bucket of a task: its capability levels (not its context size)."""
    return ",".join(f"{name}={level}" for name, level in needs.levels().items())


def untried_start(arms: list[int], started: list[int], records: list[TierRecord]) -> int | None:
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
