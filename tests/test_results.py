"""Run records: what the engine's unvalidated hot path builds is what pydantic would build."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator import Attempt, NodeResult, NodeStatus, Verdict
from orchestrator.results import python_attempt, settle

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)


def _same(fast: Attempt | NodeResult, slow: Attempt | NodeResult) -> None:
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_dump(exclude_unset=True) == slow.model_dump(exclude_unset=True)


def test_python_attempt_is_the_validated_attempt() -> None:
    fast = python_attempt(AT)
    _same(fast, Attempt(number=1, tier="python", model=None, started_at=AT))
    assert Attempt.model_validate_json(fast.model_dump_json()) == fast
    assert fast.model_copy(deep=True) == fast
    assert repr(fast).startswith("Attempt(number=1, tier='python', model=None")


def test_python_attempts_share_no_state() -> None:
    first, second = python_attempt(AT), python_attempt(LATER)
    settle(first, error="ValueError: bad", error_type="ValueError", finished_at=LATER)
    first.input_tokens += 3
    assert second.error is None
    assert second.input_tokens == 0
    assert "error" not in second.model_fields_set
    assert second.started_at == LATER
    # Attempts are filled from one shallow-copied template: a mutable default (a list
    # field, say) would be shared by every Python node's attempt.
    immutable = (bool, int, float, str, datetime, type(None))
    assert all(isinstance(value, immutable) for value in second.__dict__.values())


PASSED = Verdict(passed=True, reason="no verifier", verifier="none")


@pytest.mark.parametrize(
    "values",
    [
        {"verdict": PASSED, "finished_at": LATER},
        {"error": "cancelled", "error_type": "cancelled", "finished_at": LATER},
        {"finished_at": LATER},
    ],
    ids=["passed", "cancelled", "interrupted"],
)
def test_settling_an_attempt_is_assigning_its_fields(values: dict[str, object]) -> None:
    fast = python_attempt(AT)
    slow = Attempt(number=1, tier="python", model=None, started_at=AT)
    settle(fast, **values)
    for name, value in values.items():
        setattr(slow, name, value)
    _same(fast, slow)
    assert fast.passed is slow.passed


def test_settling_a_node_result_is_assigning_its_fields() -> None:
    fast = NodeResult(id="a", depends_on=["b"], status=NodeStatus.NOT_RUN)
    slow = fast.model_copy(deep=True)
    settle(fast, status=NodeStatus.SUCCEEDED, output={"rows": [1, 2]})
    slow.status, slow.output = NodeStatus.SUCCEEDED, {"rows": [1, 2]}
    _same(fast, slow)


def test_settle_refuses_a_name_that_is_no_field_and_sets_nothing() -> None:
    attempt = python_attempt(AT)
    with pytest.raises(AttributeError, match=r"Attempt has no field\(s\) colour, size"):
        settle(attempt, finished_at=LATER, size=3, colour="red")
    assert attempt.finished_at is None
    assert attempt.model_fields_set == {"number", "tier", "model", "started_at"}
    result = NodeResult(id="a", status=NodeStatus.NOT_RUN)
    with pytest.raises(AttributeError, match=r"NodeResult has no field\(s\) verdict"):
        settle(result, verdict=None)
