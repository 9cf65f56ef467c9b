"""Built-in verifiers, called directly with a context."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from orchestrator import (
    JudgeSpec,
    JudgeVerdict,
    LLMJudge,
    NonEmpty,
    NonEmptySpec,
    Predicate,
    RequiredSections,
    SchemaSpec,
    SchemaVerifier,
    Task,
    Verdict,
    VerificationContext,
)
from orchestrator.testing import JudgeRequest, RecordingJudge, no_judge, verification_context
from orchestrator.verify import JudgeFunction, verifiers_from_specs

pytestmark = pytest.mark.anyio

TASK = Task(id="t", instruction="do it")


def ctx(text: str, judge: JudgeFunction = no_judge) -> VerificationContext:
    return verification_context(text, task=TASK, judge=judge)


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("Paris is the capital of France.", True),
        ("", False),
        ("   \n ", False),
        ("I'm sorry, but I can't help with that.", False),
        ("I cannot do this task.", False),
        ("As an AI, I do not have opinions.", False),
        ("Sorry state of affairs: the queue is full.", True),  # not an opening refusal
        ("The answer: I can't see why not; it works.", True),
    ],
)
async def test_non_empty_rejects_empty_and_refusals(text: str, passed: bool) -> None:
    verdict = await NonEmpty().verify(text, ctx(text))
    assert verdict.passed is passed
    assert verdict.verifier == "non_empty"


async def test_non_empty_on_structured_output() -> None:
    assert not (await NonEmpty().verify({}, ctx("{}"))).passed
    assert (await NonEmpty().verify({"a": 1}, ctx('{"a": 1}'))).passed


class Point(BaseModel):
    x: int
    y: int


async def test_schema_verifier_with_pydantic_type_names_the_field() -> None:
    verifier = SchemaVerifier(Point)
    assert (await verifier.verify({"x": 1, "y": 2}, ctx(""))).passed
    verdict = await verifier.verify({"x": 1}, ctx(""))
    assert not verdict.passed
    assert "y: Field required" in verdict.reason
    assert not (await verifier.verify(None, ctx("not json"))).passed


async def test_schema_verifier_with_json_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    verifier = SchemaVerifier(json_schema=schema)
    assert (await verifier.verify({"n": 3}, ctx(""))).passed
    verdict = await verifier.verify({"n": "three"}, ctx(""))
    assert not verdict.passed
    assert "n: 'three' is not of type 'integer'" in verdict.reason


def test_schema_verifier_needs_a_schema() -> None:
    with pytest.raises(ValueError, match="output_type or a json_schema"):
        SchemaVerifier()


async def test_required_sections_case_insensitive_and_names_missing() -> None:
    verifier = RequiredSections(["Summary", "Sources"])
    assert (await verifier.verify("", ctx("# summary\nx\n### SOURCES\ny"))).passed
    verdict = await verifier.verify("", ctx("# Summary\nSources are below"))
    assert verdict.reason == "missing required section(s): Sources"


async def test_predicate_results() -> None:
    async def async_check(value: int) -> bool:
        return value > 0

    assert (await Predicate(lambda v: v > 0).verify(1, ctx("1"))).passed
    assert (await Predicate(async_check, "must be positive").verify(-1, ctx(""))).reason == (
        "must be positive"
    )
    assert (await Predicate(lambda v: "too long").verify(1, ctx(""))).reason == "too long"
    custom = Verdict(passed=False, reason="custom", verifier="mine")
    assert await Predicate(lambda v: custom).verify(1, ctx("")) == custom
    assert (await Predicate(lambda v: None).verify(1, ctx(""))).passed


async def test_llm_judge_uses_context_judge_and_min_score() -> None:
    judge = RecordingJudge(JudgeVerdict(passed=True, reason="looks right", score=0.6))
    verdict = await LLMJudge("cites sources", tier="opus").verify("x", ctx("the answer", judge))
    assert verdict.passed
    assert judge.calls == [JudgeRequest("cites sources", "the answer", "opus", True, "")]
    strict = await LLMJudge("cites sources", min_score=0.8).verify("x", ctx("the answer", judge))
    assert not strict.passed
    await LLMJudge("cites sources", inputs=False).verify("x", ctx("the answer", judge))
    assert judge.calls[-1] == JudgeRequest("cites sources", "the answer", None, False, "")
    with pytest.raises(AssertionError, match="no judge call expected"):  # testing's default
        await LLMJudge("cites sources").verify("x", ctx("the answer"))


class Corpus:
    def passage_text(self, passage_id: str) -> str | None:
        return {"a.md#1": "The bridge opened in 1932.", "b.md#4": "It is 503 m long."}.get(
            passage_id
        )


async def test_a_judge_given_a_corpus_is_shown_the_passages_the_answer_cites() -> None:
    judge = RecordingJudge(JudgeVerdict(passed=True, reason="supported", score=0.9))
    answer = "Opened 1932 [a.md#1], 503 m [b.md#4], built by giants [made/up.md#9]; [a.md#1]."
    await LLMJudge("supported", passages=Corpus()).verify(answer, ctx(answer, judge))
    await LLMJudge("supported").verify(answer, ctx(answer, judge))
    # each cited passage once, in citation order; an id the corpus lacks is left to the
    # citations check; without a corpus, nothing is shown
    assert [call.evidence for call in judge.calls] == [
        "<passage id='a.md#1'>\nThe bridge opened in 1932.\n</passage>\n"
        "<passage id='b.md#4'>\nIt is 503 m long.\n</passage>",
        "",
    ]
    [judge_from_spec] = verifiers_from_specs(
        Task(id="t", instruction="x", verify=[JudgeSpec()]), passages=Corpus()
    )
    assert isinstance(judge_from_spec, LLMJudge)
    assert isinstance(judge_from_spec.passages, Corpus)


def test_chain_from_specs_puts_schema_first_and_defaults_to_non_empty() -> None:
    schema = {"type": "object"}
    task = Task(id="t", instruction="x", output_schema=schema, verify=[JudgeSpec(), SchemaSpec()])
    names = [v.name for v in verifiers_from_specs(task)]
    assert names == ["schema", "llm_judge"]
    assert [v.name for v in verifiers_from_specs(TASK)] == ["non_empty"]
    plain = Task(id="t", instruction="x", verify=[NonEmptySpec()])
    assert [v.name for v in verifiers_from_specs(plain)] == ["non_empty"]
