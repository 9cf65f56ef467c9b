"""Tiered LLM orchestration: plan, route to the cheapest adequate tier, verify, escalate.

Each node of a plan runs on the cheapest tier whose capabilities cover its needs; every
answer is verified, what fails is re-run one tier up, and every cent is accounted for.

This module is the public API; everything importable from here is covered by the
project's compatibility promise. Submodules hold the details.
"""

from orchestrator.budget import Budget, Meter
from orchestrator.capabilities import (
    CAPABILITY_DIMENSIONS,
    LEVEL_MEANINGS,
    MAX_LEVEL,
    Capabilities,
    Needs,
)
from orchestrator.dag import validate_plan
from orchestrator.engine import Engine, Run, RunConfig, Workload
from orchestrator.events import (
    AttemptFinished,
    AttemptStarted,
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import (
    BudgetExhausted,
    ConfigIssue,
    ModelAPIError,
    ModelAPIUserError,
    OrchestratorError,
    PlanProblem,
    PlanValidationError,
    RunError,
    TierConfigError,
    TierLadderExhausted,
    UserError,
    WorkflowDefinitionError,
)
from orchestrator.models.base import Message, ModelClient, ModelRequest, ModelResponse
from orchestrator.node import Node, node_from_task
from orchestrator.plan import (
    CitationsSpec,
    JudgeSpec,
    NonEmptySpec,
    Plan,
    RequiredSectionsSpec,
    SchemaSpec,
    Task,
    VerifierSpec,
    parse_plan,
)
from orchestrator.pricing import PriceBand, Usage
from orchestrator.results import (
    Attempt,
    NodeResult,
    NodeStatus,
    PlanningRecord,
    RunResult,
    RunStatus,
    Verdict,
)
from orchestrator.routing import (
    CalibratedRouter,
    Calibration,
    CapabilityRouter,
    LearningRouter,
    RouteDecision,
    Router,
    TierRecord,
)
from orchestrator.tiers import Tier, TierLadder, default_ladder, load_ladder
from orchestrator.tool import ServerTool, Tool
from orchestrator.verify import (
    JudgeFunction,
    JudgeVerdict,
    LLMJudge,
    NonEmpty,
    Predicate,
    RequiredSections,
    SchemaVerifier,
    SelfCheck,
    VerificationContext,
    Verifier,
)
from orchestrator.workflow import TaskRef, Workflow

__all__ = [
    "CAPABILITY_DIMENSIONS",
    "LEVEL_MEANINGS",
    "MAX_LEVEL",
    "Attempt",
    "AttemptFinished",
    "AttemptStarted",
    "Budget",
    "BudgetExhausted",
    "CalibratedRouter",
    "Calibration",
    "Capabilities",
    "CapabilityRouter",
    "CitationsSpec",
    "ConfigIssue",
    "Engine",
    "Event",
    "JudgeFunction",
    "JudgeSpec",
    "JudgeVerdict",
    "LLMJudge",
    "LearningRouter",
    "Message",
    "Meter",
    "ModelAPIError",
    "ModelAPIUserError",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "Needs",
    "Node",
    "NodeFinished",
    "NodeResult",
    "NodeStarted",
    "NodeStatus",
    "NonEmpty",
    "NonEmptySpec",
    "OrchestratorError",
    "Plan",
    "PlanProblem",
    "PlanValidationError",
    "PlanningRecord",
    "Predicate",
    "PriceBand",
    "RequiredSections",
    "RequiredSectionsSpec",
    "RouteDecision",
    "Router",
    "Run",
    "RunConfig",
    "RunError",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "SchemaSpec",
    "SchemaVerifier",
    "SelfCheck",
    "ServerTool",
    "Task",
    "TaskRef",
    "Tier",
    "TierConfigError",
    "TierLadder",
    "TierLadderExhausted",
    "TierRecord",
    "Tool",
    "Usage",
    "UserError",
    "Verdict",
    "VerificationContext",
    "Verifier",
    "VerifierSpec",
    "Workflow",
    "WorkflowDefinitionError",
    "Workload",
    "default_ladder",
    "load_ladder",
    "node_from_task",
    "parse_plan",
    "validate_plan",
]
