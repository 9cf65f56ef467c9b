"""Tiered code review of a diff, as many teams run it.

1. **First pass**, cheapest tier: every file of the diff, for style, bugs and missing docs.
2. **Classifier**: plain Python finds the public definitions the diff adds, changes or
   removes, and which other files of the diff use them; a cheap-tier model judges the rest.
3. **Strong review**, a stronger tier: only the changes that cross module interfaces.
4. **Verified**: ``DiffCitations`` rejects an answer citing a line not on the diff's new
   side, and the node is re-run one tier up.
5. **Merged** into one Markdown review, with the work each tier carried.

A workflow's shape is fixed when it is built, so the strong reviews are a second workflow,
built from the classifier's answers. This file is the workflow; the diff parser, verifier,
analysis, prompts, report and command line are helpers in ``examples/code_review/``.
Offline it runs against the local simulator, whose answers are simulated (docs/sim.md).

    python examples/code_review_triage.py [--diff FILE] [--json] [--seed N] [--online]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from code_review import cli, tasks
from code_review.diffs import ParsedDiff, parse_diff
from code_review.interfaces import InterfaceChange, find_interface_changes
from code_review.report import ReviewReport, build_report
from code_review.verify import DiffCitations

from orchestrator import Engine, ModelClient, Needs, TierLadder, Workflow, default_ladder

FIRST_PASS_NEEDS = Needs(reasoning=1, coding=1)
CLASSIFIER_NEEDS = Needs(reasoning=1, coding=1)
DEEP_REVIEW_NEEDS = Needs(reasoning=2, coding=2)


def _llm(wf: Workflow, task_id: str, prompt: str, **options: Any) -> None:
    """Add an LLM task whose prompt is fixed when the workflow is built."""

    def build() -> str:
        return prompt

    build.__doc__ = prompt.splitlines()[0]  # the task's instruction in plans, logs, traces
    wf.llm(name=task_id, **options)(build)


def triage_workflow(diff: ParsedDiff, changes: Sequence[InterfaceChange]) -> Workflow:
    """Stage 1: a first pass per file, and a classifier per change the analysis left open."""
    wf = Workflow(f"First-pass review and interface triage of {diff.name}")
    for file in diff.files.values():
        _llm(
            wf, tasks.first_pass_id(file.path), tasks.first_pass_prompt(file),
            needs=FIRST_PASS_NEEDS, output=tasks.FilePass,
            verify=[DiffCitations(diff, files=[file.path]), tasks.summary_given()],
        )  # fmt: skip
    for change in changes:
        if change.decision == "model":
            _llm(
                wf, tasks.classify_id(change), tasks.classify_prompt(change, diff),
                needs=CLASSIFIER_NEEDS, output=tasks.InterfaceJudgement,
                verify=[tasks.reason_given()],
            )  # fmt: skip
    return wf


def deep_review_workflow(diff: ParsedDiff, flagged: Sequence[InterfaceChange]) -> Workflow:
    """Stage 2: an in-depth review, on a stronger tier, of each flagged change only."""
    wf = Workflow(f"In-depth review of the cross-module changes in {diff.name}")
    for change in flagged:
        _llm(
            wf, tasks.deep_review_id(change), tasks.deep_review_prompt(change, diff),
            needs=DEEP_REVIEW_NEEDS, output=tasks.DeepReview,
            verify=[DiffCitations(diff, files=tasks.review_files(change)), tasks.summary_given()],
        )  # fmt: skip
    return wf


async def review_diff(
    diff_text: str, client: ModelClient, *, name: str = "diff", ladder: TierLadder | None = None
) -> ReviewReport:
    """Review a unified diff: triage (stage 1), in-depth reviews of flagged changes (stage 2).

    Raises:
        UserError: If ``diff_text`` is not a unified diff.
    """
    ladder = ladder or default_ladder()
    diff = parse_diff(diff_text, name)
    changes = find_interface_changes(diff)
    engine = Engine(client, ladder)
    runs = [await engine.run(triage_workflow(diff, changes))]
    judged = [node for node in runs[0].nodes if isinstance(node.output, tasks.InterfaceJudgement)]
    flagged = tasks.flag_changes(changes, {node.id: node.output for node in judged})
    if flagged:
        runs.append(await engine.run(deep_review_workflow(diff, flagged)))
    return build_report(diff, changes, flagged, runs, ladder)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return cli.main(review_diff, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
