"""The model-client interface: one request in, one response out, every call metered.

The engine builds a :class:`ModelRequest` (a fresh text conversation per attempt, the tools
the node may call, an optional output schema) and hands it with a
:class:`~orchestrator.budget.Meter` to a :class:`ModelClient`. A client wraps each HTTP
call it makes (a tool loop makes several) in ``async with meter.call(...)`` so the run
budget holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.budget import Meter
from orchestrator.pricing import Usage
from orchestrator.tiers import Tier
from orchestrator.tool import Tool

__all__ = ["Message", "ModelClient", "ModelRequest", "ModelResponse", "estimate_prompt_tokens"]


class Message(BaseModel):
    """One turn of the conversation, as text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    """Who speaks."""
    content: str
    """What is said."""


class ModelRequest(BaseModel):
    """What the engine asks of a model for one attempt (or one judge or planner call)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tier: Tier
    """The tier to call: model id, endpoint and key variable."""
    system: str = ""
    """System prompt."""
    messages: list[Message] = Field(min_length=1)
    """The conversation; always starts fresh for each attempt."""
    max_output_tokens: int = Field(gt=0)
    """``max_tokens`` of each call."""
    tools: Sequence[Tool] = ()
    """Tools the model may call (the node's allowlist, already applied)."""
    output_schema: dict[str, Any] | None = None
    """JSON Schema for structured output; ``None`` for free text."""
    purpose: Literal["task", "judge", "plan"] = "task"
    """Why the call is made (clients may log or trace it)."""
    task_id: str | None = None
    """The task this call serves, for logs and traces."""
    max_tool_steps: int = Field(default=8, gt=0)
    """Most model calls of one tool loop."""
    tool_timeout_s: float = Field(default=60.0, gt=0)
    """Deadline of each tool call."""


class ModelResponse(BaseModel):
    """What came back: the final text, parsed data for structured output, and usage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    """The final answer's text (the JSON text for structured output)."""
    data: Any = None
    """The parsed JSON value when an output schema was requested, else ``None``."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens of every call made for this response, summed."""
    model: str
    """The model that answered, as the API reported it."""
    response_id: str | None = None
    """The API's id of the final response."""
    stop_reason: str | None = None
    """Why the final response ended (``end_turn``, ``max_tokens``...)."""
    tool_calls: int = 0
    """How many tool calls the loop ran."""
    simulated: bool = False
    """True when the answer came from a simulator or test double, not a real model."""


@runtime_checkable
class ModelClient(Protocol):
    """Sends a :class:`ModelRequest` to a model and returns its answer.

    Implementations must wrap every API call in ``async with meter.call(...)``, let
    :class:`~orchestrator.exceptions.BudgetExhausted` propagate, and raise
    :class:`~orchestrator.exceptions.ModelAPIError` for failures their retries could not fix.
    """

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """Run the request (including any tool loop) and return the final answer."""
        ...


def estimate_prompt_tokens(request: ModelRequest) -> int:
    """Return an upper estimate of the request's prompt size in tokens.

    Counts UTF-8 bytes (a token is never shorter than a byte in practice), so the budget's
    worst case is truly a worst case; the real count arrives with the response.
    """
    size = len(request.system.encode()) + 16
    size += sum(len(message.content.encode()) + 8 for message in request.messages)
    for tool in request.tools:
        size += len(tool.name) + len(tool.description.encode())
        size += len(json.dumps(tool.input_schema).encode())
    if request.output_schema is not None:
        size += len(json.dumps(request.output_schema).encode())
    return size
