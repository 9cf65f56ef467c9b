"""``orchestrator approve RUN_ID TASK [--reject WHY]``: a person's decision on a waiting task."""

from __future__ import annotations

import argparse
import sys
from typing import Literal

import anyio

from orchestrator.approval import decide
from orchestrator.cli.stores import add_store_flag, opened_store
from orchestrator.results import Attempt, RunStatus

__all__ = [
    "EXIT_WAITING",
    "add_approve_command",
    "add_tool_approval_flags",
    "cmd_approve",
    "exit_code",
    "tool_approvals",
]

EXIT_WAITING = 3
"""The exit code of a run that ended ``waiting``: a task waits for approval."""


def exit_code(status: RunStatus) -> int:
    """``run`` and ``resume``: 0 succeeded, 3 waiting for approval, 1 anything else."""
    if status is RunStatus.SUCCEEDED:
        return 0
    return EXIT_WAITING if status is RunStatus.WAITING else 1


def add_tool_approval_flags(parser: argparse.ArgumentParser) -> None:
    """``--approve-tool`` and ``--approve-tool-result`` of ``run`` and ``resume``."""
    parser.add_argument(
        "--approve-tool", action="append", default=[], metavar="NAME",
        help="calls of this tool wait for a person's approval before they run (repeatable; "
        "shell-style patterns such as 'mcp__fs__write_*'); decide with `orchestrator approve`",
    )  # fmt: skip
    parser.add_argument(
        "--approve-tool-result", action="append", default=[], metavar="NAME",
        help="this tool runs, and its result waits for a person's approval before the model "
        "reads it (repeatable, patterns too)",
    )  # fmt: skip


def tool_approvals(args: argparse.Namespace) -> dict[str, Literal["before", "after"]]:
    """The run's tool-name patterns that need approval, and when (``RunConfig.approve_tools``)."""
    stages: dict[str, Literal["before", "after"]] = {}
    for pattern in getattr(args, "approve_tool_result", ()):
        stages[pattern] = "after"
    for pattern in getattr(args, "approve_tool", ()):
        stages[pattern] = "before"  # both given: before it runs is the stricter
    return stages


def add_approve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``approve`` subcommand."""
    approve = commands.add_parser(
        "approve", help="approve (or reject) a task that waits for approval; resume goes on"
    )
    approve.add_argument("run_id", metavar="RUN_ID")
    approve.add_argument("task", metavar="TASK", help="the waiting task's id")
    approve.add_argument(
        "--reject", metavar="WHY",
        help="reject it instead, saying why: a task's answer is re-done one tier up with "
        "WHY as feedback; a task not yet run fails",
    )  # fmt: skip
    approve.add_argument(
        "--home", metavar="DIR", help="data directory (default $ORCHESTRATOR_HOME)"
    )
    add_store_flag(approve)
    approve.set_defaults(handler=cmd_approve)


def cmd_approve(args: argparse.Namespace) -> int:
    """Record the decision in the store; ``orchestrator resume`` acts on it."""
    attempt = anyio.run(_decide, args, args.run_id, args.task, args.reject)
    verdict = attempt.verdict
    assert verdict is not None
    print(
        f"{args.task}: {verdict.reason}; `orchestrator resume {args.run_id}` goes on",
        file=sys.stderr,
    )
    return 0


async def _decide(args: argparse.Namespace, run_id: str, task: str, reject: str | None) -> Attempt:
    async with opened_store(args) as store:
        return await decide(store, run_id, task, reject=reject)
