"""Live progress: every node's state, tiers tried, attempts and cost, updating in place."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from orchestrator.cli.render import LiveProgress
from orchestrator.events import AttemptFinished, AttemptStarted, NodeFinished, RunStarted
from orchestrator.plan import Plan, Task
from orchestrator.results import Attempt, NodeResult, NodeStatus, Verdict


def _attempt(number: int, tier: str, *, passed: bool, cost: float) -> Attempt:
    now = datetime.now(UTC)
    return Attempt(
        number=number, tier=tier, model=f"m-{tier}", started_at=now, finished_at=now,
        cost_usd=cost, verdict=Verdict(passed=passed, reason="no citation" if not passed else "ok"),
    )  # fmt: skip


def test_live_table_tracks_each_node_through_escalation() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    plan = Plan(goal="g", tasks=[Task(id="a", instruction="x"), Task(id="b", instruction="y")])
    with LiveProgress(console) as live:
        live(RunStarted("r", plan))
        first = _attempt(1, "haiku", passed=False, cost=0.001)
        live(AttemptStarted("r", "a", first))
        live(AttemptFinished("r", "a", first))
        second = _attempt(2, "sonnet", passed=True, cost=0.01)
        live(AttemptStarted("r", "a", second))
        live(AttemptFinished("r", "a", second))
        result = NodeResult(
            id="a", status=NodeStatus.SUCCEEDED, final_tier="sonnet", attempts=[first, second]
        )
        live(NodeFinished("r", result))
        row_a, row_b = live.rows["a"], live.rows["b"]
        assert row_a.state == "succeeded"
        assert row_a.tiers == ["haiku", "sonnet"]
        assert row_a.cost_usd == result.cost_usd
        assert row_b.state == "waiting"
    text = out.getvalue()
    assert "haiku -> sonnet" in text
    assert "1/2 nodes done" in text


def test_live_table_shows_the_message_batches_nodes_wait_in() -> None:
    from decimal import Decimal

    from orchestrator.events import AttemptSpending
    from orchestrator.results import BatchCall

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    plan = Plan(goal="g", tasks=[Task(id="a", instruction="x"), Task(id="b", instruction="y")])
    with LiveProgress(console) as live:
        live(RunStarted("r", plan))
        waiting = []
        for node in ("a", "b"):
            attempt = Attempt(number=1, tier="haiku", model="m", started_at=datetime.now(UTC))
            live(AttemptStarted("r", node, attempt))
            call = BatchCall(batch_id="msgbatch_1", custom_id=f"call_{node}",
                             reserved_usd=Decimal("0.01"))  # fmt: skip
            attempt.batch_pending = (call,)
            live(AttemptSpending("r", node, attempt))
            waiting.append(attempt)
        assert live.rows["a"].note == "waiting in message batch msgbatch_1"
        assert "1 message batch(es) waiting" in str(live._table().caption)
        for node, attempt in zip(("a", "b"), waiting, strict=True):
            attempt.batch_pending, attempt.finished_at = (), datetime.now(UTC)
            attempt.verdict = Verdict(passed=True)
            live(AttemptFinished("r", node, attempt))
        assert "waiting" not in str(live._table().caption)
        assert live.rows["a"].note == ""
