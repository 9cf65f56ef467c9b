"""Citation verification against a corpus: invented ids and misquotes are caught."""

from __future__ import annotations

import pytest

from orchestrator import VerificationContext
from orchestrator.citations import Citations, cited_ids
from orchestrator.testing import verification_context

pytestmark = pytest.mark.anyio

PASSAGES = {
    "guide/with.md#0": (
        "The with statement wraps a block with methods defined by a context manager."
    ),
    "guide/for.md#2": "The for statement iterates over the elements of a sequence.",
}


class Lookup:
    def passage_text(self, passage_id: str) -> str | None:
        return PASSAGES.get(passage_id)


def ctx(text: str) -> VerificationContext:
    return verification_context(text)


def test_cited_ids_in_order_without_repeats() -> None:
    text = "A [guide/with.md#0], B [guide/for.md#2] and again [guide/with.md#0]; not [this]."
    assert cited_ids(text) == ["guide/with.md#0", "guide/for.md#2"]


async def test_real_citations_and_exact_quote_pass() -> None:
    text = (
        'Context managers: "wraps a block with methods defined by a context manager" '
        "[guide/with.md#0]. Loops iterate [guide/for.md#2]."
    )
    verdict = await Citations(Lookup()).verify(text, ctx(text))
    assert verdict.passed, verdict.reason
    assert verdict.reason == "2 citation(s) checked"


async def test_invented_passage_id_is_caught() -> None:
    text = "Per the docs [guide/with.md#0] and [guide/while.md#7], it works."
    verdict = await Citations(Lookup()).verify(text, ctx(text))
    assert not verdict.passed
    assert verdict.reason == "cited passage(s) that do not exist: guide/while.md#7"


async def test_misquote_is_caught_even_with_a_real_id() -> None:
    text = '"The with statement is deprecated since 3.12" [guide/with.md#0]'
    verdict = await Citations(Lookup()).verify(text, ctx(text))
    assert not verdict.passed
    assert "quoted text not found in the cited passage" in verdict.reason
    assert "guide/with.md#0" in verdict.reason


async def test_quote_matching_ignores_case_and_whitespace() -> None:
    text = '"THE FOR STATEMENT   iterates over\n the elements" [guide/for.md#2]'
    assert (await Citations(Lookup()).verify(text, ctx(text))).passed


async def test_uncited_answer_fails_with_a_hint() -> None:
    verdict = await Citations(Lookup(), min_citations=2).verify(
        "x", ctx("No sources [guide/for.md#2].")
    )
    assert not verdict.passed
    assert verdict.reason == "cite at least 2 passage(s) as [path#n]; found 1"
