"""Docs that cannot drift: the CLI reference names every command and flag the parser has,
and every Python block of the README and docs/ runs as a script, offline, as written."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import _parser

ROOT = Path(__file__).parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found |= {f"{name} {k}": v for k, v in _subparsers(sub).items()}
    return found


def test_cli_reference_covers_every_command_and_flag() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text()
    for name, sub in _subparsers(_parser()).items():
        assert f"orchestrator {name}" in reference, f"docs/cli.md misses `orchestrator {name}`"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and action.help != argparse.SUPPRESS:
                    assert flag in reference, f"docs/cli.md misses {flag} of `{name}`"


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks() -> dict[str, str]:
    """Every ```python block of the README and docs/, by ``page:line``."""
    blocks = {}
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            blocks[f"{page.relative_to(ROOT)}:{line}"] = match.group(1)
    return blocks


BLOCKS = _python_blocks()

_RUNNER = """
import contextlib, io, json, sys, traceback

blocks, outcome = json.load(open(sys.argv[1])), {}
for where, code in blocks.items():
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, where, "exec"), {"__name__": "__main__"})
    except BaseException:
        outcome[where] = {"stdout": out.getvalue(), "error": traceback.format_exc()}
    else:
        outcome[where] = {"stdout": out.getvalue(), "error": None}
json.dump(outcome, open(sys.argv[2], "w"))
"""


@pytest.mark.parametrize("where", BLOCKS)
def test_every_python_block_is_a_script(where: str) -> None:
    # What a user pastes into a file must run there: no top-level await, no fragments.
    compile(BLOCKS[where], where, "exec")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    """Every Python block run as ``__main__`` in one interpreter (each in its own
    namespace, from the repository root, offline: test doubles or the simulator)."""
    folder = tmp_path_factory.mktemp("blocks")
    (folder / "blocks.json").write_text(json.dumps(BLOCKS))
    (folder / "runner.py").write_text(_RUNNER)
    paths = [str(folder / name) for name in ("runner.py", "blocks.json", "outcome.json")]
    offline = {key: value for key, value in os.environ.items() if key != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [sys.executable, *paths], cwd=ROOT, env=offline, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome: dict[str, dict[str, str | None]] = json.loads((folder / "outcome.json").read_text())
    return outcome


@pytest.mark.parametrize("where", BLOCKS)
def test_every_python_block_runs_offline(where: str, ran: dict[str, dict[str, str | None]]) -> None:
    assert ran[where]["error"] is None, ran[where]["error"]


def test_readme_python_example_runs_and_its_answer_is_not_empty(
    ran: dict[str, dict[str, str | None]],
) -> None:
    readme = [where for where in BLOCKS if where.startswith("README.md")]
    assert readme, "the README has no Python example"
    printed = str(ran[readme[0]]["stdout"])
    assert printed.startswith("succeeded"), printed
    # An empty field is valid JSON of a plain `str` field: the example's model says what
    # an answer must hold, so an empty choice is rejected and escalated, never printed.
    assert re.match(r"succeeded choice='[^']+' reasons=\['", printed), printed


@pytest.mark.parametrize("example", ["python_workflow.py", "research_synthesis.py"])
def test_examples_run_offline(example: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
