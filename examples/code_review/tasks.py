"""What the workflow's tasks ask for and answer: structured answers, checks, ids, prompts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from orchestrator import Predicate

from .diffs import FileDiff, ParsedDiff
from .interfaces import InterfaceChange

# -- structured answers --------------------------------------------------------------------


class Finding(BaseModel):
    """One review comment, tied to a line of the diff."""

    file: str = Field(description="path of the file, as in the diff's `+++ b/` header")
    line: int = Field(ge=1, description="line number on the new side of the diff")
    quote: str = Field(description="the text of that line, verbatim")
    severity: Literal["minor", "major", "blocker"]
    category: Literal["bug", "style", "docs", "interface", "security"]
    explanation: str = Field(description="what is wrong and how to fix it, in one sentence")


class FilePass(BaseModel):
    """A first-pass review of one file."""

    summary: str = Field(description="what the change to this file does, in one sentence")
    findings: list[Finding]


class InterfaceJudgement(BaseModel):
    """Whether one change crosses a module interface."""

    crosses_interface: bool
    reason: str = Field(description="why, in one sentence")


class DeepReview(BaseModel):
    """An in-depth review of a change that crosses module interfaces."""

    summary: str = Field(description="the change's effect on other modules, in one sentence")
    risk: Literal["high", "medium", "low"]
    findings: list[Finding]


def _has_summary(answer: FilePass | DeepReview) -> bool:
    return bool(answer.summary.strip())


def _has_reason(answer: InterfaceJudgement) -> bool:
    return bool(answer.reason.strip())


def summary_given() -> Predicate:
    """A check that a review's summary is not empty."""
    return Predicate(_has_summary, "the summary is empty", name="summary")


def reason_given() -> Predicate:
    """A check that a judgement gives its reason."""
    return Predicate(_has_reason, "give the reason for the decision", name="reason")


# -- task ids ------------------------------------------------------------------------------


def _task_id(prefix: str, name: str) -> str:
    return f"{prefix}:{re.sub(r'[^A-Za-z0-9_.-]', '.', name)}"


def first_pass_id(path: str) -> str:
    """The task id of a file's first pass."""
    return _task_id("first_pass", path)


def classify_id(change: InterfaceChange) -> str:
    """The task id of a change's classifier."""
    return _task_id("classify", change.id)


def deep_review_id(change: InterfaceChange) -> str:
    """The task id of a change's in-depth review."""
    return _task_id("deep_review", change.id)


# -- prompts -------------------------------------------------------------------------------

_CITE = (
    "For each finding give the file path as in the diff's `+++ b/` header, the line number "
    "on the new side of the diff, that line's text as `quote`, a severity, a category and a "
    "one-sentence explanation. Cite only lines shown in the diff below."
)


def first_pass_prompt(file: FileDiff) -> str:
    """The cheap first pass over one file."""
    return (
        f"File {file.path}: first-pass code review of this change.\n"
        "Look for style problems, obvious bugs and missing docstrings in what the change "
        f"adds. {_CITE} Return no findings if the change is clean.\n\n"
        f"```diff\n{file.text}```"
    )


def classify_prompt(change: InterfaceChange, diff: ParsedDiff) -> str:
    """The model's half of the classifier, for a change the analysis could not settle."""
    return (
        f"Change {change.id}: does it cross a module interface?\n{change.describe()}\n"
        "Decide whether code in other modules must change, or may behave differently, "
        "because of it; callers outside this diff count. Answer with crosses_interface and "
        "a one-sentence reason.\n\n"
        f"```diff\n{diff.files[change.file].text}```"
    )


def review_files(change: InterfaceChange) -> list[str]:
    """The files an in-depth review of ``change`` looks at (and may cite)."""
    return [change.file, *change.used_in]


def deep_review_prompt(change: InterfaceChange, diff: ParsedDiff) -> str:
    """The strong tier's in-depth review of one flagged change."""
    shown = "".join(diff.files[path].text for path in review_files(change))
    return (
        f"Change {change.id}: in-depth review of a change that crosses module interfaces.\n"
        f"{change.describe()}\n"
        "Check every use of it in the other files of the diff against the new definition "
        "(arguments, return type, currency and rounding, errors raised), and say what "
        f"callers outside the diff may break. {_CITE}\n\n```diff\n{shown}```"
    )


# -- between the stages --------------------------------------------------------------------


def flag_changes(
    changes: Sequence[InterfaceChange], judgements: Mapping[str, InterfaceJudgement | None]
) -> list[InterfaceChange]:
    """Changes that cross module interfaces: by analysis, or by the model's judgement.

    ``judgements`` maps classifier task ids to their answers. A change the model could not
    judge (its node failed) is flagged: better an extra strong review than a missed one.
    """
    flagged = []
    for change in changes:
        judged = judgements.get(classify_id(change))
        if change.decision == "analysis" or (
            change.decision == "model" and (judged is None or judged.crosses_interface)
        ):
            flagged.append(change)
    return flagged
