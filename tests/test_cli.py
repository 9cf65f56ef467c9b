"""The command line: exit codes, messages naming what is wrong, JSON output."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from orchestrator.cli import main

PLAN = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"


def test_validate_good_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(PLAN)]) == 0
    assert "valid, 4 tasks, 3 dependencies" in capsys.readouterr().out


def test_validate_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text(
        json.dumps(
            {
                "goal": "g",
                "tasks": [
                    {"id": "a", "instruction": "x", "depends_on": ["b"]},
                    {"id": "b", "instruction": "y", "depends_on": ["a"]},
                    {"id": "c", "instruction": "z", "depends_on": ["ghost"]},
                ],
            }
        )
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "cycle: a -> b -> a" in err
    assert "task 'c': depends on unknown task 'ghost'" in err


def test_unreadable_plan_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    assert "cannot read plan file" in capsys.readouterr().err


def test_plan_file_with_bad_json_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    assert main(["validate", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_tiers_prints_the_ladder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiers"]) == 0
    out = capsys.readouterr().out
    assert out.index("haiku") < out.index("sonnet") < out.index("opus")
    assert "claude-haiku-5-5" in out


def test_bad_tiers_file_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text('[tiers.haiku]\nmax_concurrency = "many"\n')
    assert main(["tiers", "--tiers", str(tiers)]) == 2
    err = capsys.readouterr().err
    assert str(tiers) in err
    assert "tiers.haiku.max_concurrency" in err


def test_run_without_key_or_offline_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["run", "--plan", str(PLAN)]) == 2
    err = capsys.readouterr().err
    assert "ANTHROPIC_API_KEY" in err
    assert "--offline" in err


def test_bad_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--plan", str(PLAN), "--max-concurrency", "lots"])
    assert info.value.code == 2


def test_zero_concurrency_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--offline", "--plan", str(PLAN), "--max-concurrency", "0"]) == 2
    assert "max_concurrency" in capsys.readouterr().err


def test_runs_on_an_empty_home(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_show_unknown_run_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "run_nope"]) == 2
    assert "no run 'run_nope'" in capsys.readouterr().err


def test_corrupt_store_exits_2_and_is_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "runs.db").write_bytes(b"garbage" * 50)
    assert main(["runs", "--home", str(home)]) == 2
    assert "is not an orchestrator run store" in capsys.readouterr().err
    assert (home / "runs.db").read_bytes() == b"garbage" * 50


def test_bad_run_settings_are_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--offline", "--plan", str(PLAN), "--max-concurrency", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "orchestrator: error: bad run settings: --max-concurrency (max_concurrency): "
        "Input should be greater than 0"
    )


def test_sim_serve_on_a_port_in_use_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["sim", "serve", "--port", str(port)]) == 2
    assert f"--port {port}: cannot listen" in capsys.readouterr().err
