"""The DAG shapes the benchmarks share, as plain dependency lists (node i waits on deps[i]).

Every dependency of node ``i`` has a smaller index, so index order is a topological order.
Shapes are deterministic: the random ones use a fixed seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Dag:
    """A named DAG: ``deps[i]`` are the nodes node ``i`` waits on."""

    name: str
    deps: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.deps)

    @cached_property
    def dependents(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.deps]
        for node, deps in enumerate(self.deps):
            for dep in deps:
                out[dep].append(node)
        return out

    @property
    def edges(self) -> list[tuple[int, int]]:
        return [(dep, node) for node, deps in enumerate(self.deps) for dep in deps]


def fan_out(size: int) -> Dag:
    """One source, ``size - 2`` parallel nodes, one sink waiting on all of them."""
    middle = tuple((0,) for _ in range(size - 2))
    return Dag(f"fanout-{size}", ((), *middle, tuple(range(1, size - 1))))


def layers(count: int = 10, width: int = 100, fan_in: int = 2, seed: int = 7) -> Dag:
    """``count`` layers of ``width``; each node after the first layer waits on ``fan_in``
    distinct random nodes of the layer before (fixed seed)."""
    rng = random.Random(seed)
    deps: list[tuple[int, ...]] = [() for _ in range(width)]
    for layer in range(1, count):
        previous = range((layer - 1) * width, layer * width)
        deps += [tuple(sorted(rng.sample(previous, fan_in))) for _ in range(width)]
    return Dag(f"layers-{count}x{width}", tuple(deps))


def chain(size: int) -> Dag:
    """Each node waits on the one before."""
    return Dag(f"chain-{size}", ((), *((i,) for i in range(size - 1))))


def random_dag(size: int, max_deps: int = 3, window: int = 20, seed: int = 11) -> Dag:
    """Each node waits on 0..``max_deps`` random nodes among the ``window`` before it."""
    rng = random.Random(seed)
    deps: list[tuple[int, ...]] = []
    for node in range(size):
        candidates = range(max(0, node - window), node)
        count = min(rng.randint(0, max_deps), len(candidates))
        deps.append(tuple(sorted(rng.sample(candidates, count))))
    return Dag(f"random-{size}", tuple(deps))


SHAPES = {
    "fanout-100": lambda: fan_out(100),
    "fanout-1000": lambda: fan_out(1000),
    "fanout-10000": lambda: fan_out(10_000),
    "fanout-100000": lambda: fan_out(100_000),
    "layers-10x100": lambda: layers(10, 100),
    "chain-1000": lambda: chain(1000),
}
"""Overhead benchmark shapes by name (built on demand: the big ones take memory)."""
