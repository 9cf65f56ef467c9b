"""The wire conventions: how the engine words its requests, in one place.

The engine writes these texts (system prompts, dependency inputs, escalation feedback,
judge requests) and the simulator (:mod:`orchestrator_sim`) reads them to answer like a
model would; both import them from here, so neither can drift from the other. This module
imports nothing of the library: it is the floor both stand on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "CITED_PASSAGES_MARK",
    "CLASSIFY_LABELS_MARK",
    "CLASSIFY_SYSTEM_PROMPT",
    "CLASSIFY_TASK_MARK",
    "DEFAULT_SYSTEM_PROMPT",
    "FEEDBACK_MARK",
    "INPUTS_MARK",
    "JUDGE_ANSWER_MARK",
    "JUDGE_CRITERIA_MARK",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_TASK_MARK",
    "REQUIRED_SECTIONS_MARK",
    "REVISION_MARK",
    "SECTIONS_HINT",
    "SIMULATED_HEADER",
    "TASK_MARK",
    "BriefTask",
    "classify_prompt",
    "feedback_prompt",
    "input_block",
    "inputs_prompt",
    "is_simulated",
    "judge_prompt",
    "judge_shared_chars",
    "parse_label",
    "parse_revision",
    "required_sections",
    "revision_brief",
    "sections_prompt",
    "shared_inputs_prompt",
    "shared_prefix_chars",
]

SIMULATED_HEADER = "x-orchestrator-simulated"
"""Response header by which the local server marks its answers as simulated."""

DEFAULT_SYSTEM_PROMPT = (
    "You carry out one task of a larger plan. Do exactly what the task asks, completely and "
    "accurately, using the inputs from earlier tasks where they are given. Do not ask "
    "questions back; if something is uncertain, say so in the answer."
)
"""The system prompt of a task's attempts (``RunConfig.system_prompt`` overrides it)."""

JUDGE_SYSTEM_PROMPT = (
    "You are a strict verifier. Judge whether the answer satisfies the task and the "
    "criteria. Look for factual errors, missing parts, unsupported claims, claims the "
    "task's inputs or the cited passages do not support, and answers that only look "
    "complete. Reply with the verdict as JSON."
)
"""The system prompt of a judge call."""

CLASSIFY_SYSTEM_PROMPT = (
    "You sort tasks before they are assigned. Say how hard the task is for a small, fast "
    "language model to answer correctly. Do not do the task. Reply with one label only."
)
"""The system prompt of a classifier call (a cheap tier labelling a task before routing)."""
CLASSIFY_TASK_MARK = "Task to classify:"
CLASSIFY_LABELS_MARK = "Labels, easiest first:"

INPUTS_MARK = "Inputs from earlier tasks:"
"""Starts the dependencies' outputs, before the task's instruction."""
TASK_MARK = "The task:"
"""Starts a task's instruction after its inputs."""
FEEDBACK_MARK = "<previous_attempt"
"""Starts the rejected answer an escalated attempt is shown."""
JUDGE_TASK_MARK = "Task:"
JUDGE_CRITERIA_MARK = "Criteria:"
JUDGE_ANSWER_MARK = "Answer to judge:"
CITED_PASSAGES_MARK = "The passages the answer cites, from the corpus:"
REQUIRED_SECTIONS_MARK = "Required sections:"
"""Starts the line (after the instruction) naming the Markdown sections the answer needs."""
SECTIONS_HINT = "Give each required section a Markdown heading of its own, titled as listed."
"""Follows the :data:`REQUIRED_SECTIONS_MARK` line: how the sections are checked."""

_SECTIONS_LINE = re.compile(r"required sections?\s*:\s*([^\n]+)", re.IGNORECASE)


def input_block(name: str, text: str) -> str:
    """One input: ``text`` in an ``<input task=...>`` block named ``name``."""
    return f"<input task={name!r}>\n{text}\n</input>"


def inputs_prompt(instruction: str, inputs: Iterable[tuple[str, str]]) -> str:
    """Each ``(task id, output text)`` in an ``<input>`` block, then the instruction.

    The inputs come first: long material before the question reads best, and tasks that
    read the same inputs then share a prefix the prompt cache can serve
    (:func:`shared_prefix_chars`).
    """
    blocks = [input_block(name, text) for name, text in inputs]
    return "\n\n".join([INPUTS_MARK, *blocks, f"{TASK_MARK}\n{instruction}"])


def shared_inputs_prompt(
    instruction: str, shared: Iterable[tuple[str, str]], inputs: Iterable[tuple[str, str]] = ()
) -> tuple[str, str]:
    """An :func:`inputs_prompt` in two parts: the ``shared`` inputs, then the rest.

    The first part is word for word the same in every task given the same ``shared``
    inputs (corpus passages several tasks read, say), so it can carry a cache breakpoint;
    the second holds the task's own ``inputs`` and its instruction. Joined by a blank line,
    they are ``inputs_prompt(instruction, [*shared, *inputs])``, which the simulator reads
    like any other.
    """
    head = "\n\n".join([INPUTS_MARK, *(input_block(name, text) for name, text in shared)])
    rest = inputs_prompt(instruction, inputs)[len(INPUTS_MARK) + 2 :]
    return head, rest


def shared_prefix_chars(prompt: str) -> int:
    """How much of an :func:`inputs_prompt` is its inputs (0 for any other prompt)."""
    if not prompt.startswith(INPUTS_MARK):
        return 0
    end = prompt.rfind(f"\n\n{TASK_MARK}\n")
    return end + 2 if end > 0 else 0


def required_sections(text: str) -> list[str]:
    """The section titles every ``Required sections: A, B`` line of ``text`` names, in order.

    Titles are split at commas and semicolons, with a trailing full stop, backticks,
    asterisks and quotes stripped; a title named twice is listed once.
    """
    titles: dict[str, str] = {}
    for line in _SECTIONS_LINE.finditer(text):
        for part in re.split(r"[,;]", line.group(1)):
            title = part.strip().strip(".").strip("`*\"'").strip()
            if title:
                titles.setdefault(title.lower(), title)
    return list(titles.values())


def sections_prompt(prompt: str, sections: Sequence[str]) -> str:
    """``prompt`` ending with the Markdown ``sections`` its answer must have.

    A ``Required sections:`` line and :data:`SECTIONS_HINT` are appended after everything
    else (so a cacheable prefix stays as it was), unless a line of ``prompt`` names every
    section already.
    """
    named = {title.lower() for title in required_sections(prompt)}
    if all(section.strip().lower() in named for section in sections):
        return prompt
    listed = ", ".join(section.strip() for section in sections)
    return f"{prompt}\n\n{REQUIRED_SECTIONS_MARK} {listed}\n{SECTIONS_HINT}"


def feedback_prompt(prompt: str, tier: str, answer: str, why: str) -> str:
    """The prompt of an attempt after ``tier``'s ``answer`` was rejected for ``why``."""
    return (
        f"{prompt}\n\n{FEEDBACK_MARK} tier={tier!r}>\n{answer}\n</previous_attempt>\n"
        f"That attempt was rejected: {why}\n"
        "Give a corrected, complete answer to the task."
    )


def judge_prompt(task: str, criteria: str, answer: str, evidence: str = "") -> str:
    """The user turn of a judge call: the criteria, any evidence, the task, the answer.

    What judge calls share comes first: the criteria (the same for every answer a check
    judges) and the passages the answer cites (research answers on one goal cite many of
    the same), so a cache breakpoint after them (:func:`judge_shared_chars`) can serve
    them to the next judge call on the same model; the task and the answer follow.
    """
    parts = [f"{JUDGE_CRITERIA_MARK}\n{criteria}"]
    if evidence:
        parts.append(f"{CITED_PASSAGES_MARK}\n{evidence}")
    parts += [f"{JUDGE_TASK_MARK}\n{task}", f"{JUDGE_ANSWER_MARK}\n<answer>\n{answer}\n</answer>"]
    return "\n\n".join(parts)


def judge_shared_chars(prompt: str) -> int:
    """How much of a :func:`judge_prompt` is what judge calls share (criteria, evidence)."""
    end = prompt.find(f"\n\n{JUDGE_TASK_MARK}\n")
    return end + 2 if end > 0 else 0


def classify_prompt(task: str, labels: Iterable[str]) -> str:
    """The user turn of a classifier call: the task, then the labels (easiest first)."""
    return (
        f"{CLASSIFY_TASK_MARK}\n<task>\n{task}\n</task>\n\n"
        f"{CLASSIFY_LABELS_MARK} {', '.join(labels)}\nAnswer with one of these labels."
    )


def parse_label(text: str, labels: Iterable[str]) -> str | None:
    """The label a classifier answered: the first word of ``text`` that is one, any case."""
    known = {label.lower(): label for label in labels}
    for word in text.replace(",", " ").replace(".", " ").split():
        label = known.get(word.strip("\"'*`:;!?()[]").lower())
        if label is not None:
            return label
    return None


def is_simulated(header_value: str | None) -> bool:
    """Whether a :data:`SIMULATED_HEADER` value marks the answer as simulated."""
    return (header_value or "").lower() in {"1", "true", "yes"}


REVISION_MARK = "The plan was run and some of its tasks failed for good."
"""Opens the brief a planner revises the rest of a plan from (``--replan``)."""
_KEPT = "Succeeded (keep these tasks, with the same ids: their outputs are reused):"
_FAILED = "Failed on every tier tried (replace them with tasks that can succeed):"
_NOT_RUN = "Not run, because they depend on failed tasks (keep, change or drop them):"
_BRIEF_ITEM = re.compile(r"^- ([A-Za-z0-9_.-]+)(?: \(after ([^)]*)\))?: (.*)$", re.MULTILINE)

BriefTask = tuple[str, str, Sequence[str]]
"""A task in a revision brief: id, instruction, the ids it depends on."""


def revision_brief(
    kept: Iterable[BriefTask], failed: Iterable[tuple[BriefTask, str]], not_run: Iterable[BriefTask]
) -> str:
    """The brief a planner revises a plan from: what succeeded, failed (and why), did not run."""

    def item(task: BriefTask) -> str:
        task_id, instruction, after = task
        deps = f" (after {', '.join(after)})" if after else ""
        return f"- {task_id}{deps}: {' '.join(instruction.split())}"

    lines = [REVISION_MARK, "", _KEPT, *(map(item, kept))]
    lines += ["", _FAILED]
    for task, why in failed:
        lines += [item(task), f"  what was tried and why it failed: {why}"]
    lines += ["", _NOT_RUN, *(map(item, not_run))]
    lines += [
        "",
        "Return the whole revised plan as JSON: the succeeded tasks unchanged, new tasks "
        "(with new ids) for the failed work, narrower or split where a task asked too much, "
        "and the tasks that depended on them, pointed at the new ones.",
    ]
    return "\n".join(lines)


def parse_revision(text: str) -> tuple[list[BriefTask], list[BriefTask], list[BriefTask]] | None:
    """The tasks a :func:`revision_brief` keeps, lists as failed and as not run; or ``None``."""
    start = text.find(REVISION_MARK)
    if start < 0:
        return None
    body = text[start:]
    starts = [body.find(head) for head in (_KEPT, _FAILED, _NOT_RUN)]
    if min(starts) < 0:
        return None
    kept, failed, not_run = (
        [
            (str(task_id), str(text), [str(d) for d in after.split(", ") if d])
            for task_id, after, text in _BRIEF_ITEM.findall(body[a:b])
        ]
        for a, b in zip(starts, [*starts[1:], len(body)], strict=True)
    )
    return list[BriefTask](kept), list[BriefTask](failed), list[BriefTask](not_run)
