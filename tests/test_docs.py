"""Docs that cannot drift: the CLI reference names every command and flag the parser has,
and the README's Python example runs as written."""

from __future__ import annotations

import argparse
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


def test_readme_python_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README has no Python example"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("succeeded")


@pytest.mark.parametrize("example", ["python_workflow.py", "research_synthesis.py"])
def test_examples_run_offline(example: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
