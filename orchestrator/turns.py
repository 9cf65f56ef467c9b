"""The tool loop: the engine's side of a conversation with a model.

A :class:`~orchestrator.models.base.ModelClient` answers one turn. When the model asks for
tools, the loop runs them (the node's allowlist only, each under its deadline and in an
``execute_tool`` span), sends the results back, and asks again, until the model answers in
text or the turns run out (the last turn forbids tools: answer now). A long server-side
tool turn (``pause_turn``) is sent back as is for the model to go on.

Because the loop lives here and not in a vendor client, every client (the Anthropic one,
a test double, a batch) gets it the same, and the engine can pause between two turns: a
:class:`ToolGate` decides on the calls of tools that need a person's approval (before they
run, or of their results before the model reads them), and when no decision is at hand the
loop stops there (:class:`~orchestrator.paused.ToolsAwaitApproval`) and is later resumed
from that turn. A :class:`ToolObserver` hears of each turn (a text hook for it) and each
tool call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import anyio

from orchestrator.budget import Meter
from orchestrator.models.base import (
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    TextHook,
    ToolCall,
    ToolResult,
)
from orchestrator.paused import ToolWait
from orchestrator.pricing import Usage
from orchestrator.results import Verdict
from orchestrator.telemetry.tracing import current_telemetry
from orchestrator.tool import ServerTool, Tool

__all__ = ["ToolGate", "ToolObserver", "run_tool_calls", "run_turns"]


class ToolObserver(Protocol):
    """Hears what the tool loop does (the engine reports it as events)."""

    def on_text(self, purpose: str) -> TextHook | None:
        """The text hook of the next turn (``None``: its text is not wanted)."""
        ...

    async def tool_called(self, call_id: str, name: str, arguments: Any) -> None:
        """A tool call is about to run."""
        ...

    async def tool_returned(self, call_id: str, name: str, content: str, is_error: bool) -> None:
        """A tool call returned (``is_error``: it failed, and the model is told why)."""
        ...


class ToolGate(Protocol):
    """Decides on the calls of tools that need a person's approval (one attempt's)."""

    @property
    def resumed(self) -> tuple[ToolWait, Verdict] | None:
        """The paused turn this attempt goes on from, and the decision on it."""
        ...

    def stage(self, name: str) -> Literal["before", "after"] | None:
        """When tool ``name`` needs approval: before it runs, after (of its result), or never."""
        ...

    async def decide(
        self,
        stage: Literal["before", "after"],
        calls: Sequence[ToolCall],
        messages: Sequence[Message],
        results: Sequence[ToolResult],
        steps: int,
    ) -> Verdict:
        """The decision on ``calls`` (one for the turn's calls at ``stage``).

        Raises:
            ToolsAwaitApproval: No decision now: the loop stops at this turn.
        """
        ...


async def run_turns(
    client: ModelClient,
    request: ModelRequest,
    meter: Meter,
    observer: ToolObserver | None = None,
    gate: ToolGate | None = None,
) -> ModelResponse:
    """Converse until the model answers without tools; return that last turn.

    The returned response's ``usage`` sums every turn's. At most
    ``request.max_tool_steps`` turns; the last one is sent with ``tool_choice="none"``.
    With a ``gate`` that resumes a paused turn, ``request.messages`` ends with the model's
    turn that asked for the tools: they run (as decided) before the next model turn.
    """
    tools = {tool.name: tool for tool in request.tools if not isinstance(tool, ServerTool)}
    messages = list(request.messages)
    usage = Usage()
    start = 0
    if gate is not None and gate.resumed is not None:
        start = gate.resumed[0].steps
        calls: Sequence[ToolCall] = _calls_of(messages[-1])
        results = await _turn_tools(
            calls, tools, request, observer=observer, gate=gate, messages=messages,
            steps=start, resumed=gate.resumed,
        )  # fmt: skip
        messages.append(Message(role="user", content=tuple(results)))
    for step in range(start, request.max_tool_steps):
        last = step == request.max_tool_steps - 1
        update: dict[str, Any] = {
            "messages": list(messages),  # a snapshot: later turns must not change it
            "tool_choice": "none" if request.tools and last else request.tool_choice,
        }
        if observer is not None:
            update["on_text"] = observer.on_text(request.purpose)
        turn = request.model_copy(update=update)
        response = await client.complete(turn, meter)
        usage = usage + response.usage
        if response.stop_reason == "pause_turn" and not last:
            messages.append(Message(role="assistant", content=response.content))
            continue
        calls = response.tool_calls
        if response.stop_reason != "tool_use" or not calls or not tools:
            return response.model_copy(update={"usage": usage})
        messages.append(Message(role="assistant", content=response.content))
        results = await _turn_tools(
            calls, tools, request, observer=observer, gate=gate, messages=messages, steps=step + 1
        )
        messages.append(Message(role="user", content=tuple(results)))
    raise AssertionError("unreachable: the last turn forbids tool use")  # pragma: no cover


def _calls_of(message: Message) -> list[ToolCall]:
    return [block for block in message.content if isinstance(block, ToolCall)]


async def _turn_tools(
    calls: Sequence[ToolCall],
    tools: Mapping[str, Tool],
    request: ModelRequest,
    *,
    observer: ToolObserver | None,
    gate: ToolGate | None,
    messages: Sequence[Message],
    steps: int,
    resumed: tuple[ToolWait, Verdict] | None = None,
) -> list[ToolResult]:
    """One turn's tool calls, those that need approval as decided (or the loop stops).

    ``resumed``: the turn waited for a decision, given now (its tools that ran, ran).
    """
    timeout_s = request.tool_timeout_s
    if gate is None:
        return await run_tool_calls(calls, tools, timeout_s, observer)
    wait, decided = resumed if resumed is not None else (None, None)
    done = {r.tool_call_id: r for r in map(ToolResult.model_validate, wait.results)} if wait else {}
    gated = {c.id: gate.stage(c.name) for c in calls if c.name in tools}
    refused: dict[str, str] = {}
    before = [c for c in calls if gated.get(c.id) == "before" and c.id not in done]
    if before:
        verdict = decided if wait is not None and wait.stage == "before" else None
        verdict = verdict or await gate.decide("before", before, messages, (), steps)
        if not verdict.passed:
            refused = {c.id: f"a reviewer refused this call: {verdict.reason}" for c in before}
    todo = [c for c in calls if c.id not in done and c.id not in refused]
    done.update((r.tool_call_id, r) for r in await run_tool_calls(todo, tools, timeout_s, observer))
    done.update(
        (i, ToolResult(tool_call_id=i, content=why, is_error=True)) for i, why in refused.items()
    )
    after = [c for c in calls if gated.get(c.id) == "after"]
    if after:
        verdict = decided if wait is not None and wait.stage == "after" else None
        ran = [done[c.id] for c in calls]
        verdict = verdict or await gate.decide("after", after, messages, ran, steps)
        if not verdict.passed:
            why = f"a reviewer rejected this result: {verdict.reason}"
            done.update(
                (c.id, ToolResult(tool_call_id=c.id, content=why, is_error=True)) for c in after
            )
    return [done[c.id] for c in calls]


async def run_tool_calls(
    calls: Sequence[ToolCall],
    tools: Mapping[str, Tool],
    timeout_s: float,
    observer: ToolObserver | None = None,
) -> list[ToolResult]:
    """Run each call in order, each in its own span; errors become ``is_error`` results."""
    results = []
    for call in calls:
        if observer is not None:
            await observer.tool_called(call.id, call.name, call.arguments)
        with current_telemetry().tool_call(call.name, call.id, call.arguments) as span:
            content, is_error = await _run_tool(tools.get(call.name), call, timeout_s)
            span.result(content, is_error=is_error)
        if observer is not None:
            await observer.tool_returned(call.id, call.name, content, is_error)
        results.append(ToolResult(tool_call_id=call.id, content=content, is_error=is_error))
    return results


async def _run_tool(tool: Tool | None, call: ToolCall, timeout_s: float) -> tuple[str, bool]:
    if tool is None:
        return f"tool {call.name!r} is not available to this task", True
    if not isinstance(call.arguments, dict):
        return "tool arguments must be a JSON object", True
    try:
        with anyio.fail_after(timeout_s):
            return await tool(call.arguments), False
    except TimeoutError:
        return f"tool {call.name!r} timed out after {timeout_s:g}s", True
    except Exception as exc:  # noqa: BLE001  (a tool error goes back to the model)
        return f"{type(exc).__name__}: {exc}", True
