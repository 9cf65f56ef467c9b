"""Fault injection, deterministic under the seed.

Whether a request gets a fault is decided by ``hash(seed, request body, n)`` where ``n``
counts how many times this server has already seen that exact body. A retried request
(same body) therefore gets a fresh draw and can succeed, while two servers with the same
seed fed the same requests inject the same faults. The body, not a global request counter,
is the key so that concurrency (which reorders unrelated requests) does not change which
requests fail.
"""

from __future__ import annotations

from collections import OrderedDict

from orchestrator_sim.config import FaultKind, SimConfig
from orchestrator_sim.seeding import digest, unit

__all__ = ["FaultInjector"]

_REMEMBERED_BODIES = 100_000


class FaultInjector:
    """Draws the fault (if any) of each request.

    Args:
        config: The server's configuration (seed, fault rate and kind weights).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._seen: OrderedDict[str, int] = OrderedDict()
        kinds = [(kind, weight) for kind, weight in config.fault_kinds.items() if weight > 0]
        self._kinds = kinds
        self._total = sum(weight for _, weight in kinds)

    def draw(self, body: bytes) -> FaultKind | None:
        """Return the fault for this request body (counting this sighting), or ``None``."""
        key = digest(body)
        sighting = self._seen.pop(key, 0)
        self._seen[key] = sighting + 1
        if len(self._seen) > _REMEMBERED_BODIES:
            self._seen.popitem(last=False)
        if self._config.fault_rate <= 0:
            return None
        seed = self._config.seed
        if unit(seed, "fault", key, sighting) >= self._config.fault_rate:
            return None
        return self._kind(unit(seed, "fault-kind", key, sighting))

    def _kind(self, roll: float) -> FaultKind:
        point = roll * self._total
        for kind, weight in self._kinds:
            if point < weight:
                return kind
            point -= weight
        return self._kinds[-1][0]
