"""The ``orchestrator`` command line.

Exit codes: 0 the run succeeded; 1 it did not; 2 bad input (flags, tiers file, plan file),
with a message naming what is wrong; 3 the run waits for a person's approval
(``orchestrator approve``, then ``resume``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from orchestrator.cli.approve import add_approve_command, add_tool_approval_flags
from orchestrator.cli.calibrate import cmd_calibrate
from orchestrator.cli.commands import (
    cmd_resume,
    cmd_run,
    cmd_runs,
    cmd_show,
    cmd_sim_serve,
    cmd_tiers,
    cmd_validate,
    store_path,
)
from orchestrator.cli.executors import add_flags as _executor_flags
from orchestrator.cli.mcp import add_flags as _mcp_flags
from orchestrator.cli.otel import add_flags as _telemetry_flags
from orchestrator.cli.routing import cmd_routing
from orchestrator.cli.schema import cmd_plan_or_schema
from orchestrator.cli.stores import add_store_flag
from orchestrator.exceptions import UserError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Run LLM work as a DAG, each node on the cheapest tier that can do it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="research a goal (plan, then run), or run a plan file",
        description="Research GOAL over a corpus: a planner splits it into sub-questions, "
        "each runs on the cheapest adequate tier, a synthesis writes a cited report. With "
        "--plan FILE, run that plan instead (GOAL then overrides its goal).",
    )
    run.add_argument("goal", nargs="?", help="the goal to research")
    run.add_argument("--plan", metavar="FILE", help="run this plan file (JSON or YAML)")
    _execution_flags(run)
    _planning_flags(run)
    run.set_defaults(handler=cmd_run)

    _add_plan_command(commands)

    _add_resume_commands(commands)

    runs = commands.add_parser("runs", help="list recorded runs, newest first")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--home", metavar="DIR", help="data directory (default $ORCHESTRATOR_HOME)")
    add_store_flag(runs)
    runs.set_defaults(handler=cmd_runs)

    show = commands.add_parser("show", help="show a recorded run")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="the same JSON as run --json")
    show.add_argument(
        "--out", metavar="DIR", help="write result.json and report.md (or output.md) here"
    )
    show.add_argument("--timeline", metavar="FILE", help="write a timeline page (.html)")
    show.add_argument("--home", metavar="DIR", help="data directory (default $ORCHESTRATOR_HOME)")
    add_store_flag(show)
    show.set_defaults(handler=cmd_show)

    tiers = commands.add_parser("tiers", help="show the tier ladder")
    tiers.add_argument("--tiers", metavar="FILE", help="tiers file (TOML) over the default ladder")
    tiers.add_argument("--json", action="store_true")
    tiers.set_defaults(handler=cmd_tiers)

    routing = commands.add_parser(
        "routing",
        help="show what calibrated routing has learned from past runs",
        description="For each kind of task (its capability levels) and each tier it started "
        "on: how many past nodes, how often they ended verified, and what a verified answer "
        "cost. `run --router calibrated` starts each kind on the tier marked *.",
    )
    routing.add_argument("--tiers", metavar="FILE", help="tiers file (TOML) over the ladder")
    routing.add_argument("--runs", type=int, default=500, help="learn from the last N runs")
    routing.add_argument("--json", action="store_true")
    routing.add_argument("--home", metavar="DIR", help="data directory ($ORCHESTRATOR_HOME)")
    add_store_flag(routing)
    routing.set_defaults(handler=cmd_routing)

    _add_calibrate_command(commands)

    validate = commands.add_parser("validate", help="check a plan file; list every problem")
    validate.add_argument("plan", metavar="FILE")
    validate.set_defaults(handler=cmd_validate)

    sim = commands.add_parser("sim", help="the local Messages-API simulator")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="SUBCOMMAND")
    serve = sim_commands.add_parser("serve", help="serve the Messages API on loopback")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8765, help="1 to 65535")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--time-scale", type=_non_negative, default=1.0, help="0 answers instantly")
    serve.add_argument(
        "--fault-rate", type=_fraction, default=0.0, help="share of requests faulted, 0 to 1"
    )
    serve.add_argument("--request-log", metavar="FILE", help="append one JSON line per request")
    serve.set_defaults(handler=cmd_sim_serve)
    return parser


def _execution_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true", help="run against the local simulator")
    parser.add_argument("--tiers", metavar="FILE", help="tiers file (TOML) over the default ladder")
    parser.add_argument("--budget", type=_usd, metavar="USD", help="most the run may spend")
    parser.add_argument(
        "--max-concurrency", type=int, default=None, metavar="N",
        help="nodes running at once (default 16; with --batch 1000: each batch holds the "
        "calls of the nodes in flight)",
    )  # fmt: skip
    parser.add_argument(
        "--router",
        choices=("rules", "calibrated"),
        default="rules",
        help="rules: cheapest tier whose capabilities cover the needs (default); calibrated: "
        "learned from the stored runs, it reads each task and starts it on the cheapest tier "
        "whose estimated silent failures are within threshold 0.1 of the top tier's",
    )
    parser.add_argument(
        "--replan", type=int, default=0, metavar="N",
        help="when tasks fail on every tier, the planner revises the rest of the plan, keeping "
        "what succeeded, at most N times (goal runs; within the budget)",
    )  # fmt: skip
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the tasks' model calls in Message Batches: half price, answers when the "
        "batch ends (minutes, up to 24 h on the real API); a resumed run collects them",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="mark no prompt-cache breakpoints (to compare what caching saves)",
    )
    parser.add_argument(
        "--classify",
        action="store_true",
        help="with --router calibrated: the cheapest tier labels each task easy or hard "
        "before it is routed (one paid call per task; the label is learned from)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document only")
    output.add_argument(
        "--json-stream", action="store_true",
        help="print each event as it happens, one JSON document a line (docs/streaming.md); "
        "the last line is the result, as --json prints it",
    )  # fmt: skip
    parser.add_argument(
        "--out", metavar="DIR", help="write result.json and report.md (or output.md) here"
    )
    parser.add_argument("--home", metavar="DIR", help="data directory (default $ORCHESTRATOR_HOME)")
    add_store_flag(parser)
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (offline)")
    parser.add_argument(
        "--fault-rate", type=_fraction, default=0.0, help="simulator faults, 0 to 1 (offline)"
    )
    _mcp_flags(parser)
    _executor_flags(parser)
    add_tool_approval_flags(parser)
    _telemetry_flags(parser)


def _add_calibrate_command(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="run every tier on a sample of recorded tasks (or a plan); show where each fails",
        description="Run a sample of the tasks recorded in the store (or the tasks of --plan "
        "FILE) once on the top tier, then on each cheaper tier, one attempt each, and compare "
        "each answer that passes its checks with the top tier's. Shows, per family of task "
        "and tier, the answers that agreed, were caught by the checks, or passed them while "
        "wrong (silent failures). The runs are recorded: `run --router calibrated` learns "
        "from them. Every tier is paid for: use --budget.",
    )
    calibrate.add_argument("--plan", metavar="FILE", help="calibrate on these tasks instead")
    calibrate.add_argument("--sample", type=int, default=30, help="recorded tasks to draw")
    calibrate.add_argument("--runs", type=int, default=500, help="draw from the last N runs")
    calibrate.add_argument("--plot", metavar="FILE", help="write the failure shape (PNG)")
    calibrate.add_argument("--corpus", metavar="DIR", help="the corpus research tasks search")
    calibrate.add_argument("--offline", action="store_true", help="against the local simulator")
    calibrate.add_argument("--tiers", metavar="FILE", help="tiers file (TOML) over the ladder")
    calibrate.add_argument("--budget", type=_usd, metavar="USD", help="most all tiers may spend")
    calibrate.add_argument("--max-concurrency", type=int, default=16, metavar="N")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.add_argument("--home", metavar="DIR", help="data directory ($ORCHESTRATOR_HOME)")
    add_store_flag(calibrate)
    calibrate.add_argument("--seed", type=int, default=0, help="sample and simulator seed")
    calibrate.add_argument(
        "--fault-rate", type=_fraction, default=0.0, help="simulator faults, 0 to 1 (offline)"
    )
    _telemetry_flags(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)


def _add_resume_commands(commands: Any) -> None:
    resume = commands.add_parser("resume", help="continue a run that did not finish")
    resume.add_argument("run_id", metavar="RUN_ID")
    _execution_flags(resume)
    resume.add_argument("--corpus", metavar="DIR", help="the corpus the run used (research runs)")
    resume.set_defaults(handler=cmd_resume)
    add_approve_command(commands)


def _add_plan_command(commands: Any) -> None:
    plan = commands.add_parser("plan", help="plan a goal and print the plan; run nothing")
    plan.add_argument("goal", nargs="?", help="the goal to plan")
    plan.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of plan files; plan nothing"
    )
    plan.add_argument("--format", choices=("tree", "mermaid", "json"), default="tree")
    plan.add_argument("--offline", action="store_true", help="plan with the local simulator")
    plan.add_argument("--tiers", metavar="FILE", help="tiers file (TOML) over the default ladder")
    plan.add_argument("--seed", type=int, default=0, help="simulator seed (offline)")
    plan.add_argument(
        "--fault-rate", type=_fraction, default=0.0, help="simulator faults, 0 to 1 (offline)"
    )
    plan.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    _planning_flags(plan)
    plan.set_defaults(handler=cmd_plan_or_schema)


def _planning_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus", metavar="DIR", help="documents to research (default: CPython's own docs)"
    )
    parser.add_argument("--planner-tier", metavar="TIER", help="tier to plan on")
    parser.add_argument("--judge", action="store_true", help="an LLM judge checks every answer")
    parser.add_argument(
        "--web", action="store_true", help="also offer Anthropic's web search and fetch tools"
    )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _fraction(text: str) -> float:
    """A share between 0 and 1 (``--fault-rate``)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _non_negative(text: str) -> float:
    """A finite number of 0 or more (``--time-scale``)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _port(text: str) -> int:
    """A TCP port to listen on, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {text}")
    return port


def _usd(text: str) -> Decimal:
    """An amount of US dollars, exact (``--budget``): finite and not negative."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {text!r}") from None
    if not amount.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite amount of dollars: {text!r}")
    if amount < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return amount


_HOME_COMMANDS = frozenset({"run", "plan", "resume", "runs", "show", "routing", "approve"})
"""The commands that keep data in the home (runs, shared rate limits)."""


def _check_home(args: argparse.Namespace) -> None:
    """Refuse a data directory that is not a directory or cannot be created, by name."""
    if args.command not in _HOME_COMMANDS:
        return
    home = store_path(argparse.Namespace(home=getattr(args, "home", None))).parent
    if getattr(args, "home", None):
        label = f"--home {args.home}"
    elif os.environ.get("ORCHESTRATOR_HOME"):
        label = f"ORCHESTRATOR_HOME={os.environ['ORCHESTRATOR_HOME']}"
    else:
        label = f"data directory {home}"
    if home.exists() and not home.is_dir():
        raise UserError(f"{label}: not a directory (the data directory holds runs.db)")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{label}: cannot create the data directory ({exc.strerror})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        _check_home(args)
        code: int = args.handler(args)
    except UserError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
