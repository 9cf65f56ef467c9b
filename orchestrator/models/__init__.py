"""Model clients: the one narrow interface between the engine and model vendors.

A client answers one turn (:meth:`ModelClient.complete`); the engine's tool loop
(:mod:`orchestrator.turns`) runs any tool calls and asks again, and
:class:`InstrumentedModel` wraps any client with the chat spans. A client meters each
request it sends on the :class:`Meter` it is given (the budget's gate).
"""

from orchestrator.budget import CallTicket, Meter
from orchestrator.models.base import (
    Block,
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    ProviderBlock,
    TextBlock,
    ToolCall,
    ToolResult,
    estimate_prompt_tokens,
)
from orchestrator.models.instrumented import InstrumentedModel, instrumented
from orchestrator.models.test import Answer, FunctionModel, TestModel, tool_results

__all__ = [
    "Answer",
    "Block",
    "CallTicket",
    "FunctionModel",
    "InstrumentedModel",
    "Message",
    "Meter",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "ProviderBlock",
    "TestModel",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "estimate_prompt_tokens",
    "instrumented",
    "tool_results",
]
