"""Where the CLI keeps its data: the home directory and its run store."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["store_path"]


def store_path(args: argparse.Namespace) -> Path:
    """The SQLite file: ``--home`` or ``ORCHESTRATOR_HOME`` (default ``~/.orchestrator``)."""
    home = args.home or os.environ.get("ORCHESTRATOR_HOME") or Path.home() / ".orchestrator"
    return Path(home) / "runs.db"
