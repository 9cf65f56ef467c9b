"""Tiered code review of a diff, as many teams run it.

1. **First pass, cheap tier**: every file of the diff is reviewed for style, obvious bugs and
   missing docs on the cheapest tier.
2. **Classifier**: Python finds what it can deterministically: public functions, methods and
   classes whose definition the diff adds, changes or removes, and which other files of the
   diff use them. A changed or removed definition used by another file of the diff crosses a
   module interface, no model needed; the undecidable rest (a changed signature with no
   caller in the diff, a new public API other files use) is judged by a cheap-tier model.
3. **Strong review**: only the changes flagged as crossing module interfaces are reviewed in
   depth, on a stronger tier.
4. **Verified**: every finding cites a file and line; :class:`DiffCitations` parses the
   unified diff and rejects an answer citing a file or line that is not on the diff's new
   side (or quoting a line wrongly). A rejected answer is re-run one tier up.
5. **Merged** into one Markdown review, with a summary of the work each tier carried.

A workflow's shape is fixed when it is built, so the strong reviews are a second workflow,
built from the classifier's answers: only flagged changes get a node.

Offline it starts the local Messages-API simulator and points the real Anthropic SDK at it;
its answers are simulated (docs/sim.md) and the output says so.

    python examples/code_review_triage.py [--diff FILE] [--json] [--seed N] [--online]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from orchestrator import (
    Engine,
    ModelClient,
    Needs,
    NodeStatus,
    Predicate,
    RunResult,
    TierLadder,
    UserError,
    Verdict,
    VerificationContext,
    Workflow,
    default_ladder,
)
from orchestrator.cli.render import SIMULATED_NOTE
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.pricing import USD, ZERO_USD
from orchestrator_sim import SimConfig, serve

DEFAULT_DIFF = Path(__file__).parent / "diffs" / "regional_pricing.diff"
FIRST_PASS_NEEDS = Needs(reasoning=1, coding=1)
CLASSIFIER_NEEDS = Needs(reasoning=1, coding=1)
DEEP_REVIEW_NEEDS = Needs(reasoning=2, coding=2)

# -- the diff ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One line of a hunk: ``kind`` is ``+``, ``-`` or ``" "``; ``new_line`` its new number."""

    kind: str
    text: str
    new_line: int | None
    section: str


@dataclass(frozen=True, slots=True)
class FileDiff:
    """One file of a unified diff.

    Attributes:
        path: The file's path on the new side (``b/`` removed).
        text: This file's part of the diff, headers included (what a prompt shows).
        lines: Every hunk line, in order.
        new_side: New-side line number -> text, for added and context lines.
    """

    path: str
    text: str
    lines: tuple[DiffLine, ...]
    new_side: Mapping[int, str]

    def ranges(self) -> str:
        """The new-side line ranges the hunks cover, e.g. ``4-17, 25-31``."""
        numbers = sorted(self.new_side)
        spans: list[list[int]] = []
        for number in numbers:
            if spans and number == spans[-1][1] + 1:
                spans[-1][1] = number
            else:
                spans.append([number, number])
        return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


@dataclass(frozen=True, slots=True)
class ParsedDiff:
    """A unified diff, file by file (parsed with ``unidiff``)."""

    name: str
    files: Mapping[str, FileDiff]

    def line(self, path: str, number: int) -> str | None:
        """The text of new-side line ``number`` of ``path``, or ``None`` if the diff lacks it."""
        file = self.files.get(path)
        return None if file is None else file.new_side.get(number)


def parse_diff(text: str, name: str = "diff") -> ParsedDiff:
    """Parse a unified diff (``git diff`` output).

    Raises:
        UserError: If ``text`` is not a unified diff with at least one hunk.
    """
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise UserError(f"{name}: not a valid unified diff: {exc}") from None
    files = {}
    for patched in patch:
        if patched.is_removed_file or not len(patched):
            continue
        lines = tuple(
            DiffLine(
                line.line_type, line.value.rstrip("\r\n"), line.target_line_no, hunk.section_header
            )
            for hunk in patched
            for line in hunk
            if line.line_type in "+- "
        )
        new_side = {line.new_line: line.text for line in lines if line.new_line is not None}
        files[patched.path] = FileDiff(patched.path, str(patched), lines, new_side)
    if not files:
        raise UserError(f"{name}: no file with hunks found; expected `git diff` output")
    return ParsedDiff(name, files)


# -- verifying citations -------------------------------------------------------------------

_FILE_KEYS = ("file", "path")
_LINE_KEYS = ("line", "line_number")
_QUOTE_KEYS = ("quote", "snippet", "code")


def cited_locations(output: Any) -> Iterator[tuple[str, int, str | None]]:
    """Every ``(file, line, quote)`` an output cites: objects with a file and a line field."""
    value = output.model_dump() if isinstance(output, BaseModel) else output
    if isinstance(value, Mapping):
        file = next((value[k] for k in _FILE_KEYS if isinstance(value.get(k), str)), None)
        line = next((value[k] for k in _LINE_KEYS if isinstance(value.get(k), int)), None)
        if file is not None and line is not None:
            quote = next((value[k] for k in _QUOTE_KEYS if isinstance(value.get(k), str)), None)
            yield file, line, quote
        for item in value.values():
            yield from cited_locations(item)
    elif isinstance(value, list):
        for item in value:
            yield from cited_locations(item)


class DiffCitations:
    """Every citation in the output names a file of the diff and a line on its new side.

    A quoted line must match the cited line's text (whitespace aside).

    Args:
        diff: The parsed diff.
        files: The files citations may name (default: any file of the diff).
    """

    name = "diff_citations"

    def __init__(self, diff: ParsedDiff, *, files: Collection[str] | None = None) -> None:
        self.diff = diff
        self.files = set(files) if files is not None else set(diff.files)

    def problem(self, path: str, line: int, quote: str | None) -> str | None:
        """What is wrong with one citation, or ``None``."""
        if path not in self.diff.files:
            return f"cites {path}, which is not a file of the diff"
        if path not in self.files:
            return f"cites {path}, outside the files under review ({', '.join(sorted(self.files))})"
        text = self.diff.line(path, line)
        if text is None:
            covered = self.diff.files[path].ranges()
            return f"cites {path}:{line}, not a line of the diff (its lines: {covered})"
        if quote is not None and " ".join(quote.split()) not in " ".join(text.split()):
            return f"quotes {quote!r} at {path}:{line}, but that line reads {text.strip()!r}"
        return None

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass if every citation is on the new side of the diff; else name each bad one."""
        problems = [
            problem
            for path, line, quote in cited_locations(output)
            if (problem := self.problem(path, line, quote)) is not None
        ]
        if problems:
            reason = "; ".join(problems[:5]) + ". Cite only lines shown in the diff."
            return Verdict(passed=False, reason=reason, verifier=self.name)
        return Verdict(passed=True, verifier=self.name)


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


def _summary_given() -> Predicate:
    return Predicate(_has_summary, "the summary is empty", name="summary")


# -- the deterministic half of the classifier ----------------------------------------------

_DEFINITION = re.compile(r"^(?P<indent>\s*)(?:async\s+)?(?P<kind>def|class)\s+(?P<name>\w+)")
_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*$|[^/]*_test\.py$)")
Decision = Literal["analysis", "model", "local"]


class InterfaceChange(BaseModel):
    """A public definition the diff adds, changes or removes."""

    id: str
    """``module.name`` or ``module.Class.method``, e.g. ``shopfront.pricing.price_for``."""
    file: str
    symbol: str
    kind: Literal["changed", "removed", "added"]
    before: str | None
    after: str | None
    used_in: list[str]
    """Other files of the diff that mention it (any hunk line)."""
    decision: Decision
    """``analysis``: crosses an interface, shown by the diff; ``model``: a model judges;
    ``local``: a new definition nothing else in the diff uses."""

    def describe(self) -> str:
        """The change in a few lines, for prompts."""
        users = ", ".join(self.used_in) or "none"
        return (
            f"Public `{self.symbol}` in {self.file} was {self.kind}.\n"
            f"Before: {self.before or '(absent)'}\nAfter: {self.after or '(absent)'}\n"
            f"Other files of the diff that mention it: {users}"
        )


def _signatures(file: FileDiff, side: str) -> dict[str, str]:
    """Definitions on the ``+`` or ``-`` lines of a file: qualified name -> signature."""
    visible = [line for line in file.lines if line.kind in (side, " ")]
    found: dict[str, str] = {}
    owner = ""
    for index, line in enumerate(visible):
        match = _DEFINITION.match(line.text)
        if match is None:
            continue
        if not match["indent"]:
            owner = match["name"] if match["kind"] == "class" else ""
        if line.kind != side:
            continue
        parts = [line.text.strip()]
        for after in visible[index + 1 : index + 8]:  # a signature over several lines
            if parts[-1].endswith(":"):
                break
            parts.append(after.text.strip())
        name = match["name"]
        if match["indent"]:
            section = re.match(r"class\s+(\w+)", line.section)
            name = f"{owner or (section[1] if section else '?')}.{name}"
        found[name] = " ".join(parts)
    return found


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _users(diff: ParsedDiff, path: str, symbol: str) -> list[str]:
    last = symbol.rsplit(".", 1)[-1]
    pattern = rf"\.{re.escape(last)}\s*\(" if "." in symbol else rf"\b{re.escape(last)}\b"
    found = re.compile(pattern)
    return sorted(
        other.path
        for other in diff.files.values()
        if other.path != path and any(found.search(line.text) for line in other.lines)
    )


def find_interface_changes(diff: ParsedDiff) -> list[InterfaceChange]:
    """Public definitions the diff adds, changes or removes, and who else uses them.

    Only definition lines the diff touches are seen: a signature change on a continuation
    line of a multi-line ``def``, or a changed dataclass field, is left to the reviews.
    """
    changes = []
    for file in diff.files.values():
        if _TEST_FILE.search(file.path) or not file.path.endswith(".py"):
            continue
        before, after = _signatures(file, "-"), _signatures(file, "+")
        module = file.path.removesuffix(".py").replace("/", ".")
        for symbol in sorted(before.keys() | after.keys(), key=list(after | before).index):
            old, new = before.get(symbol), after.get(symbol)
            if not _public(symbol) or old == new:
                continue
            kind: Literal["changed", "removed", "added"] = (
                "added" if old is None else "removed" if new is None else "changed"
            )
            used_in = _users(diff, file.path, symbol)
            decision: Decision = (
                "local" if kind == "added" and not used_in
                else "analysis" if kind != "added" and used_in
                else "model"
            )  # fmt: skip
            change = InterfaceChange(
                id=f"{module}.{symbol}", file=file.path, symbol=symbol, kind=kind,
                before=old, after=new, used_in=used_in, decision=decision,
            )  # fmt: skip
            changes.append(change)
    return changes


# -- the workflows -------------------------------------------------------------------------


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


def _llm(wf: Workflow, task_id: str, prompt: str, **options: Any) -> None:
    def build() -> str:
        return prompt

    build.__doc__ = prompt.splitlines()[0]  # the task's instruction in plans, logs, traces
    wf.llm(name=task_id, **options)(build)


def triage_workflow(diff: ParsedDiff, changes: Sequence[InterfaceChange]) -> Workflow:
    """Stage 1: a first pass per file, and a classifier per change the analysis left open."""
    wf = Workflow(f"First-pass review and interface triage of {diff.name}")
    for file in diff.files.values():
        _llm(
            wf, first_pass_id(file.path), first_pass_prompt(file),
            needs=FIRST_PASS_NEEDS, output=FilePass,
            verify=[DiffCitations(diff, files=[file.path]), _summary_given()],
        )  # fmt: skip
    for change in changes:
        if change.decision == "model":
            _llm(
                wf, classify_id(change), classify_prompt(change, diff),
                needs=CLASSIFIER_NEEDS, output=InterfaceJudgement,
                verify=[Predicate(_has_reason, "give the reason for the decision", name="reason")],
            )  # fmt: skip
    return wf


def deep_review_workflow(diff: ParsedDiff, flagged: Sequence[InterfaceChange]) -> Workflow:
    """Stage 2: an in-depth review, on a stronger tier, of each flagged change only."""
    wf = Workflow(f"In-depth review of the cross-module changes in {diff.name}")
    for change in flagged:
        _llm(
            wf, deep_review_id(change), deep_review_prompt(change, diff),
            needs=DEEP_REVIEW_NEEDS, output=DeepReview,
            verify=[DiffCitations(diff, files=review_files(change)), _summary_given()],
        )  # fmt: skip
    return wf


def flag_changes(
    changes: Sequence[InterfaceChange], judgements: Mapping[str, InterfaceJudgement | None]
) -> list[InterfaceChange]:
    """Changes that cross module interfaces: by analysis, or by the model's judgement.

    A change the model could not judge (its node failed) is flagged: better an extra
    strong review than a missed one.
    """
    flagged = []
    for change in changes:
        judged = judgements.get(classify_id(change))
        if change.decision == "analysis" or (
            change.decision == "model" and (judged is None or judged.crosses_interface)
        ):
            flagged.append(change)
    return flagged


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


# -- running it ----------------------------------------------------------------------------


async def review_diff(
    diff_text: str,
    client: ModelClient,
    *,
    name: str = "diff",
    ladder: TierLadder | None = None,
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
    judgements = {
        node.id: node.output
        for node in runs[0].nodes
        if isinstance(node.output, InterfaceJudgement)
    }
    flagged = flag_changes(changes, judgements)
    if flagged:
        runs.append(await engine.run(deep_review_workflow(diff, flagged)))
    markdown, findings, failed = merge_review(diff, changes, flagged, runs)
    summary = summarize(runs, ladder)
    return ReviewReport(
        diff=name, simulated=summary.simulated, files=list(diff.files), changes=changes,
        flagged=[c.id for c in flagged], findings=findings, failed=failed, summary=summary,
        markdown=markdown, runs=runs,
    )  # fmt: skip


async def review_offline(diff_text: str, *, name: str = "diff", seed: int = 0) -> ReviewReport:
    """Review against the local simulator (answers are simulated)."""
    async with (
        serve(SimConfig(seed=seed, time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-simulator") as client,
    ):
        return await review_diff(diff_text, client, name=name)


async def review_online(diff_text: str, *, name: str = "diff") -> ReviewReport:
    """Review against the real API (needs ANTHROPIC_API_KEY)."""
    async with AnthropicClient() as client:
        return await review_diff(diff_text, client, name=name)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--diff", type=Path, default=DEFAULT_DIFF, help="a unified diff file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (offline)")
    parser.add_argument("--online", action="store_true", help="use the real API")
    args = parser.parse_args(argv)
    try:
        text = args.diff.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read --diff {args.diff}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        if args.online:
            report = anyio.run(lambda: review_online(text, name=args.diff.name))
        else:
            report = anyio.run(lambda: review_offline(text, name=args.diff.name, seed=args.seed))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(report.markdown)
        print(render_summary(report))
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
