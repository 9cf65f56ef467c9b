"""Table printing, JSON output and the environment record shared by the benchmarks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Column = tuple[str, str, str]
"""(key, heading, format)."""


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-" if key != "error" else ""
    return fmt.format(value)


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, header: bool = True
) -> None:
    """Print rows as a Markdown table (so it can be pasted into docs/benchmarks.md)."""
    if header:
        print("| " + " | ".join(heading for _, heading, _ in columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in columns) + " |", flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str | None:
    """The commit measured: ``$BENCH_COMMIT`` (for a tree exported from git, which has no
    repository), else the repository's ``HEAD`` (its working tree may differ: see git)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607  (git from PATH)
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Machine, versions and commit, recorded beside every result."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
        "versions": {
            name: _version(name)
            for name in (
                "tiered-orchestrator",
                "anyio",
                "networkx",
                "pydantic",
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-sqlite",
                "aiosqlite",
                "ray",
            )
        },
        "argv": sys.argv,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
