"""The model-client interface: one model turn in, one model turn out, every call metered.

The engine builds a :class:`ModelRequest` (the conversation so far, the tools the node may
call, an optional output schema) and hands it with a :class:`~orchestrator.budget.Meter`
to a :class:`ModelClient`, which returns the model's next turn: text, and any
:class:`ToolCall` blocks the model asked for. The client never runs tools; the engine's
tool loop (:mod:`orchestrator.turns`) runs them and asks again. A client wraps each HTTP
call it makes (retries included) in ``async with meter.call(...)`` so the run budget holds.
Spans and metrics come from :class:`~orchestrator.models.instrumented.InstrumentedModel`,
which wraps any client.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.budget import Meter
from orchestrator.exceptions import RetryEvent
from orchestrator.pricing import Usage
from orchestrator.tiers import Tier
from orchestrator.tool import Tool

__all__ = [
    "Block",
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "ProviderBlock",
    "TextBlock",
    "TextHook",
    "ToolCall",
    "ToolResult",
    "errors_seen",
    "estimate_prompt_tokens",
]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider_data: dict[str, Any] | None = None
    """The block as the provider sent it, replayed as is within one conversation.

    ``None`` for blocks the engine or a test double made.
    """


class TextBlock(_Block):
    """Text in a turn."""

    type: Literal["text"] = "text"
    text: str
    """The text."""
    cache: bool = False
    """Mark a prompt-cache breakpoint after this block (when the request allows caching)."""


class ToolCall(_Block):
    """A tool call the model asks for; the engine runs it and answers with a result."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    """The call's id, echoed by its :class:`ToolResult`."""
    name: str
    """The tool's name."""
    arguments: Any = None
    """The arguments as the model gave them (a JSON object for a valid call)."""


class ToolResult(_Block):
    """What a tool call returned, sent back in the next user turn."""

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    """The :attr:`ToolCall.id` it answers."""
    content: str
    """The tool's output, or the error the model is shown."""
    is_error: bool = False
    """Whether the call failed (the model sees the error and may try again)."""


class ProviderBlock(_Block):
    """A block only its provider reads, kept in ``provider_data`` and replayed as is.

    Server-side tool calls and their results, thinking.
    """

    type: Literal["provider"] = "provider"


Block = Annotated[TextBlock | ToolCall | ToolResult | ProviderBlock, Field(discriminator="type")]
"""One block of a turn's content."""


class Message(BaseModel):
    """One turn of the conversation: text, or blocks (tool calls, tool results...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    """Who speaks."""
    content: str | tuple[Block, ...]
    """What is said."""


TextHook = Callable[[str, int], Awaitable[None]]
"""Called with a piece of a model turn's text and its try (0 the first, n after n retries)."""


class ModelRequest(BaseModel):
    """What the engine asks of a model for one turn (of an attempt, a judge or a planner)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tier: Tier
    """The tier to call: model id, endpoint and key variable."""
    system: str = ""
    """System prompt."""
    messages: list[Message] = Field(min_length=1)
    """The conversation so far; each attempt starts a fresh one."""
    max_output_tokens: int = Field(gt=0)
    """``max_tokens`` of each call."""
    tools: Sequence[Tool] = ()
    """Tools the model may call (the node's allowlist, already applied)."""
    tool_choice: Literal["auto", "none"] = "auto"
    """``"none"``: the model must answer in text (the tool loop's last step)."""
    output_schema: dict[str, Any] | None = None
    """JSON Schema for structured output; ``None`` for free text."""
    purpose: Literal["task", "judge", "plan", "classify"] = "task"
    """Why the call is made (clients may log or trace it)."""
    task_id: str | None = None
    """The task this call serves, for logs and traces."""
    max_tool_steps: int = Field(default=8, gt=0)
    """Most model turns of the engine's tool loop."""
    tool_timeout_s: float = Field(default=60.0, gt=0)
    """Deadline of each tool call."""
    cache: bool = True
    """Whether the client may mark prompt-cache breakpoints (``False``: none, to compare)."""
    batch: bool = False
    """Send the call in a Message Batch (half price, the result when the batch ends), if
    the client can; one that cannot answers it at once, at the usual price."""
    on_text: TextHook | None = Field(default=None, exclude=True, repr=False)
    """Awaited with each piece of the turn's text as it arrives and the try it belongs to
    (0, then 1 after a retry...): a client that can streams the call to report them (a
    batch call reports none). ``None``: nobody wants the text as it comes."""


class ModelResponse(BaseModel):
    """The model's turn: its text, parsed data for structured output, tool calls, usage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    """The turn's text (the JSON text for structured output)."""
    data: Any = None
    """The parsed JSON value when an output schema was requested, else ``None``."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens of this turn (after the tool loop: of every turn, summed)."""
    model: str
    """The model that answered, as the API reported it."""
    response_id: str | None = None
    """The API's id of the response."""
    stop_reason: str | None = None
    """Why the turn ended (``end_turn``, ``tool_use``, ``max_tokens``, ``pause_turn``...)."""
    content: tuple[Block, ...] = ()
    """The turn's blocks, as sent back in the conversation when the loop goes on."""
    retries: tuple[RetryEvent, ...] = ()
    """Transient failures the client retried before this answer."""
    simulated: bool = False
    """True when the answer came from a simulator or test double, not a real model."""
    worker: str | None = None
    """The worker that made the call (``host:pid``), when a relay made it elsewhere."""

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls the model asked for in this turn."""
        return tuple(block for block in self.content if isinstance(block, ToolCall))


@runtime_checkable
class ModelClient(Protocol):
    """Sends a :class:`ModelRequest` to a model and returns the model's next turn.

    One turn: the client never runs tools, it returns the :class:`ToolCall` blocks the
    model asked for. Implementations must wrap every API call in ``async with
    meter.call(...)``, let :class:`~orchestrator.exceptions.BudgetExhausted` propagate, and
    raise :class:`~orchestrator.exceptions.ModelAPIError` for failures their retries could
    not fix.
    """

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """Send the conversation and return the model's turn."""
        ...


def estimate_prompt_tokens(request: ModelRequest) -> int:
    """Return an upper estimate of the request's prompt size in tokens.

    Counts UTF-8 bytes (a token is never shorter than a byte in practice), so the budget's
    worst case is truly a worst case; the real count arrives with the response.
    """
    size = len(request.system.encode()) + 16
    size += sum(_content_bytes(message.content) + 8 for message in request.messages)
    for tool in request.tools:
        size += len(tool.name) + len(tool.description.encode())
        size += len(json.dumps(tool.input_schema).encode())
    if request.output_schema is not None:
        size += len(json.dumps(request.output_schema).encode())
    return size


def _content_bytes(content: str | tuple[Block, ...]) -> int:
    if isinstance(content, str):
        return len(content.encode())
    return sum(len(block.model_dump_json(exclude_none=True).encode()) for block in content)


def errors_seen(client: ModelClient) -> Counter[str]:
    """The client's tally of failed API calls by error type, if it keeps one."""
    seen = getattr(client, "errors_seen", None)
    return Counter(seen) if isinstance(seen, Mapping) else Counter()
