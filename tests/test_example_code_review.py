"""examples/code_review_triage.py (the workflow) and examples/code_review/ (its helpers),
offline end to end, and the diff-citation verifier."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest
from unidiff.patch import PatchSet

from orchestrator import CapabilityRouter, UserError, VerificationContext, default_ladder
from orchestrator.testing import verification_context

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "code_review_triage.py"
DIFF_FILE = EXAMPLES / "diffs" / "regional_pricing.diff"
DIFF_TEXT = DIFF_FILE.read_text(encoding="utf-8")
FINDING = re.compile(r"^- `([^`]+):(\d+)` \*\*", re.MULTILINE)


def _load() -> ModuleType:
    """Load the script as its command line runs it: with examples/ on the import path."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("code_review_triage", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crt = _load()
from code_review import cli, diffs, interfaces, tasks, verify  # noqa: E402  # on the path now
from code_review.report import render_summary  # noqa: E402


def new_side(text: str) -> dict[tuple[str, int], str]:
    """Independently of the example: (file, new line) -> text, for every new-side line."""
    return {
        (patched.path, line.target_line_no): line.value.rstrip("\n")
        for patched in PatchSet(text)
        for hunk in patched
        for line in hunk
        if line.target_line_no is not None
    }


@pytest.fixture(scope="module")
def report():
    async def review():
        with anyio.fail_after(60):
            return await cli.review_offline(crt.review_diff, DIFF_TEXT, name=DIFF_FILE.name)

    return anyio.run(review, backend="asyncio")


def nodes(report) -> dict:
    return {node.id: node for run in report.runs for node in run.nodes}


def test_every_file_got_a_first_pass_on_the_cheapest_tier(report) -> None:
    files = [patched.path for patched in PatchSet(DIFF_TEXT)]
    assert len(files) == 7
    assert report.files == files
    cheapest = default_ladder()[0].name
    by_id = nodes(report)
    for path in files:
        node = by_id[tasks.first_pass_id(path)]
        assert node.status == "succeeded", node.reason
        assert node.attempts[0].tier == cheapest
        assert isinstance(node.output, tasks.FilePass)
    assert not report.failed


def test_only_flagged_changes_got_the_strong_review(report) -> None:
    ladder = default_ladder()
    by_id = nodes(report)
    changes = {change.id: change for change in report.changes}
    assert changes["shopfront.pricing.price_for"].decision == "analysis"
    assert changes["shopfront.pricing.price_for"].used_in == [
        "shopfront/cart.py", "shopfront/checkout.py", "tests/test_pricing.py"
    ]  # fmt: skip
    assert changes["shopfront.cart.Cart.total"].used_in == ["shopfront/checkout.py"]
    assert changes["shopfront.audit.read_all"].decision == "local"
    assert changes["shopfront.models.Money"].decision == "model"
    assert not any(c.startswith("tests.") or "._" in c for c in changes)  # tests, private
    expected = set()
    for change in report.changes:
        if change.decision == "model":
            judged = by_id[tasks.classify_id(change)]
            assert judged.attempts[0].tier == ladder[0].name
            if judged.output.crosses_interface:
                expected.add(change.id)
        elif change.decision == "analysis":
            expected.add(change.id)
    assert set(report.flagged) == expected
    assert len(expected) < len(changes)
    started_above_cheapest = {
        node_id for node_id, node in by_id.items() if node.attempts[0].tier != ladder[0].name
    }
    assert started_above_cheapest == {tasks.deep_review_id(changes[c]) for c in expected}
    strong = ladder[CapabilityRouter().route_needs(crt.DEEP_REVIEW_NEEDS, ladder).index].name
    assert strong != ladder[0].name
    assert {by_id[n].attempts[0].tier for n in started_above_cheapest} == {strong}


def test_every_finding_cites_a_line_of_the_diff(report) -> None:
    lines = new_side(DIFF_TEXT)
    cited = [(path, int(line)) for path, line in FINDING.findall(report.markdown)]
    assert len(cited) == len(report.findings) > 10
    for finding, (path, line) in zip(report.findings, cited, strict=True):
        assert (finding.file, finding.line) == (path, line)
        assert (path, line) in lines, f"{path}:{line} is not on the new side of the diff"
        assert finding.quote.strip() in lines[path, line]
    deep = [f for f in report.findings if f.source.startswith("deep_review:")]
    changes = {c.id: c for c in report.changes}
    for finding in deep:
        change = changes[finding.source.removeprefix("deep_review:")]
        assert finding.file in [change.file, *change.used_in]


def test_wrong_citations_were_caught_and_escalated(report) -> None:
    ladder = default_ladder()
    caught = 0
    for node in nodes(report).values():
        for attempt, retry in zip(node.attempts, node.attempts[1:], strict=False):
            assert not attempt.passed
            assert ladder.index(retry.tier) == ladder.index(attempt.tier) + 1
            if attempt.verdict and attempt.verdict.verifier == "diff_citations":
                assert "not a line of the diff" in attempt.verdict.reason
                caught += 1
        assert node.attempts[-1].passed
    assert caught >= 1
    assert report.summary.rejected_by_verifier["diff_citations"] == caught


def test_the_per_tier_split_adds_up(report) -> None:
    summary = report.summary
    all_nodes = list(nodes(report).values())
    attempts = [a for node in all_nodes for a in node.attempts]
    assert [t.tier for t in summary.tiers] == [t.name for t in default_ladder().tiers]
    assert summary.nodes == len(all_nodes) == sum(t.nodes_started for t in summary.tiers)
    assert summary.nodes == sum(t.nodes_finished for t in summary.tiers)
    assert sum(t.attempts for t in summary.tiers) == len(attempts)
    total = sum(run.cost_usd for run in report.runs)
    assert summary.cost_usd == total  # exact: money is Decimal
    assert sum(t.cost_usd for t in summary.tiers) == total
    assert total > 0
    cheap = summary.tiers[0]
    assert cheap.nodes_started == len(report.files) + sum(
        1 for c in report.changes if c.decision == "model"
    )
    assert summary.cheap_node_share == pytest.approx(cheap.nodes_finished / summary.nodes)
    assert summary.cheap_cost_share == pytest.approx(float(cheap.cost_usd / total))
    text = render_summary(report)
    assert f"{cheap.tier:<8} {cheap.nodes_started:>7} {cheap.nodes_finished:>8}" in text
    assert f"{summary.cheap_node_share:.0%} of the nodes" in text


def test_it_says_the_results_are_simulated(report) -> None:
    assert report.simulated
    assert report.summary.simulated
    assert all(run.simulated for run in report.runs)
    assert "SIMULATED" in report.markdown.split("##", 1)[0]
    assert render_summary(report).startswith("SIMULATED")


def test_the_documented_command_prints_one_json_document() -> None:
    done = subprocess.run(
        [sys.executable, "examples/code_review_triage.py", "--json", "--diff", str(DIFF_FILE),
         "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["simulated"] is True
    assert data["diff"] == DIFF_FILE.name
    assert data["markdown"].startswith(f"# Code review: {DIFF_FILE.name}")
    assert data["summary"]["nodes"] == sum(len(run["nodes"]) for run in data["runs"])


def test_bad_diffs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prose = tmp_path / "notes.diff"
    prose.write_text("Just some notes, no hunks.\n", encoding="utf-8")
    assert crt.main(["--diff", str(prose)]) == 2
    assert "notes.diff: no file with hunks found" in capsys.readouterr().err
    assert crt.main(["--diff", str(tmp_path / "missing.diff")]) == 2
    assert "cannot read --diff" in capsys.readouterr().err
    cut = "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n x = 1\n"
    with pytest.raises(UserError, match=r"cut\.diff: not a valid unified diff"):
        diffs.parse_diff(cut, "cut.diff")


def _context() -> VerificationContext:
    return verification_context("")


@pytest.mark.anyio
async def test_diff_citations_names_each_bad_citation() -> None:
    diff = diffs.parse_diff(DIFF_TEXT)
    check = verify.DiffCitations(diff, files=["shopfront/pricing.py"])
    line = "def price_for(item: Item, qty: int, region: str) -> Money:"
    number = next(n for (p, n), t in new_side(DIFF_TEXT).items() if t == line)

    def answer(*findings: tuple[str, int, str]) -> dict:
        return {
            "summary": "s",
            "findings": [{"file": f, "line": n, "quote": q} for f, n, q in findings],
        }

    good = await check.verify(answer(("shopfront/pricing.py", number, line)), _context())
    assert good.passed
    bad = await check.verify(
        answer(
            ("shopfront/pricing.py", 400, line),
            ("shopfront/cart.py", 5, ""),
            ("shop/none.py", 1, ""),
            ("shopfront/pricing.py", number, "return None"),
        ),
        _context(),
    )
    assert not bad.passed
    assert bad.verifier == "diff_citations"
    assert "cites shopfront/pricing.py:400, not a line of the diff (its lines: 1-" in bad.reason
    assert "cites shopfront/cart.py, outside the files under review" in bad.reason
    assert "cites shop/none.py, which is not a file of the diff" in bad.reason
    assert f"quotes 'return None' at shopfront/pricing.py:{number}" in bad.reason


def test_analysis_sees_methods_used_by_other_files_and_ignores_private_ones() -> None:
    text = (
        "--- a/pkg/store.py\n+++ b/pkg/store.py\n@@ -1,4 +1,4 @@ import os\n"
        " class Store:\n-    def get(self, key):\n+    def get(self, key, default=None):\n"
        "         pass\n-def _helper(x):\n+def _helper(x, y):\n"
        "--- a/pkg/app.py\n+++ b/pkg/app.py\n@@ -1,1 +1,1 @@\n-value = store.get('k')\n"
        "+value = store.get('k', 0)\n"
    )
    changes = interfaces.find_interface_changes(diffs.parse_diff(text))
    assert [(c.id, c.kind, c.used_in, c.decision) for c in changes] == [
        ("pkg.store.Store.get", "changed", ["pkg/app.py"], "analysis")
    ]
    assert changes[0].after == "def get(self, key, default=None):"
