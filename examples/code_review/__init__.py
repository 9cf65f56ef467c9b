"""Helpers of the tiered code-review example (``examples/code_review_triage.py``).

``diffs`` parses a unified diff, ``verify`` is the verifier that every citation is a line of
it, ``interfaces`` finds the public definitions a diff touches and who uses them, ``tasks``
holds the tasks' answers, checks, ids and prompts, ``report`` merges the runs into a review
and a per-tier summary, and ``cli`` is the command line. The workflow itself is the example.
"""

from .diffs import DiffLine, FileDiff, ParsedDiff, parse_diff
from .interfaces import InterfaceChange, find_interface_changes
from .report import ReviewReport, ReviewSummary, build_report, render_summary, summarize
from .tasks import (
    DeepReview,
    FilePass,
    Finding,
    InterfaceJudgement,
    classify_id,
    deep_review_id,
    first_pass_id,
    flag_changes,
)
from .verify import DiffCitations, cited_locations

__all__ = [
    "DeepReview",
    "DiffCitations",
    "DiffLine",
    "FileDiff",
    "FilePass",
    "Finding",
    "InterfaceChange",
    "InterfaceJudgement",
    "ParsedDiff",
    "ReviewReport",
    "ReviewSummary",
    "build_report",
    "cited_locations",
    "classify_id",
    "deep_review_id",
    "find_interface_changes",
    "first_pass_id",
    "flag_changes",
    "parse_diff",
    "render_summary",
    "summarize",
]
