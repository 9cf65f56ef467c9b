"""Deterministic prose: the simulated answer text, and the flaws planted in it.

The text is assembled from fixed sentence templates filled with the instruction's key
terms; it reads like an answer but carries no knowledge. Flaws are planted where a real
verifier can catch them (see docs/sim.md, "Flaws").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Brief", "Evidence", "Flaw", "FlawKind", "invented_id", "sentence", "write_answer"]

FlawKind = Literal[
    "missing_section",
    "invented_citation",
    "incomplete",
    "contradiction",
    "empty_field",
    "wrong_location",
]

_OPENERS = (
    "The question turns on {a}, read together with {b}.",
    "Looking at {a} first makes {b} much easier to judge.",
    "{A} is the heart of the matter, and {b} follows from it.",
    "A careful reading of {a} shows how it shapes {b}.",
)
_MIDDLES = (
    "The evidence points to {c} as the deciding factor.",
    "{C} is the main constraint, and it is manageable.",
    "In practice {c} and {a} tend to move together.",
    "The strongest consideration is {c}, which limits {b}.",
)
_CLOSERS = (
    "In short, {a} holds, with {b} as the main caveat.",
    "Overall the case for {a} is sound; {c} needs watching.",
    "The conclusion: prioritise {a} and revisit {c} later.",
)
_SECTION_LINES = (
    "On {s}: {a} is what matters most here, with {b} close behind.",
    "For {s}, the key point is how {c} bears on {a}.",
    "Regarding {s}, {b} and {c} together settle the question.",
)
_CONTRADICTION = "{A} has no bearing on {b}, so it can safely be set aside."
_PADDING = ("the main trade-off", "the wider context", "the practical outcome")


@dataclass(frozen=True, slots=True)
class Flaw:
    """What is wrong with a flawed answer (the ground truth recorded in the request log).

    Attributes:
        kind: ``missing_section``, ``invented_citation``, ``incomplete``,
            ``contradiction``, ``empty_field`` or ``wrong_location``.
        detail: The flaw in words, as a good judge would report it.
        subtle: Whether weak checks (sections present, citations exist) miss it.
    """

    kind: FlawKind
    detail: str
    subtle: bool = False


@dataclass(frozen=True, slots=True)
class Evidence:
    """A passage the answer may cite, with an exact quote from it when one is known."""

    id: str
    quote: str | None = None


@dataclass(frozen=True, slots=True)
class Brief:
    """What an answer is about, and whether (and how) it should be flawed.

    Attributes:
        terms: Key terms of the instruction.
        sections: Required Markdown sections.
        inputs: Ids of the dependency tasks whose outputs were given.
        evidence: Passages to cite.
        flawed: Plant a flaw.
        subtle: Make the flaw subtle.
    """

    terms: Sequence[str]
    sections: Sequence[str] = ()
    inputs: Sequence[str] = ()
    evidence: Sequence[Evidence] = field(default_factory=tuple)
    flawed: bool = False
    subtle: bool = False


def _slots(terms: Sequence[str]) -> dict[str, str]:
    padded = [*terms, *_PADDING][:3]
    slots = dict(zip("abc", padded, strict=True))
    slots.update({key.upper(): value[:1].upper() + value[1:] for key, value in slots.items()})
    return slots


def sentence(
    templates: Sequence[str], terms: Sequence[str], rng: random.Random, **extra: str
) -> str:
    """Return one template filled with the terms (shuffled by ``rng``)."""
    shuffled = list(terms[:4])
    rng.shuffle(shuffled)
    return rng.choice(templates).format(**_slots(shuffled), **extra)


def invented_id(real: str, rng: random.Random) -> str:
    """Return a passage id on the same path as ``real`` whose number does not exist."""
    path, _, number = real.rpartition("#")
    return f"{path}#{int(number or 0) + 900 + rng.randrange(90)}"


def _flaw_kind(brief: Brief) -> FlawKind | None:
    if not brief.flawed:
        return None
    if brief.subtle:
        return "contradiction"
    if brief.evidence:
        return "invented_citation"
    if brief.sections:
        return "missing_section"
    return "incomplete"


def _evidence_sentence(evidence: Sequence[Evidence], terms: Sequence[str]) -> str:
    parts = []
    for item in evidence:
        if item.quote:
            parts.append(f'The source says "{item.quote}" [{item.id}].')
        else:
            parts.append(f"This is supported by [{item.id}].")
    topic = terms[0] if terms else "the topic"
    return f"On {topic}: " + " ".join(parts) if parts else ""


def _cite(brief: Brief, kind: FlawKind | None, rng: random.Random) -> tuple[list[Evidence], str]:
    evidence = list(brief.evidence)
    if kind != "invented_citation" or not evidence:
        return evidence, ""
    fake = invented_id(evidence[-1].id, rng)
    evidence[-1] = Evidence(fake, None)
    return evidence, f"cites passage {fake}, which does not exist"


def _inputs_sentence(inputs: Sequence[str]) -> str:
    if not inputs:
        return ""
    return f"This draws on the inputs from {', '.join(inputs)}."


def write_answer(brief: Brief, rng: random.Random) -> tuple[str, Flaw | None]:
    """Return the answer text and the flaw planted in it (``None`` if sound)."""
    kind = _flaw_kind(brief)
    evidence, cite_detail = _cite(brief, kind, rng)
    if brief.sections:
        text, detail = _with_sections(brief, evidence, kind, rng)
    else:
        text, detail = _plain(brief, evidence, kind, rng)
    if kind is None:
        return text, None
    return text, Flaw(kind, cite_detail or detail, subtle=kind == "contradiction")


def _plain(
    brief: Brief, evidence: Sequence[Evidence], kind: FlawKind | None, rng: random.Random
) -> tuple[str, str]:
    terms = brief.terms
    opener = sentence(_OPENERS, terms, rng)
    if kind == "incomplete":
        return (
            f"{opener} The remaining parts of the task are left open.",
            "answers only part of the task",
        )
    parts = [
        opener,
        _inputs_sentence(brief.inputs),
        sentence(_MIDDLES, terms, rng),
        _evidence_sentence(evidence, terms),
        sentence(_CLOSERS, terms, rng),
    ]
    detail = ""
    if kind == "contradiction":
        parts.insert(3, _CONTRADICTION.format(**_slots(terms)))
        slots = _slots(terms)
        detail = f"claims that {slots['a']} has no bearing on {slots['b']}, against its source"
    return " ".join(part for part in parts if part), detail


def _with_sections(
    brief: Brief, evidence: Sequence[Evidence], kind: FlawKind | None, rng: random.Random
) -> tuple[str, str]:
    titles = list(brief.sections)
    skipped = rng.randrange(len(titles)) if kind == "missing_section" else None
    twisted = rng.randrange(len(titles)) if kind == "contradiction" else None
    blocks, detail = [], ""
    for index, title in enumerate(titles):
        if index == skipped:
            detail = f"omits the required section '{title}'"
            continue
        lines = [sentence(_SECTION_LINES, brief.terms, rng, s=title.lower())]
        if index == 0:
            lines += [_inputs_sentence(brief.inputs), _evidence_sentence(evidence, brief.terms)]
        if index == twisted:
            lines.append(_CONTRADICTION.format(**_slots(brief.terms)))
            detail = f"section '{title}' claims the opposite of its source"
        body = " ".join(line for line in lines if line)
        blocks.append(f"## {title}\n\n{body}")
    return "\n\n".join(blocks), detail
