"""Learning: what finished nodes teach a router, live or from recorded runs.

A node counts for the tier it *started* on (what it cost in all, whether it ended
verified) and, as evidence, for every tier it escalated to; :func:`record_outcome` writes
that into a :class:`~orchestrator.routing.calibration.Calibration`. :func:`learn_from_store`
replays the nodes of recorded runs, oldest first, into any :class:`LearningRouter`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.events import Event, NodeFinished
from orchestrator.results import PLANNING_NODE, NodeResult, NodeStatus
from orchestrator.routing.calibration import Calibration, TierRecord, needs_key
from orchestrator.routing.rules import LearningRouter, RouteRequest, task_kind

if TYPE_CHECKING:
    from orchestrator.plan import Plan
    from orchestrator.store.base import RunStore

__all__ = ["learn_from_store", "learning_listener", "record_outcome"]


def record_outcome(calibration: Calibration, result: NodeResult, *, decay: float) -> bool:
    """Count a finished node in ``calibration``; return whether it was counted.

    Counted: model nodes that succeeded or failed after attempts that all reached a
    verdict. Not counted: Python nodes, skipped or unrun nodes, and nodes with an
    attempt that errored (rate limits, outages, cancellation, an interrupted process),
    which say nothing about what the tier can do.
    """
    if result.status not in (NodeStatus.SUCCEEDED, NodeStatus.FAILED):
        return False
    if result.id == PLANNING_NODE:
        return False
    attempts = [a for a in result.attempts if a.answering]
    first = attempts[0] if attempts else None
    if first is None or first.model is None:
        return False
    if any(a.error is not None or a.verdict is None for a in attempts):
        return False
    bucket = calibration.entries.setdefault(needs_key(result.needs), {})
    verified = result.status is NodeStatus.SUCCEEDED
    record = _record(bucket, first.tier, first.model)
    record.nodes = record.nodes * decay + 1.0
    record.verified = record.verified * decay + verified
    record.cost_usd = record.cost_usd * decay + float(result.cost_usd)
    reached = {first.tier}
    for index, attempt in enumerate(attempts):  # each tier it escalated to: evidence
        if attempt.tier in reached or attempt.model is None:
            continue
        reached.add(attempt.tier)
        record = _record(bucket, attempt.tier, attempt.model)
        from_here = sum(float(a.cost_usd) for a in attempts[index:])
        record.escalated = record.escalated * decay + 1.0
        record.escalated_verified = record.escalated_verified * decay + verified
        record.escalated_cost_usd = record.escalated_cost_usd * decay + from_here
    return True


async def learn_from_store(router: LearningRouter, store: RunStore, *, runs: int = 500) -> int:
    """Feed ``router`` the nodes of the last ``runs`` runs in ``store``, oldest first.

    Every recorded run counts, whichever router ran it: the tier a node started on and
    how it ended is all the router needs. Returns how many nodes were counted.
    """
    counted = 0
    for summary in reversed(await store.list_runs(runs)):
        stored = await store.load_run(summary.run_id)
        nodes = stored.result.nodes if stored.result else list(stored.nodes.values())
        requests = _requests(stored.plan) if stored.plan is not None else {}
        counted += sum(router.observe(node, _labelled(requests, node)) for node in nodes)
    return counted


def _labelled(requests: dict[str, RouteRequest], node: NodeResult) -> RouteRequest | None:
    """The node's request with the label its classifier call answered, if it made one."""
    request = requests.get(node.id)
    label = next((a.label for a in node.attempts if a.classify and a.label), None)
    return replace(request, label=label) if request is not None and label else request


def _requests(plan: Plan) -> dict[str, RouteRequest]:
    """What each stored task was routed with, as far as the plan tells (not its inputs)."""
    out: dict[str, RouteRequest] = {}
    for task in plan.tasks:
        kind = task_kind(structured=bool(task.output_schema), tools=bool(task.tools))
        out[task.id] = RouteRequest.of(task.needs, task.instruction, kind=kind, task_id=task.id)
    return out


def _record(bucket: dict[str, TierRecord], tier: str, model: str) -> TierRecord:
    """The bucket's record of ``tier``, afresh if it was of another model."""
    record = bucket.get(tier)
    if record is None or record.model != model:
        record = bucket[tier] = TierRecord(model=model)
    return record


def learning_listener(router: LearningRouter) -> Callable[[Event], None]:
    """An event listener that shows ``router`` every node as it finishes."""

    def feed(event: Event) -> None:
        if isinstance(event, NodeFinished):
            router.observe(event.result)

    return feed
