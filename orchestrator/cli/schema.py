"""``orchestrator plan --schema``: the JSON Schema of plan files, for editors and CI."""

from __future__ import annotations

import argparse
import json

from orchestrator.cli.commands import cmd_plan
from orchestrator.exceptions import UserError
from orchestrator.planners.static import plan_file_schema

__all__ = ["cmd_plan_or_schema"]


def cmd_plan_or_schema(args: argparse.Namespace) -> int:
    """Print the plan-file schema (``--schema``), else plan GOAL (:func:`cmd_plan`)."""
    if args.schema:
        print(json.dumps(plan_file_schema(), indent=2))
        return 0
    if not args.goal:
        raise UserError("give a GOAL to plan, or --schema to print the plan-file JSON Schema")
    return cmd_plan(args)
