"""Reading requests: the prompt conventions the brain relies on (documented in docs/sim.md).

* The *instruction* is the text of the last user turn that has text, cut before a
  ``<previous_attempt ...>`` feedback block; when the turn starts with ``Inputs from
  earlier tasks:`` (the engine puts inputs first), what follows the last ``The task:``,
  else what comes before any ``Inputs from earlier tasks:``.
* ``Required sections: A, B, C`` (one line, anywhere in the instruction; the engine
  appends one for a task's ``required_sections`` check) lists the Markdown sections the
  answer must have; several such lines add up.
* ``[difficulty=N]`` (N in 1..3) in the instruction forces the task's difficulty: a hook
  for tests and demos.
* Inputs from dependencies arrive as ``<input task='id'> ... </input>``.
* A judge request carries ``Task:``, ``Criteria:`` and the answer in ``<answer>`` tags.
* Citations look like ``[path#n]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.wire import (
    FEEDBACK_MARK as _FEEDBACK_MARK,
)
from orchestrator.wire import (
    INPUTS_MARK as _INPUTS_MARK,
)
from orchestrator.wire import (
    JUDGE_ANSWER_MARK,
    JUDGE_CRITERIA_MARK,
    JUDGE_TASK_MARK,
)
from orchestrator.wire import SECTIONS_HINT as _SECTIONS_HINT
from orchestrator.wire import (
    TASK_MARK as _TASK_MARK,
)
from orchestrator.wire import required_sections as _wire_sections
from orchestrator_sim.seeding import unit

__all__ = [
    "CITATION",
    "ToolResult",
    "citation_ids",
    "difficulty",
    "feedback_given",
    "input_task_ids",
    "inputs_text",
    "instruction",
    "judge_parts",
    "key_terms",
    "last_user_text",
    "normalise",
    "required_sections",
    "result_ids",
    "system_text",
    "tool_results",
]

CITATION = re.compile(r"\[([^\[\]\s]+#\d+)\]")
_FORCED = re.compile(r"\[difficulty\s*=\s*([123])\]", re.IGNORECASE)
_SECTIONS = re.compile(r"required sections?\s*:\s*([^\n]+)", re.IGNORECASE)
_INPUT_TASK = re.compile(r"<input task=['\"]([^'\"]+)['\"]>")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*[A-Za-z0-9]")
_CUES = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\bprov(e|es|ing)\b",
        r"\bsynthesi[sz]",
        r"\bcompar(e|es|ing|ison)\b",
        r"\btrade[- ]?offs?\b",
        r"\bderiv(e|ation)\b",
        r"\bjustify\b",
    )
)
_STOPWORD_TEXT = """
    about above after again against also among an and any are around as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having here how if in into is it its itself just may might
    more most must no nor not now of off on once only or other our out over own same shall
    should so some such than that the their them then there these they this those through to
    too under until up upon very was we were what when where which while who whom why will
    with within without would you your give list write make short brief using use answer task
    required sections section words word please provide describe explain each every one two
    three four five first second third based given following include includes including
    compare compares comparing explain explains describe summarize summarise synthesize
    synthesise prove proves analyse analyze discuss evaluate justify derive identify
    outline assess research check state show consider answers tasks find search look
    tell facts information details
    """
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_CRITERIA, _ANSWER = re.escape(JUDGE_CRITERIA_MARK), re.escape(JUDGE_ANSWER_MARK)
_JUDGE_TASK = re.compile(
    rf"{re.escape(JUDGE_TASK_MARK)}\s*\n(.*?)(?:\n\s*{_CRITERIA}|\n\s*{_ANSWER}|$)", re.DOTALL
)
_JUDGE_CRITERIA = re.compile(rf"{_CRITERIA}\s*\n(.*?)(?:\n\s*{_ANSWER}|$)", re.DOTALL)


def normalise(text: str) -> str:
    """Collapse whitespace and lower-case (for hashing and comparing texts)."""
    return " ".join(text.lower().split())


def _text(content: str | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")


def system_text(system: str | Sequence[Mapping[str, Any]] | None) -> str:
    """Return the system prompt as one string."""
    return "" if system is None else _text(system)


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the text of the last user turn that has text (tool results skipped)."""
    for message in reversed(messages):
        if message["role"] == "user":
            text = _text(message["content"])
            if text.strip():
                return text
    return ""


_TASK_AFTER_INPUTS = f"\n\n{_TASK_MARK}\n"


def instruction(text: str) -> str:
    """Return the instruction: the user text without its inputs and previous-attempt feedback."""
    text = text.split(_FEEDBACK_MARK, 1)[0]
    if text.startswith(_INPUTS_MARK):  # inputs first, then the task
        end = text.rfind(_TASK_AFTER_INPUTS)
        return text[end + len(_TASK_AFTER_INPUTS) :].strip() if end >= 0 else ""
    return text.split(_INPUTS_MARK, 1)[0].strip()


def feedback_given(text: str) -> bool:
    """Whether the user text reports a previous failed attempt."""
    return _FEEDBACK_MARK in text


def inputs_text(text: str) -> str:
    """Return the ``Inputs from earlier tasks`` part of the user text (may be empty)."""
    if _INPUTS_MARK not in text:
        return ""
    after = text.split(_INPUTS_MARK, 1)[1].split(_FEEDBACK_MARK, 1)[0]
    if text.startswith(_INPUTS_MARK):
        end = after.rfind(_TASK_AFTER_INPUTS)
        return after[:end] if end >= 0 else after
    return after


def input_task_ids(text: str) -> list[str]:
    """Return the ids of the dependency inputs given in the user text."""
    return list(dict.fromkeys(_INPUT_TASK.findall(text)))


def required_sections(text: str) -> list[str]:
    """Return the section titles listed after ``Required sections:`` (every such line)."""
    return _wire_sections(text)


def difficulty(text: str, seed: int) -> int:
    """Return the task's true difficulty, 1..3 (see docs/sim.md, "Difficulty")."""
    forced = _FORCED.search(text)
    if forced:
        return int(forced.group(1))
    roll = unit(seed, "difficulty", normalise(text))
    base = 1 if roll < 0.55 else 2 if roll < 0.85 else 3
    cues = sum(1 for cue in _CUES if cue.search(text))
    return min(3, base + min(2, cues))


def key_terms(text: str, limit: int = 6) -> list[str]:
    """Return up to ``limit`` distinctive words of ``text``, in order of appearance."""
    text = _FORCED.sub(" ", _SECTIONS.sub(" ", text.replace(_SECTIONS_HINT, " ")))
    terms: list[str] = []
    for word in _WORD.findall(text):
        lowered = word.lower()
        if len(lowered) < 4 or lowered in _STOPWORDS or lowered in terms:
            continue
        terms.append(lowered)
        if len(terms) == limit:
            break
    return terms


def citation_ids(text: str) -> list[str]:
    """Return the ``[path#n]`` ids in ``text``, in order, without repeats."""
    return list(dict.fromkeys(CITATION.findall(text)))


def _json_ids(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str | int) and not isinstance(item, bool):
                yield str(item)
            else:
                yield from _json_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_ids(item)


def result_ids(text: str) -> list[str]:
    """Return the ids a tool result offers: ``[path#n]`` citations, or JSON ``"id"`` values."""
    ids = citation_ids(text)
    if ids:
        return ids
    try:
        return list(dict.fromkeys(_json_ids(json.loads(text))))
    except ValueError:
        return []


def _result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content", "")
    return content if isinstance(content, str) else _text(content)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One tool call of the conversation and its result.

    Attributes:
        name: Tool name.
        arguments: The call's input.
        text: The result as text.
        is_error: Whether the client reported an error.
    """

    name: str
    arguments: Mapping[str, Any]
    text: str
    is_error: bool


def tool_results(messages: Sequence[Mapping[str, Any]]) -> list[ToolResult]:
    """Return every tool call so far that has a result, in order."""
    calls: dict[str, Mapping[str, Any]] = {}
    results = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            continue
        for block in content:
            if block.get("type") == "tool_use":
                calls[str(block.get("id"))] = block
            elif block.get("type") == "tool_result":
                call = calls.get(str(block.get("tool_use_id")), {})
                arguments = call.get("input")
                results.append(
                    ToolResult(
                        str(call.get("name", "")),
                        arguments if isinstance(arguments, Mapping) else {},
                        _result_text(block),
                        bool(block.get("is_error")),
                    )
                )
    return results


def judge_parts(text: str) -> tuple[str, str, str]:
    """Split a judge request into (task, criteria, answer); missing parts are empty.

    The task is the instruction only: the inputs shown to the judge (after ``Inputs from
    earlier tasks:``) are cut, as for an author's request. The answer is the last
    ``<answer>`` block, so inputs that quote answer tags do not confuse it.
    """
    answer_matches = re.findall(r"<answer>\n?(.*?)\n?</answer>", text, re.DOTALL)
    answer = answer_matches[-1] if answer_matches else text
    task_match = _JUDGE_TASK.search(text)
    criteria_match = _JUDGE_CRITERIA.search(text)
    task = instruction(task_match.group(1)) if task_match else ""
    criteria = criteria_match.group(1).strip() if criteria_match else ""
    return task, criteria, answer
