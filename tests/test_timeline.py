"""The run timeline: a self-contained HTML Gantt of nodes, attempts, tiers and cost."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import Attempt, NodeResult, NodeStatus, RunResult, RunStatus, Verdict
from orchestrator.cli import main
from orchestrator.telemetry import render_timeline, write_timeline

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def result() -> RunResult:
    rejected = Attempt(
        number=1, tier="haiku", model="claude-haiku", started_at=at(0), finished_at=at(2),
        cost_usd=0.001, verdict=Verdict(passed=False, reason="cites <nothing>", verifier="cites"),
    )  # fmt: skip
    escalated = Attempt(
        number=2, tier="sonnet", model="claude-sonnet", started_at=at(2), finished_at=at(5),
        cost_usd=0.004, escalated_from=1, verdict=Verdict(passed=True, verifier="cites"),
    )  # fmt: skip
    side = Attempt(
        number=1, tier="haiku", model="claude-haiku", started_at=at(0.5), finished_at=at(1.5),
        cost_usd=0.0005, verdict=Verdict(passed=True),
    )  # fmt: skip
    python = Attempt(
        number=1, tier="python", model=None, started_at=at(5), finished_at=at(5.1),
        verdict=Verdict(passed=True),
    )  # fmt: skip
    return RunResult(
        run_id="run_x",
        status=RunStatus.PARTIAL,
        goal="Queues <script>alert(1)</script>",
        started_at=at(0),
        finished_at=at(6),
        wall_s=6.0,
        cost_usd=0.0055,
        wasted_cost_usd=0.001,
        simulated=True,
        trace_id="ab" * 16,
        nodes=[
            NodeResult(id="research", status=NodeStatus.SUCCEEDED, attempts=[rejected, escalated]),
            NodeResult(id="glossary", status=NodeStatus.SUCCEEDED, attempts=[side]),
            NodeResult(id="outline", status=NodeStatus.SUCCEEDED, attempts=[python]),
            NodeResult(id="publish", status=NodeStatus.SKIPPED, reason="dependency failed"),
        ],
    )


def bars(page: str) -> list[tuple[str, bool, float, float]]:
    """(tier, failed, x, width) of every attempt bar, in order."""
    found = []
    pattern = re.compile(
        r'<g class="attempt( failed)?" data-tier="([^"]+)">.*?<rect x="([\d.]+)" y="[\d.]+" '
        r'width="([\d.]+)"',
        re.S,
    )
    for match in pattern.finditer(page):
        found.append((match[2], bool(match[1]), float(match[3]), float(match[4])))
    return found


def test_one_bar_per_attempt_placed_in_time_and_marked() -> None:
    page = render_timeline(result())
    found = bars(page)
    assert [(tier, failed) for tier, failed, _, _ in found] == [
        ("haiku", True),  # research, rejected
        ("sonnet", False),  # research, escalated
        ("haiku", False),  # glossary, side by side with research
        ("python", False),
    ]
    (_, _, x1, w1), (_, _, x2, w2), (_, _, x3, _), _ = found
    assert x1 + w1 == pytest.approx(x2, abs=0.2)  # the escalation starts where the rejection ends
    assert w2 == pytest.approx(1.5 * w1, rel=0.01)  # 3 s against 2 s
    assert x1 < x3 < x1 + w1  # the glossary ran during the first research attempt
    assert page.count('class="escalation"') == 2  # the escalated bar, and the legend
    assert 'fill="url(#hatch)"' in page


def test_page_is_self_contained_escaped_and_says_what_it_shows() -> None:
    page = render_timeline(result())
    assert "<script>" not in page  # the goal is text, not markup
    assert "Queues &lt;script&gt;" in page
    assert "cites &lt;nothing&gt;" in page  # the verdict, in the bar's tooltip
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing fetched
    assert "simulated answers" in page
    assert "$0.00500 (wasted $0.00100)" in page  # research's cost
    assert "ab" * 16 in page
    for node in ("research", "glossary", "outline", "publish"):
        assert f">{node}<" in page
    colours = dict(re.findall(r'data-tier="([^"]+)">.*?fill="(#[0-9a-f]{6})"', page, re.S))
    assert len(set(colours.values())) == 3  # one colour per tier


def test_write_timeline_wants_html(tmp_path: Path) -> None:
    path = write_timeline(result(), tmp_path / "run.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match=r"must end in \.html"):
        write_timeline(result(), tmp_path / "run.png")


def test_show_timeline_of_a_recorded_run(
    tmp_path: Path, two_task_plan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = two_task_plan
    assert main(["run", "--plan", str(plan), "--offline", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    page_path = tmp_path / "timeline.html"
    assert main(["show", run_id, "--timeline", str(page_path)]) == 0
    page = page_path.read_text(encoding="utf-8")
    assert [tier for tier, *_ in bars(page)] == ["haiku", "haiku"]
    assert ">define<" in page
    assert ">use<" in page
    assert main(["show", run_id, "--timeline", str(tmp_path / "t.png")]) == 2
    assert "must end in .html" in capsys.readouterr().err
