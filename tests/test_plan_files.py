"""Plan files as a user writes them: the JSON Schema (`orchestrator plan --schema`), the
examples and docs/plan-files.md checked against it, and what a plan's checks tell the model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator import (
    Engine,
    ModelRequest,
    Plan,
    PlanValidationError,
    Prompt,
    RequiredSections,
    RunStatus,
    Task,
    Workflow,
    parse_plan,
    validate_plan,
)
from orchestrator.cli import main
from orchestrator.planners.static import load_plan_file, plan_file_schema
from orchestrator.testing import FunctionModel
from orchestrator.wire import (
    REQUIRED_SECTIONS_MARK,
    SECTIONS_HINT,
    required_sections,
    sections_prompt,
)

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "plan-files.md"
EXAMPLES = sorted((ROOT / "examples" / "plans").glob("*.*"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return plan_file_schema()


def _doc_blocks() -> list[tuple[str, str, str]]:
    """(language, text, the text block after it) of each json/yaml block of the page."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), re.S)
    return [
        (lang, text, blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else "")
        for i, (lang, text) in enumerate(blocks)
        if lang in {"json", "yaml"}
    ]


def _load(lang: str, text: str) -> Any:
    return json.loads(text) if lang == "json" else yaml.safe_load(text)


def test_plan_schema_prints_the_schema(
    capsys: pytest.CaptureFixture[str], schema: dict[str, Any]
) -> None:
    assert main(["plan", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_plan_without_goal_or_schema_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 2
    assert "--schema" in capsys.readouterr().err


def test_the_schema_is_derived_from_the_models(schema: dict[str, Any]) -> None:
    task = schema["$defs"]["Task"]
    assert set(task["properties"]) == set(Task.model_fields)
    assert set(schema["properties"]) == set(Plan.model_fields)
    assert task["properties"]["id"]["description"].startswith("Unique id within the plan")
    kinds = task["properties"]["verify"]["items"]["discriminator"]["mapping"]
    assert set(kinds) == {"non_empty", "schema", "required_sections", "llm_judge", "citations"}
    for ref in kinds.values():  # the discriminator is required, as parsing requires it
        assert schema["$defs"][ref.rsplit("/", 1)[-1]]["required"][0] == "kind"
    assert "null" in task["properties"]["output_schema"]["description"]  # JSON's words


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_plans_validate_against_the_schema(path: Path, schema: dict[str, Any]) -> None:
    data = _load("json" if path.suffix == ".json" else "yaml", path.read_text())
    jsonschema.validate(data, schema)
    validate_plan(load_plan_file(path))


def test_the_docs_examples_validate_and_their_errors_are_what_validate_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schema: dict[str, Any]
) -> None:
    valid = invalid = 0
    for lang, text, errors in _doc_blocks():
        if not errors:
            jsonschema.validate(_load(lang, text), schema)
            validate_plan(parse_plan(_load(lang, text)))
            valid += 1
            continue
        plan = tmp_path / "plan.json"
        plan.write_text(text)
        assert main(["validate", str(plan)]) == 2
        assert capsys.readouterr().err.replace(str(plan), "plan.json") == errors
        invalid += 1
    assert (valid, invalid) == (2, 2)


def test_the_docs_name_every_field_and_check() -> None:
    page = DOC.read_text()
    fields = {*Plan.model_fields, *Task.model_fields, "reasoning", "context_tokens"}
    kinds = plan_file_schema()["$defs"]["Task"]["properties"]["verify"]["items"]
    fields |= set(kinds["discriminator"]["mapping"])
    for spec in kinds["oneOf"]:
        fields |= set(plan_file_schema()["$defs"][spec["$ref"].rsplit("/", 1)[-1]]["properties"])
    missing = sorted(name for name in fields if f"`{name}`" not in page)
    assert not missing, f"docs/plan-files.md does not describe {missing}"


BAD = {
    "unknown task field": {"id": "a", "instruction": "x", "colour": "red"},
    "check without kind": {"id": "a", "instruction": "x", "verify": [{"sections": ["A"]}]},
    "unknown check kind": {"id": "a", "instruction": "x", "verify": [{"kind": "sections"}]},
    "no sections": {"id": "a", "instruction": "x", "verify": [{"kind": "required_sections"}]},
    "level out of range": {"id": "a", "instruction": "x", "needs": {"reasoning": 4}},
    "unknown capability": {"id": "a", "instruction": "x", "needs": {"speed": 1}},
    "empty instruction": {"id": "a", "instruction": ""},
    "bad id": {"id": "a b", "instruction": "x"},
    "no tokens": {"id": "a", "instruction": "x", "max_output_tokens": 0},
    "no instruction": {"id": "a"},
}


@pytest.mark.parametrize("task", BAD.values(), ids=BAD.keys())
def test_the_schema_rejects_what_parsing_rejects(
    task: dict[str, Any], schema: dict[str, Any]
) -> None:
    plan = {"goal": "g", "tasks": [task]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(plan, schema)
    with pytest.raises(PlanValidationError):
        parse_plan(plan)


def test_a_plan_without_goal_is_rejected(schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError, match="'goal' is a required property"):
        jsonschema.validate({"tasks": []}, schema)


# -- a plan's required sections reach the prompt ----------------------------------------


def test_a_required_sections_plan_passes_on_the_first_tier_covering_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The instruction names no sections: before, the model was never told them, and every
    # tier failed the check (the simulator, like a model, writes what it is asked for).
    sections = ["Highlights", "Breaking changes", "Performance"]
    task = {
        "id": "notes",
        "instruction": "Write release notes for version 2.0 of a task-queue library. "
        "[difficulty=2]",
        "needs": {"reasoning": 2},
        "verify": [{"kind": "required_sections", "sections": sections}],
    }
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "Release notes", "tasks": [task]}))
    assert main(["run", "--offline", "--plan", str(plan), "--json"]) == 0
    node = json.loads(capsys.readouterr().out)["nodes"][0]
    assert [(a["tier"], a["verdict"]["passed"]) for a in node["attempts"]] == [("sonnet", True)]
    assert all(f"## {title}" in node["output"] for title in sections)


def test_the_sections_are_appended_once_after_everything_else() -> None:
    sections = ["Summary", "Risks"]
    told = sections_prompt("Write it up.", sections)
    assert told == f"Write it up.\n\n{REQUIRED_SECTIONS_MARK} Summary, Risks\n{SECTIONS_HINT}"
    assert sections_prompt(told, sections) == told
    already = "Write it up. Required sections: summary; `Risks`."
    assert sections_prompt(already, sections) == already  # named already, any case
    more = sections_prompt("Required sections: Summary", sections)
    assert required_sections(more) == ["Summary", "Risks"]  # every such line counts
    assert sections_prompt("x", []) == "x"
    assert required_sections("Required sections: A,, B.") == ["A", "B"]


@pytest.mark.anyio
async def test_every_prompt_of_a_node_with_a_sections_check_names_them() -> None:
    seen: list[str] = []

    def answer(request: ModelRequest) -> str:
        seen.append(str(request.messages[-1].content))
        return "## Summary\nok\n## Risks\nnone"

    wf = Workflow("w")

    @wf.llm(verify=[RequiredSections(["Summary", "Risks"])])
    def report() -> Prompt:
        return Prompt(shared="a long handbook", task="Report on it.")

    result = await Engine(FunctionModel(answer)).run(wf)
    assert result.status is RunStatus.SUCCEEDED
    assert seen[0].startswith("a long handbook\n\nReport on it.")  # the shared prefix kept
    assert required_sections(seen[0]) == ["Summary", "Risks"]
