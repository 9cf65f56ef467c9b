"""The static planner: a plan from a JSON or YAML file, validated like any other."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import anyio
import yaml

from orchestrator.dag import validate_plan
from orchestrator.exceptions import PlanValidationError, UserError
from orchestrator.plan import Plan, parse_plan

__all__ = ["StaticPlanner", "load_plan_file"]


def load_plan_file(path: str | Path) -> Plan:
    """Read a plan from ``.json``, ``.yaml`` or ``.yml``.

    Raises:
        UserError: Naming the file, when it cannot be read or parsed, or is not a plan.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read plan file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
            if not isinstance(data, dict):
                raise UserError(f"{path}: a plan file holds a mapping with 'goal' and 'tasks'")
            return parse_plan(data)
        return parse_plan(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    except PlanValidationError as exc:
        raise UserError(f"{path}: {exc}") from None


class StaticPlanner:
    """Returns the plan stored in a file (the goal may be overridden).

    Args:
        path: The plan file (JSON or YAML).
        known_tools: Tool names that exist, for validation; ``None`` skips the tool check.
    """

    def __init__(self, path: str | Path, *, known_tools: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self.known_tools = known_tools

    async def plan(self, goal: str | None = None, context: str | None = None) -> Plan:
        """Load, optionally re-goal, and validate the plan (file reading off the loop)."""
        plan = await anyio.to_thread.run_sync(load_plan_file, self.path)
        if goal:
            plan = plan.model_copy(update={"goal": goal})
        validate_plan(plan, known_tools=self.known_tools)
        return plan
