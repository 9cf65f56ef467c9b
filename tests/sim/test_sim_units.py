"""The brain's pure parts, without HTTP."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from orchestrator.wire import (
    CLASSIFY_SYSTEM_PROMPT,
    classify_prompt,
    feedback_prompt,
    inputs_prompt,
    shared_prefix_chars,
)
from orchestrator_sim import SimConfig
from orchestrator_sim.brain import BrainRequest, DefaultBrain
from orchestrator_sim.faults import FaultInjector
from orchestrator_sim.judge import FlawRegistry, answer_key
from orchestrator_sim.plans import plan_text
from orchestrator_sim.prompts import (
    ToolResult,
    difficulty,
    input_task_ids,
    inputs_text,
    instruction,
    judge_parts,
    key_terms,
    required_sections,
    result_ids,
)
from orchestrator_sim.schema_fill import FillContext, empty_one_field, fill, twist_one_field
from orchestrator_sim.tool_use import evidence_from
from orchestrator_sim.usage import PromptCache, Segment
from orchestrator_sim.writer import Flaw


def ctx(schema: dict[str, object], terms: tuple[str, ...] = ("glacier", "melt")) -> FillContext:
    return FillContext(schema, list(terms), random.Random(0))


SCHEMAS = [
    {"type": "string", "format": "date-time"},
    {"type": ["string", "null"], "maxLength": 3},
    {"type": ["null"]},
    {"const": "fixed"},
    {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10, "maximum": 12}]},
    {"oneOf": [{"type": "number", "exclusiveMinimum": 2.5}]},
    {"allOf": [{"type": "boolean"}]},
    {"type": "number", "maximum": 0.5},
    {"type": "integer", "minimum": 1, "maximum": 2},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3},
    {"type": "array", "maxItems": 1},
    {"type": "object"},
    {"properties": {"name": {"type": "string"}, "report_id": {"type": "string"}}},
    {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    },
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_fill_is_valid_against_the_schema(schema) -> None:
    value = fill(schema, ctx(schema))
    jsonschema.validate(value, schema)


def test_fill_tolerates_unresolvable_refs() -> None:
    assert fill({"$ref": "#/definitions/Missing"}, ctx({})) == "glacier"


def test_fill_uses_property_names_and_terms() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "summary": {"type": "string"},
            "task_id": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    value = fill(schema, ctx(schema))
    assert value["title"] == "Glacier Melt Result"
    assert value["summary"].startswith("Glacier is addressed")
    assert value["task_id"] == "glacier_melt"
    assert value["tags"] == ["glacier", "melt"]


def test_flaws_for_structured_output_stay_schema_valid() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "note": {"type": "string"},
        },
        "required": ["ok", "items", "note"],
    }
    value = fill(schema, ctx(schema))
    assert empty_one_field(value, schema, random.Random(0)) == "required field 'note' is empty"
    assert value["note"] == ""
    jsonschema.validate(value, schema)
    assert "field 'ok'" in (twist_one_field(value, schema, ["melt"]) or "")
    assert value["ok"] is False
    text_only = {"type": "object", "properties": {"note": {"type": "string"}}}
    value = {"note": "x"}
    assert "claims the opposite" in (twist_one_field(value, text_only, ["melt"]) or "")
    assert (
        twist_one_field({"n": 1}, {"type": "object", "properties": {"n": {"type": "integer"}}}, [])
        is None
    )
    assert empty_one_field({}, {"type": "string"}, random.Random(0)) is None
    assert twist_one_field({}, {"type": "string"}, []) is None
    assert (
        empty_one_field({"n": 1}, {"properties": {"n": {"type": "integer"}}}, random.Random(0))
        is None
    )


def test_prompt_conventions() -> None:
    text = (
        "Write up glacier melt. Required sections: Summary; `Causes`, Outlook.\n\n"
        "Inputs from earlier tasks:\n\n<input task='q1'>\nx\n</input>"
        "\n\n<previous_attempt tier='haiku'>\nold\n</previous_attempt>"
    )
    assert (
        instruction(text) == "Write up glacier melt. Required sections: Summary; `Causes`, Outlook."
    )
    assert required_sections(text) == ["Summary", "Causes", "Outlook"]
    assert key_terms("Prove that the glacier melts; compare glacier sheets. [difficulty=2]") == [
        "glacier",
        "melts",
        "sheets",
    ]
    assert difficulty("anything [difficulty=2]", seed=0) == 2
    assert difficulty("Prove and compare the trade-offs", seed=0) == 3
    assert result_ids('{"results": [{"id": 3}, {"id": "b"}]}') == ["3", "b"]
    assert result_ids("no ids here") == []
    assert judge_parts("just an answer") == ("", "", "just an answer")
    shown_inputs = (
        "Task:\nSummarise.\n\nInputs from earlier tasks:\n\n<input task='a'>\n"
        "quoted <answer>\nold\n</answer>\n</input>\n\nCriteria:\nFaithful.\n\n"
        "Answer to judge:\n<answer>\nnew\n</answer>"
    )
    assert judge_parts(shown_inputs) == ("Summarise.", "Faithful.", "new")


def test_inputs_first_prompts_read_as_the_task_and_its_inputs() -> None:
    prompt = inputs_prompt("Compare them. [difficulty=2]", [("a", "alpha"), ("b", "The task:\nx")])
    assert instruction(prompt) == "Compare them. [difficulty=2]"
    assert "alpha" in inputs_text(prompt)
    assert "Compare them" not in inputs_text(prompt)
    escalated = feedback_prompt(prompt, "haiku", "old answer", "too short")
    assert instruction(escalated) == "Compare them. [difficulty=2]"
    assert input_task_ids(escalated) == ["a", "b"]
    shared = shared_prefix_chars(prompt)
    assert prompt[:shared].endswith("</input>\n\n")
    assert prompt[shared:] == "The task:\nCompare them. [difficulty=2]"
    assert shared_prefix_chars("No inputs here.") == 0


def test_evidence_prefers_read_passages_with_quotes() -> None:
    results = [
        ToolResult("search", {"query": "melt"}, "[a.md#1] one\n[a.md#2] two", False),
        ToolResult(
            "read", {"id": "a.md#2"}, json.dumps({"text": "Ice melts faster in warm water."}), False
        ),
        ToolResult("read", {"id": "a.md#9"}, "boom", True),
    ]
    evidence = evidence_from(results)
    assert [(e.id, e.quote) for e in evidence] == [
        ("a.md#2", "Ice melts faster in warm water"),
        ("a.md#1", None),
    ]


def test_flaw_registry_is_bounded_and_ignores_formatting() -> None:
    registry = FlawRegistry(size=2)
    flaw = Flaw("incomplete", "answers only part of the task")
    registry.record('{"a": 1, "b": 2}', flaw)
    assert registry.lookup('{\n  "b": 2,\n  "a": 1\n}') == flaw
    assert answer_key("Some  TEXT") == answer_key("some text")
    registry.record("two", flaw)
    registry.record("three", flaw)
    assert registry.lookup('{"a": 1, "b": 2}') is None


def test_prompt_cache_entries_expire_and_are_bounded() -> None:
    now = [0.0]
    cache = PromptCache(entries=1, clock=lambda: now[0])
    segments = [Segment("a", 2000, "5m")]
    assert cache.account("m", segments, 1024).write_5m == 2000
    assert cache.account("m", segments, 1024).read == 2000
    now[0] = 301.0
    assert cache.account("m", segments, 1024).write_5m == 2000  # expired: written again
    assert cache.account("other", segments, 1024).write_5m == 2000
    assert cache.account("m", segments, 1024).read == 0  # evicted by the other model's entry


def test_fault_kinds_follow_their_weights() -> None:
    injector = FaultInjector(
        SimConfig(fault_rate=1.0, fault_kinds={"slow": 0.0, "overloaded": 1.0})
    )
    assert {injector.draw(str(i).encode()) for i in range(50)} == {"overloaded"}
    with pytest.raises(ValueError, match="at least one fault kind"):
        SimConfig(fault_rate=0.5, fault_kinds={"slow": 0.0})


def test_plan_without_a_task_list_is_just_filled() -> None:
    schema = {"title": "Plan", "type": "object", "properties": {"steps": {"type": "string"}}}
    assert json.loads(plan_text(schema, "goal", ctx(schema))) == {"steps": "glacier"}


def test_brain_judges_without_a_schema() -> None:
    brain = DefaultBrain(SimConfig(judge_false_reject=(1.0, 1.0, 1.0)))
    request = BrainRequest(
        model="m",
        capability=1,
        system="You judge answers.",
        messages=[
            {"role": "user", "content": "Task:\nX\n\nAnswer to judge:\n<answer>\nY\n</answer>"}
        ],
    )
    reply = brain.respond(request)
    verdict = json.loads(reply.content[0]["text"])
    assert verdict["passed"] is False
    assert set(verdict) == {"passed", "reason", "score"}


@pytest.mark.parametrize(("capability", "accuracy"), [(1, 0.75), (3, 0.95)])
def test_a_classifier_names_the_true_label_as_often_as_configured(
    capability: int, accuracy: float
) -> None:
    brain = DefaultBrain(SimConfig(seed=4))
    labels = ["low", "mid", "high"]
    right = 0
    for i in range(600):
        level = 1 + i % 3
        task = f"Describe item {i} of the catalogue. [difficulty={level}]"
        reply = brain.respond(
            BrainRequest(
                model="claude-haiku-5-5" if capability == 1 else "claude-opus-5-5",
                capability=capability,
                system=CLASSIFY_SYSTEM_PROMPT,
                messages=[{"role": "user", "content": classify_prompt(task, labels)}],
            )
        )
        assert reply.kind == "classify"
        text = reply.content[0]["text"]
        assert text in labels
        assert reply.notes["true_label"] == labels[level - 1]
        right += text == labels[level - 1]
    assert abs(right / 600 - accuracy) < 0.06
