"""Model clients: the one narrow interface between the engine and model vendors."""

from orchestrator.models.base import (
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    estimate_prompt_tokens,
)
from orchestrator.models.test import FunctionModel, TestModel

__all__ = [
    "FunctionModel",
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "TestModel",
    "estimate_prompt_tokens",
]
