"""The simulated judge: catches flaws with a probability that rises with its capability.

The server remembers every flawed answer it produced (ground truth, in a bounded
registry keyed by the answer's normalised text or canonical JSON). A judge request whose
answer is in the registry has a known flaw; otherwise the judge still sees flaws it can
check in the text itself (a required section missing). A flaw is caught with probability
``judge_detection`` (``judge_subtle_detection`` for subtle flaws) by judge capability; a
sound answer is wrongly rejected with probability ``judge_false_reject``. Each roll is
seeded by (seed, judge model, answer), so the same judge gives the same verdict on the
same answer.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass

from orchestrator_sim.config import SimConfig
from orchestrator_sim.prompts import key_terms, normalise, required_sections
from orchestrator_sim.seeding import digest, unit
from orchestrator_sim.writer import Flaw

__all__ = ["FlawRegistry", "JudgeVerdict", "answer_key", "judge_answer", "visible_flaw"]

_REGISTRY_SIZE = 4096


def answer_key(text: str) -> str:
    """Return a key for an answer that ignores whitespace, case and JSON formatting."""
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = normalise(text)
    return digest("answer", canonical)


class FlawRegistry:
    """The flawed answers this server produced, most recent kept (bounded)."""

    def __init__(self, size: int = _REGISTRY_SIZE) -> None:
        self._size = size
        self._flaws: OrderedDict[str, Flaw] = OrderedDict()

    def record(self, text: str, flaw: Flaw) -> None:
        """Remember that ``text`` has ``flaw``."""
        key = answer_key(text)
        self._flaws.pop(key, None)
        self._flaws[key] = flaw
        while len(self._flaws) > self._size:
            self._flaws.popitem(last=False)

    def lookup(self, text: str) -> Flaw | None:
        """Return the flaw of ``text`` if this server produced it flawed."""
        return self._flaws.get(answer_key(text))


def visible_flaw(task: str, answer: str) -> Flaw | None:
    """Return a flaw anyone can see in the text: a required section without a heading."""
    for title in required_sections(task):
        heading = re.compile(rf"^#{{1,6}}\s*{re.escape(title)}\s*$", re.IGNORECASE | re.MULTILINE)
        if not heading.search(answer):
            return Flaw("missing_section", f"omits the required section '{title}'")
    return None


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """A simulated judge's verdict.

    Attributes:
        passed: Whether the answer is accepted.
        reason: Why.
        score: Confidence the answer is correct, 0..1.
        flaw: The answer's true flaw, if any (caught or not).
    """

    passed: bool
    reason: str
    score: float
    flaw: Flaw | None


def judge_answer(
    task: str,
    answer: str,
    *,
    capability: int,
    model: str,
    registry: FlawRegistry,
    config: SimConfig,
) -> JudgeVerdict:
    """Judge ``answer`` to ``task`` as a model of ``capability`` would."""
    flaw = registry.lookup(answer) or visible_flaw(task, answer)
    key = answer_key(answer)
    roll = unit(config.seed, "judge", model, key)
    spread = unit(config.seed, "judge-score", model, key) * 0.2
    if flaw is not None:
        table = config.judge_subtle_detection if flaw.subtle else config.judge_detection
        if roll < table[capability - 1]:
            return JudgeVerdict(False, f"The answer {flaw.detail}.", round(0.1 + spread, 3), flaw)
        return JudgeVerdict(True, _praise(task), round(0.7 + spread, 3), flaw)
    if roll < config.judge_false_reject[capability - 1]:
        terms = key_terms(task, 1) or ["the task"]
        reason = f"The answer is not specific enough about {terms[0]}."
        return JudgeVerdict(False, reason, round(0.3 + spread, 3), None)
    return JudgeVerdict(True, _praise(task), round(0.78 + spread, 3), None)


def _praise(task: str) -> str:
    terms = key_terms(task, 2)
    about = " and ".join(terms) if terms else "the task"
    return f"The answer addresses {about} completely and meets the criteria."
