"""Test doubles of :class:`~orchestrator.models.base.ModelClient` for unit tests.

``FunctionModel`` answers with a Python function of the request; ``TestModel`` answers with
fixed text per tier. Both meter their calls like a real client (so budgets are exercised)
and mark their responses ``simulated``. Integration tests and examples go through the real
SDK to the local Messages-API server instead.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.budget import Meter
from orchestrator.models.base import ModelRequest, ModelResponse, estimate_prompt_tokens
from orchestrator.pricing import Usage

__all__ = ["FunctionModel", "ModelFunction", "TestModel"]

ModelFunction = Callable[[ModelRequest], "str | ModelResponse | Awaitable[str | ModelResponse]"]
"""A function of the request returning the answer's text or a full response."""


class FunctionModel:
    """A model whose answers come from a Python function.

    Args:
        function: Called with each request; returns text, a ``ModelResponse``, or an
            awaitable of either. Raise an exception to simulate a failed call.
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


def _as_response(
    answer: str | ModelResponse, request: ModelRequest, prompt_tokens: int
) -> ModelResponse:
    if isinstance(answer, ModelResponse):
        return answer
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
        simulated=True,
    )
