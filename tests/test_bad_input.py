"""Bad input from the command line: exit 2 and one line naming what is wrong, no traceback.

Each case once ended in a traceback (exit 1) or worse: plan files nested 100,000 deep, not
UTF-8, or a YAML alias bomb; tiers files not UTF-8 or a directory; out-of-range flags; a
home that is a file or cannot be created.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

import orchestrator.planners.static
from orchestrator import PlanValidationError, parse_plan
from orchestrator.cli import main

PLAN = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"
DEEP = 100_000
RUN_WITH = ["run", "--offline", "--json", "--plan"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single line ``main`` wrote to stderr (asserting it is one line, no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("orchestrator: error: ")
    return lines[0]


def flag_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The error argparse gives for ``argv`` (exit 2), its last line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def deep_json(depth: int) -> str:
    schema = '{"a":' * depth + "1" + "}" * depth
    return '{"goal":"g","tasks":[{"id":"a","instruction":"x","output_schema":' + schema + "}]}"


def deep_yaml(depth: int) -> str:
    schema = "{a: " * depth + "1" + "}" * depth
    return "goal: g\ntasks:\n- id: a\n  instruction: x\n  output_schema: " + schema + "\n"


def alias_bomb(levels: int) -> str:
    """A plan whose output schema is tiny as written and 10**levels values expanded."""
    lines = ['    l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels):
        lines.append(f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    head = "goal: g\ntasks:\n- id: a\n  instruction: Fill the schema.\n  output_schema:\n"
    return head + "\n".join(lines) + "\n"


# -- plan files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [("deep.json", deep_json(DEEP)), ("deep.yaml", deep_yaml(DEEP))],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_plan_nested_too_deep_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, command: str
) -> None:
    plan = write(tmp_path / name, text)
    argv = ["validate", str(plan)] if command == "validate" else [*RUN_WITH, str(plan)]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert str(plan) in line
    assert "nested more than 100 levels deep" in line


def test_a_plan_at_the_depth_limit_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the plan's own levels (plan, tasks, task, output_schema) leave 97 to the schema
    assert main(["validate", str(write(tmp_path / "ok.json", deep_json(97)))]) == 0
    assert main(["validate", str(write(tmp_path / "ok.yaml", deep_yaml(97)))]) == 0
    assert main(["validate", str(write(tmp_path / "no.json", deep_json(98)))]) == 2
    assert "nested more than 100" in one_error_line(capsys)


def test_brackets_inside_json_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    text = json.dumps({"goal": "[" * 500 + '\\"{', "tasks": [{"id": "a", "instruction": "{"}]})
    assert main(["validate", str(write(tmp_path / "p.json", text))]) == 0


def test_parse_plan_reports_deep_json_as_a_problem() -> None:
    with pytest.raises(PlanValidationError, match="recursion limit"):
        parse_plan(deep_json(DEEP))


@pytest.mark.parametrize("name", ["plan.json", "plan.yaml"])
def test_a_plan_file_not_utf8_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    plan = write(tmp_path / name, b'{"goal": "caf\xe9", "tasks": []}')
    assert main(["validate", str(plan)]) == 2
    line = one_error_line(capsys)
    assert f"{plan}: not UTF-8 text (byte 0xe9 at offset 13)" in line


def test_a_plan_file_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert f"cannot read plan file {tmp_path}: it is a directory" in one_error_line(capsys)


def test_a_plan_file_over_the_size_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orchestrator.planners.static, "MAX_PLAN_BYTES", 2**20)
    plan = write(tmp_path / "big.json", PLAN.read_text() + " " * 2**20)
    assert main(["validate", str(plan)]) == 2
    assert f"{plan}: plan file larger than 1 MiB" in one_error_line(capsys)


def test_a_yaml_alias_bomb_is_refused_by_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write(tmp_path / "bomb.yaml", alias_bomb(10))  # 10**10 values once expanded
    assert main(["validate", str(plan)]) == 2
    line = one_error_line(capsys)
    assert str(plan) in line
    assert "YAML aliases (*name) expand the plan to 12,345,679,032 values from 42" in line


def test_a_yaml_alias_bomb_is_refused_by_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a small bomb (10**6 values), so that without the bound the run ends rather than
    # exhausting memory; the bound refuses any bomb before anything is expanded
    plan = write(tmp_path / "bomb.yaml", alias_bomb(6))
    assert main(["run", "--offline", "--json", "--plan", str(plan)]) == 2
    assert "YAML aliases (*name) expand the plan" in one_error_line(capsys)


def test_yaml_aliases_that_nest_too_deep_once_expanded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inner = "{a: " * 60 + "1" + "}" * 60
    outer = "{a: " * 60 + "*inner" + "}" * 60  # 60 levels as written, 120 expanded
    schema = f"{{defs: &inner {inner}, deep: {outer}}}"
    text = f"goal: g\ntasks:\n- id: a\n  instruction: x\n  output_schema: {schema}\n"
    assert main(["validate", str(write(tmp_path / "deep.yaml", text))]) == 2
    line = one_error_line(capsys)
    assert "nested more than 100 levels deep once its YAML aliases are expanded" in line


def test_a_yaml_alias_that_contains_itself_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "goal: g\ntasks: &tasks\n- id: a\n  instruction: x\n  output_schema: {t: *tasks}\n"
    assert main(["validate", str(write(tmp_path / "loop.yaml", text))]) == 2
    assert "a YAML alias refers to the node holding it (line 2)" in one_error_line(capsys)


def test_yaml_aliases_that_share_a_value_are_fine(tmp_path: Path) -> None:
    first = (
        "- id: t0\n  instruction: Step 0.\n  verify: &checks\n  - kind: non_empty\n"
        "  - kind: required_sections\n    sections: [Summary, Details]\n"
    )
    rest = "".join(
        f"- id: t{i}\n  instruction: Step {i}.\n  verify: *checks\n" for i in range(1, 200)
    )
    path = write(tmp_path / "shared.yml", "goal: g\ntasks:\n" + first + rest)
    plan = orchestrator.planners.static.load_plan_file(path)
    assert len(plan.tasks) == 200
    assert all(len(task.verify) == 2 for task in plan.tasks)


# -- tiers files --------------------------------------------------------------------------


def test_a_tiers_file_not_utf8_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = write(tmp_path / "tiers.toml", b'[tiers.haiku]\nmodel = "caf\xe9"\n')
    assert main(["tiers", "--tiers", str(tiers)]) == 2
    assert f"{tiers}: (file): not UTF-8 text (byte 0xe9" in one_error_line(capsys)
    assert main(["run", "--offline", "--tiers", str(tiers), "--plan", str(PLAN)]) == 2
    assert "not UTF-8 text" in one_error_line(capsys)


def test_a_tiers_file_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiers", "--tiers", str(tmp_path)]) == 2
    assert f"{tmp_path}: (file): is a directory" in one_error_line(capsys)


def test_a_tiers_file_nested_too_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiers = write(tmp_path / "tiers.toml", "x = " + "[" * DEEP + "]" * DEEP + "\n")
    assert main(["tiers", "--tiers", str(tiers)]) == 2
    assert "nested too deep" in one_error_line(capsys)


# -- flags --------------------------------------------------------------------------------

RUN = ["run", "--offline", "--plan", str(PLAN)]
PLAN_CMD = ["plan", "a goal", "--offline"]
SERVE = ["sim", "serve"]


@pytest.fixture(autouse=True)
def _never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``sim serve`` whose flags were accepted fails at once instead of serving forever."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sim serve accepted its flags and started serving")

    monkeypatch.setattr("orchestrator_sim.run_forever", refuse)


@pytest.mark.parametrize("command", [RUN, PLAN_CMD, SERVE, ["resume", "run_x"]])
@pytest.mark.parametrize("rate", ["2", "-0.5", "nan"])
def test_fault_rate_out_of_range(
    capsys: pytest.CaptureFixture[str], command: list[str], rate: str
) -> None:
    line = flag_error(capsys, [*command, "--fault-rate", rate])
    assert "argument --fault-rate:" in line
    assert rate in line


@pytest.mark.parametrize("scale", ["-1", "inf"])
def test_time_scale_must_be_finite_and_not_negative(
    capsys: pytest.CaptureFixture[str], scale: str
) -> None:
    assert "argument --time-scale:" in flag_error(capsys, [*SERVE, "--time-scale", scale])


@pytest.mark.parametrize("port", ["-1", "0", "65536"])
def test_sim_serve_port_out_of_range(capsys: pytest.CaptureFixture[str], port: str) -> None:
    line = flag_error(capsys, [*SERVE, "--port", port])
    assert "argument --port:" in line
    assert port in line


@pytest.mark.parametrize(
    ("budget", "problem"),
    [
        ("-1", "must be 0 or more, not -1"),
        ("-0.01", "must be 0 or more, not -0.01"),
        ("nan", "not a finite amount of dollars: 'nan'"),
        ("inf", "not a finite amount of dollars: 'inf'"),
        ("-Infinity", "not a finite amount of dollars: '-Infinity'"),
        ("ten", "not an amount of dollars: 'ten'"),
    ],
)
def test_budget_must_be_a_finite_amount_not_negative(
    capsys: pytest.CaptureFixture[str], budget: str, problem: str
) -> None:
    line = flag_error(capsys, [*RUN, f"--budget={budget}"])
    assert line.endswith(f"argument --budget: {problem}")


def test_budget_is_read_exactly() -> None:
    from orchestrator.cli import _parser  # the parser's value, before any run

    args = _parser().parse_args([*RUN, "--budget", "0.1"])
    assert args.budget == Decimal("0.1")
    assert isinstance(args.budget, Decimal)


# -- the home -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["runs"], ["show", "run_x"], ["routing"], RUN, ["resume", "run_x", "--offline"]],
    ids=["runs", "show", "routing", "run", "resume"],
)
def test_a_home_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    home = write(tmp_path / "passwd", "root:x:0:0\n")
    assert main([*argv, "--home", str(home)]) == 2
    assert one_error_line(capsys) == (
        f"orchestrator: error: --home {home}: not a directory (the data directory holds runs.db)"
    )
    assert home.read_text() == "root:x:0:0\n"


def test_a_home_that_cannot_be_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = write(tmp_path / "file", "") / "home"
    assert main(["runs", "--home", str(home)]) == 2
    assert f"--home {home}: cannot create the data directory (Not a directory)" in (
        one_error_line(capsys)
    )


def test_orchestrator_home_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = write(tmp_path / "passwd", "")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    assert main(["runs"]) == 2
    assert f"ORCHESTRATOR_HOME={home}: not a directory" in one_error_line(capsys)
    assert main(PLAN_CMD) == 2  # plan keeps shared rate limits in the home
    assert f"ORCHESTRATOR_HOME={home}: not a directory" in one_error_line(capsys)


@pytest.mark.parametrize("argv", [[*RUN_WITH, str(PLAN)], ["sim", "serve", "--port", "8999"]])
def test_offline_without_the_simulator_installed_names_the_extra(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "orchestrator_sim", None)  # not importable
    assert main(argv) == 2
    assert "pip install 'tiered-orchestrator[sim]'" in one_error_line(capsys)


def test_a_judge_on_a_tier_the_ladder_lacks_is_refused_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to pass validation and fail every attempt with a KeyError, escalating
    # through every tier and paying for each answer the judge never saw.
    plan = tmp_path / "plan.json"
    verify = [{"kind": "llm_judge", "tier": "gpt-9"}]
    plan.write_text(json.dumps({"goal": "g", "tasks": [
        {"id": "t", "instruction": "Name a heap use.", "verify": verify}]}))  # fmt: skip
    assert main(["run", "--plan", str(plan), "--offline", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "task 't'" in err
    assert "'gpt-9'" in err
    assert "haiku, sonnet, opus" in err
