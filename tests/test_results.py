"""Run records: the attempt the engine builds unvalidated is the one pydantic would build."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orchestrator import Attempt, Needs, NodeResult, NodeStatus, Verdict
from orchestrator.results import python_attempt, unrun_node

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
PASSED = Verdict(passed=True, reason="no verifier", verifier="none")


def _same(fast: Attempt, slow: Attempt) -> None:
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()  # field order included
    assert fast.model_dump(exclude_unset=True) == slow.model_dump(exclude_unset=True)
    assert repr(fast) == repr(slow)


def _validated(started_at: datetime) -> Attempt:
    return Attempt(number=1, tier="python", model=None, started_at=started_at)


def test_python_attempt_is_the_validated_attempt() -> None:
    fast = python_attempt(AT)
    _same(fast, _validated(AT))
    assert Attempt.model_validate_json(fast.model_dump_json()) == fast
    assert fast.model_copy(deep=True) == fast


@pytest.mark.parametrize(
    "values",
    [
        {"verdict": PASSED, "finished_at": LATER},
        {"error": "cancelled", "error_type": "cancelled", "finished_at": LATER},
        {"finished_at": LATER},
    ],
    ids=["passed", "cancelled", "interrupted"],
)
def test_python_attempt_updates_like_the_validated_attempt(values: dict[str, object]) -> None:
    fast, slow = python_attempt(AT), _validated(AT)
    for name, value in values.items():
        setattr(fast, name, value)
        setattr(slow, name, value)
    _same(fast, slow)
    assert fast.passed is slow.passed


def test_python_attempts_share_no_state() -> None:
    first, second = python_attempt(AT), python_attempt(LATER)
    first.error, first.error_type = "ValueError: bad", "ValueError"
    first.input_tokens += 3
    assert second.error is None
    assert second.input_tokens == 0
    assert "error" not in second.model_fields_set
    assert second.started_at == LATER
    # Attempts are filled from one shallow-copied template: a mutable default (a list
    # field, say) would be shared by every Python node's attempt.
    immutable = (bool, int, float, Decimal, str, datetime, tuple, type(None))
    assert all(isinstance(value, immutable) for value in second.__dict__.values())


def test_an_unrun_node_is_the_validated_node_result() -> None:
    needs = Needs(reasoning=2)
    fast = unrun_node("b", ("a",), needs)
    slow = NodeResult(id="b", depends_on=("a",), needs=needs, status=NodeStatus.NOT_RUN)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert repr(fast) == repr(slow)
    fast.attempts.append(python_attempt(AT))  # its own list
    assert unrun_node("c", (), needs).attempts == []
