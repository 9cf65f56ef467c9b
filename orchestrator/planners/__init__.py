"""Planners: turn a goal into a validated :class:`~orchestrator.plan.Plan`.

``LLMPlanner`` asks a model (with a repair loop); ``StaticPlanner`` reads a plan file. The
Python workflow API (:class:`orchestrator.Workflow`) is the third way. All three feed the
same scheduler.
"""

from orchestrator.planners.llm import DraftTask, LLMPlanner, PlanDraft, PlanningReport
from orchestrator.planners.static import StaticPlanner, load_plan_file

__all__ = [
    "DraftTask",
    "LLMPlanner",
    "PlanDraft",
    "PlanningReport",
    "StaticPlanner",
    "load_plan_file",
]
