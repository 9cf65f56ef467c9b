"""After the runs: the per-tier summary, the merged Markdown review, the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from orchestrator import NodeStatus, RunResult, TierLadder
from orchestrator.cli.render import SIMULATED_NOTE
from orchestrator.pricing import USD, ZERO_USD

from .diffs import ParsedDiff
from .interfaces import InterfaceChange
from .tasks import DeepReview, FilePass, Finding, deep_review_id, first_pass_id

# -- the summary ---------------------------------------------------------------------------


class TierShare(BaseModel):
    """The work one tier did, across both stages."""

    tier: str
    nodes_started: int
    """Nodes whose first attempt ran on this tier."""
    nodes_finished: int
    """Nodes whose last attempt ran on this tier."""
    attempts: int
    cost_usd: USD


class ReviewSummary(BaseModel):
    """How the work split across tiers, and what verification caught."""

    tiers: list[TierShare]
    nodes: int
    cost_usd: USD
    cheapest_tier: str
    cheap_node_share: float
    """Share of the nodes that finished on the cheapest tier."""
    cheap_cost_share: float
    """Share of the cost spent on the cheapest tier."""
    escalations: int
    rejected_by_verifier: dict[str, int]
    """Rejected attempts by the verifier that rejected them."""
    simulated: bool


def summarize(runs: Sequence[RunResult], ladder: TierLadder) -> ReviewSummary:
    """Nodes, attempts and cost per tier over every run (each tier listed, used or not)."""
    nodes = [node for run in runs for node in run.nodes]
    attempts = [attempt for node in nodes for attempt in node.attempts]
    names = [tier.name for tier in ladder.tiers]
    names += sorted({a.tier for a in attempts} - set(names))
    tiers = [
        TierShare(
            tier=name,
            nodes_started=sum(1 for n in nodes if n.attempts and n.attempts[0].tier == name),
            nodes_finished=sum(1 for n in nodes if n.final_tier == name),
            attempts=sum(1 for a in attempts if a.tier == name),
            cost_usd=sum((a.cost_usd for a in attempts if a.tier == name), ZERO_USD),
        )
        for name in names
    ]
    cost = sum((run.cost_usd for run in runs), ZERO_USD)
    rejected: dict[str, int] = {}
    for attempt in attempts:
        if attempt.verdict is not None and not attempt.verdict.passed:
            rejected[attempt.verdict.verifier] = rejected.get(attempt.verdict.verifier, 0) + 1
    cheap = tiers[0]
    return ReviewSummary(
        tiers=tiers, nodes=len(nodes), cost_usd=cost, cheapest_tier=cheap.tier,
        cheap_node_share=cheap.nodes_finished / len(nodes) if nodes else 0.0,
        cheap_cost_share=float(cheap.cost_usd / cost) if cost else 0.0,
        escalations=sum(1 for a in attempts if a.escalated_from is not None),
        rejected_by_verifier=rejected, simulated=any(run.simulated for run in runs),
    )  # fmt: skip


# -- the merged review ---------------------------------------------------------------------


class ReportedFinding(Finding):
    """A verified finding, with where it came from."""

    source: str
    """The task that found it."""
    tier: str
    """The tier whose answer passed verification."""


class ReviewReport(BaseModel):
    """Everything the review produced (what ``--json`` prints)."""

    diff: str
    simulated: bool
    files: list[str]
    changes: list[InterfaceChange]
    flagged: list[str]
    """Ids of the changes that got the strong review."""
    findings: list[ReportedFinding]
    failed: dict[str, str]
    """Tasks that did not succeed, with the reason."""
    summary: ReviewSummary
    markdown: str
    runs: list[RunResult] = Field(default_factory=list)


def _outputs(runs: Sequence[RunResult]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    outputs, tiers, failed = {}, {}, {}
    for run in runs:
        for node in run.nodes:
            if node.status is NodeStatus.SUCCEEDED:
                outputs[node.id], tiers[node.id] = node.output, node.final_tier or "?"
            else:
                failed[node.id] = node.reason or node.status.value
    return outputs, tiers, failed


def _finding_lines(findings: Sequence[ReportedFinding]) -> list[str]:
    return [
        f"- `{f.file}:{f.line}` **{f.severity}** ({f.category}, {f.tier}): {f.explanation}"
        f"\n  `{f.quote.strip()}`"
        for f in findings
    ] or ["- no findings"]


@dataclass
class _Merge:
    diff: ParsedDiff
    outputs: Mapping[str, Any]
    tiers: Mapping[str, str]
    findings: list[ReportedFinding] = field(default_factory=list)

    def take(self, task_id: str) -> list[ReportedFinding]:
        answer = self.outputs.get(task_id)
        if not isinstance(answer, FilePass | DeepReview):
            return []
        found = [
            ReportedFinding(**f.model_dump(), source=task_id, tier=self.tiers[task_id])
            for f in answer.findings
        ]
        self.findings += found
        return found


def merge_review(
    diff: ParsedDiff,
    changes: Sequence[InterfaceChange],
    flagged: Sequence[InterfaceChange],
    runs: Sequence[RunResult],
) -> tuple[str, list[ReportedFinding], dict[str, str]]:
    """One Markdown review from both stages: flagged changes first, then file by file."""
    outputs, tiers, failed = _outputs(runs)
    merge = _Merge(diff, outputs, tiers)
    lines = [f"# Code review: {diff.name}", ""]
    if any(run.simulated for run in runs):
        lines += [f"> {SIMULATED_NOTE}", ""]
    lines += [
        f"{len(diff.files)} files reviewed; {len(flagged)} of {len(changes)} public interface "
        "changes cross module interfaces and had an in-depth review.",
        "",
        "## Changes that cross module interfaces",
        "",
        "| change | kind | used in | flagged by |",
        "|---|---|---|---|",
    ]
    for change in changes:
        how = {"analysis": "analysis", "model": "model", "local": "-"}[change.decision]
        if change.decision == "model" and change not in flagged:
            how = "model: stays local"
        lines.append(
            f"| `{change.id}` | {change.kind} | {', '.join(change.used_in) or '-'} | {how} |"
        )
    for change in flagged:
        task = deep_review_id(change)
        answer = outputs.get(task)
        lines += ["", f"### `{change.id}` ({change.kind})", ""]
        if isinstance(answer, DeepReview):
            lines += [f"Risk: {answer.risk}. {answer.summary}", ""]
        else:
            lines += [f"In-depth review did not complete: {failed.get(task, 'not run')}", ""]
        lines += _finding_lines(merge.take(task))
    lines += ["", "## First pass, file by file"]
    for path in diff.files:
        task = first_pass_id(path)
        answer = outputs.get(task)
        summary = answer.summary if isinstance(answer, FilePass) else (
            f"First pass did not complete: {failed.get(task, 'not run')}"
        )  # fmt: skip
        lines += ["", f"### {path}", "", summary, ""]
        lines += _finding_lines(merge.take(task))
    return "\n".join(lines) + "\n", merge.findings, failed


def build_report(
    diff: ParsedDiff,
    changes: Sequence[InterfaceChange],
    flagged: Sequence[InterfaceChange],
    runs: Sequence[RunResult],
    ladder: TierLadder,
) -> ReviewReport:
    """The report of both stages: the merged review, its findings and the per-tier summary."""
    markdown, findings, failed = merge_review(diff, changes, flagged, runs)
    summary = summarize(runs, ladder)
    return ReviewReport(
        diff=diff.name, simulated=summary.simulated, files=list(diff.files),
        changes=list(changes), flagged=[c.id for c in flagged], findings=findings,
        failed=failed, summary=summary, markdown=markdown, runs=list(runs),
    )  # fmt: skip


def render_summary(report: ReviewReport) -> str:
    """The per-tier split and what verification caught, as text."""
    s = report.summary
    lines = [SIMULATED_NOTE, ""] if report.simulated else []
    lines.append(f"{'tier':<8} {'started':>7} {'finished':>8} {'attempts':>8} {'cost':>10}")
    for t in s.tiers:
        lines.append(
            f"{t.tier:<8} {t.nodes_started:>7} {t.nodes_finished:>8} {t.attempts:>8} "
            f"${t.cost_usd:>9.5f}"
        )
    attempts = sum(t.attempts for t in s.tiers)
    lines.append(f"{'total':<8} {s.nodes:>7} {s.nodes:>8} {attempts:>8} ${s.cost_usd:>9.5f}")
    rejected = ", ".join(f"{n} by {v}" for v, n in s.rejected_by_verifier.items()) or "none"
    lines += [
        f"The cheap tier ({s.cheapest_tier}) finished {s.cheap_node_share:.0%} of the nodes "
        f"for {s.cheap_cost_share:.0%} of the cost.",
        f"Escalations: {s.escalations}; answers rejected: {rejected}.",
        f"Findings: {len(report.findings)}, each citing a line of the diff; "
        f"strong reviews: {len(report.flagged)} of {len(report.changes)} interface changes.",
    ]
    return "\n".join(lines)
