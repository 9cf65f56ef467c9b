"""What every policy is run on: DAGs whose nodes carry pre-drawn outcomes, sizes and noise.

Each node gets, once and for all policies (common random numbers):

* a joint outcome over the tiers (Haiku, Sonnet, Opus pass or fail), drawn from a published
  mix (the issue's mixes A, B, C; see ``MIXES``);
* input and output token counts, lognormal (medians 4,000 and 600);
* one uniform number per author tier that decides the verifier's verdict on that tier's
  answer (false accept when the answer is wrong and u < FA; false reject when it is right
  and u < FR), so two policies that verify the same answer get the same verdict;
* one standard-normal number, the noise of the routing signal (see ``difficulty_estimate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TIERS = ("haiku", "sonnet", "opus")
"""The default ladder, cheapest first (orchestrator/tiers.py)."""

PATTERNS: tuple[tuple[bool, bool, bool], ...] = (
    (True, True, True),  # all pass
    (True, True, False),  # Haiku and Sonnet pass, Opus fails
    (True, False, False),  # only Haiku
    (False, True, True),  # Sonnet and Opus pass
    (False, False, True),  # only Opus
    (False, False, False),  # no tier passes
)
"""Joint outcomes (Haiku, Sonnet, Opus) in the order the mixes list their probabilities."""

MIXES: dict[str, tuple[float, ...]] = {
    # Per-prompt correctness of a weak vs a strong model on MMLU (RouteLLM's released data).
    "B": (0.628, 0.030, 0.023, 0.107, 0.071, 0.141),
    # SWE-bench-like.
    "A": (0.700, 0.015, 0.018, 0.057, 0.052, 0.158),
    # Large capability gap.
    "C": (0.22, 0.01, 0.0, 0.23, 0.20, 0.34),
}
"""Probability of each joint outcome in ``PATTERNS``, as given in issue 7."""

INPUT_MEDIAN, INPUT_SIGMA = 4000, 0.8
OUTPUT_MEDIAN, OUTPUT_SIGMA = 600, 0.6
OUTPUT_CAP = 4096  # Haiku's max_output_tokens on the default ladder
MIN_NODES, MAX_NODES = 10, 200
MAX_DEPS, DEP_WINDOW = 3, 20


@dataclass(frozen=True, slots=True)
class NodeDraw:
    """One node's fate, drawn before any policy runs."""

    passes: tuple[bool, bool, bool]
    """Whether Haiku, Sonnet, Opus truly answer it correctly."""
    input_tokens: int
    output_tokens: int
    verdict_u: tuple[float, float, float]
    """Verifier noise for the answer of each author tier."""
    signal_noise: float
    """Standard-normal noise of the routing signal."""

    @property
    def cheapest_pass(self) -> int:
        """Index of the cheapest tier that truly passes; 3 when none does."""
        return next((i for i, ok in enumerate(self.passes) if ok), 3)

    def difficulty_estimate(self, sigma: float) -> float:
        """The routing signal: cheapest passing tier plus noise (``inf`` sigma: no signal)."""
        if math.isinf(sigma):
            return 0.0
        return self.cheapest_pass + sigma * self.signal_noise


@dataclass(frozen=True, slots=True)
class DagDraw:
    """A generated DAG: nodes in topological order, each with the nodes it depends on."""

    index: int
    nodes: tuple[NodeDraw, ...]
    deps: tuple[tuple[int, ...], ...]


def draw_dags(mix: str, count: int, seed: int) -> list[DagDraw]:
    """Draw ``count`` DAGs of 10 to 200 nodes with outcomes from ``MIXES[mix]``.

    Each node depends on 0 to 3 distinct nodes among the 20 before it (uniform), so the
    DAGs are wide with a moderate critical path.
    """
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose one of {', '.join(sorted(MIXES))}")
    rng = np.random.default_rng([seed, ord(mix)])
    probabilities = np.array(MIXES[mix])
    probabilities = probabilities / probabilities.sum()
    dags = []
    for index in range(count):
        size = int(rng.integers(MIN_NODES, MAX_NODES + 1))
        kinds = rng.choice(len(PATTERNS), size=size, p=probabilities)
        inputs = np.maximum(50, np.rint(rng.lognormal(math.log(INPUT_MEDIAN), INPUT_SIGMA, size)))
        outputs = np.rint(rng.lognormal(math.log(OUTPUT_MEDIAN), OUTPUT_SIGMA, size))
        outputs = np.clip(outputs, 10, OUTPUT_CAP)
        verdict_u = rng.random((size, 3))
        noise = rng.standard_normal(size)
        nodes = tuple(
            NodeDraw(
                passes=PATTERNS[int(kinds[i])],
                input_tokens=int(inputs[i]),
                output_tokens=int(outputs[i]),
                verdict_u=(float(verdict_u[i, 0]), float(verdict_u[i, 1]), float(verdict_u[i, 2])),
                signal_noise=float(noise[i]),
            )
            for i in range(size)
        )
        deps = []
        for i in range(size):
            window = np.arange(max(0, i - DEP_WINDOW), i)
            wanted = min(len(window), int(rng.integers(0, MAX_DEPS + 1)))
            chosen = rng.choice(window, size=wanted, replace=False) if wanted else []
            deps.append(tuple(sorted(int(d) for d in chosen)))
        dags.append(DagDraw(index, nodes, tuple(deps)))
    return dags
