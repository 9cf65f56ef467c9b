"""Test doubles of :class:`~orchestrator.models.base.ModelClient` for unit tests.

``FunctionModel`` answers with a Python function of the request (text, tool calls, or a
whole response); ``TestModel`` answers with fixed text per tier. Both meter their calls like
a real client (so budgets are exercised) and mark their responses ``simulated``. Like any
client they answer one turn: when the function asks for tools, the engine's tool loop runs
them and calls the function again with the results in ``request.messages``. Integration
tests and examples go through the real SDK to the local Messages-API server instead.

Example, a model that looks a word up before answering::

    def model(request: ModelRequest) -> str | ToolCall:
        results = tool_results(request)
        if not results:
            return ToolCall(id="1", name="lookup", arguments={"term": "DAG"})
        return f"A DAG is {results[0].content}"
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

from orchestrator.budget import Meter
from orchestrator.models.base import (
    ModelRequest,
    ModelResponse,
    TextBlock,
    ToolCall,
    ToolResult,
    estimate_prompt_tokens,
)
from orchestrator.pricing import Usage

__all__ = ["Answer", "FunctionModel", "ModelFunction", "TestModel", "tool_results"]

Answer: TypeAlias = "str | ToolCall | Sequence[ToolCall] | ModelResponse"
"""A turn: text, one or more tool calls (the engine runs them), or a whole response."""

ModelFunction = Callable[[ModelRequest], "Answer | Awaitable[Answer]"]
"""A function of the request returning the model's turn."""


class FunctionModel:
    """A model whose answers come from a Python function.

    Args:
        function: Called with each request (each turn); returns text, a
            :class:`~orchestrator.models.base.ToolCall` or a list of them, a
            ``ModelResponse``, or an awaitable of any. Raise an exception to simulate a
            failed call.
    """

    def __init__(self, function: ModelFunction) -> None:
        self.function = function
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """Meter one call, ask the function, and wrap its answer."""
        self.requests.append(request)
        prompt_tokens = estimate_prompt_tokens(request)
        async with meter.call(prompt_tokens, request.max_output_tokens) as ticket:
            answer = self.function(request)
            if inspect.isawaitable(answer):
                answer = await answer
            response = _as_response(answer, request, prompt_tokens)
            ticket.usage = response.usage
            if request.on_text is not None and response.text:  # its text, in one piece
                await request.on_text(response.text, 0)
        return response


class TestModel(FunctionModel):
    """A model that answers with fixed text, optionally per tier.

    Args:
        text: The answer for tiers not listed in ``by_tier``.
        by_tier: Answers by tier name.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, text: str = "ok", *, by_tier: Mapping[str, str] | None = None) -> None:
        answers = dict(by_tier or {})
        super().__init__(lambda request: answers.get(request.tier.name, text))


def tool_results(request: ModelRequest) -> list[ToolResult]:
    """The tool results the last user turn carries (empty before any tool ran)."""
    content = request.messages[-1].content
    return [] if isinstance(content, str) else [b for b in content if isinstance(b, ToolResult)]


def _as_response(answer: Answer, request: ModelRequest, prompt_tokens: int) -> ModelResponse:
    if isinstance(answer, ModelResponse):
        return answer
    if not isinstance(answer, str):
        calls = (answer,) if isinstance(answer, ToolCall) else tuple(answer)
        return ModelResponse(
            text="",
            content=calls,
            usage=Usage(
                input_tokens=min(prompt_tokens, max(1, prompt_tokens // 4)), output_tokens=1
            ),
            model=request.tier.model,
            stop_reason="tool_use",
            simulated=True,
        )
    data: Any = None
    if request.output_schema is not None:
        try:
            data = json.loads(answer)
        except ValueError:
            data = None
    output_tokens = min(request.max_output_tokens, max(1, len(answer) // 4))
    return ModelResponse(
        text=answer,
        data=data,
        usage=Usage(
            input_tokens=min(prompt_tokens, max(1, prompt_tokens // 4)), output_tokens=output_tokens
        ),
        model=request.tier.model,
        stop_reason="end_turn",
        content=(TextBlock(text=answer),),
        simulated=True,
    )
