"""What a node's attempts send: the user turn, its cache breakpoint, the output schema.

The engine (:mod:`orchestrator.attempt`) asks; this module words it. An attempt's user
turn is the node's prompt, or after a rejection the prompt with the rejected answer and
why (:func:`~orchestrator.wire.feedback_prompt`). Planned tasks put their inputs first
(:func:`~orchestrator.wire.inputs_prompt`), so nodes that read the same inputs share a
prefix: :func:`shared_input_nodes` finds them, and :func:`attempt_messages` marks a
prompt-cache breakpoint after that prefix when it is long enough for the tier's cache.
A judge call's turn puts what judge calls share first (its criteria and the passages the
answer cites, :func:`~orchestrator.wire.judge_prompt`); :func:`judge_messages` marks a
breakpoint after them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from orchestrator.models.base import Message, ModelRequest, TextBlock, TextHook
from orchestrator.node import Node
from orchestrator.results import Attempt
from orchestrator.routing import RouteRequest
from orchestrator.routing.rules import task_kind
from orchestrator.tiers import Tier
from orchestrator.verifier import JudgeVerdict
from orchestrator.wire import JUDGE_SYSTEM_PROMPT, feedback_prompt, judge_shared_chars

__all__ = [
    "attempt_messages",
    "judge_messages",
    "route_request",
    "schema_of",
    "shared_input_nodes",
    "structured",
]

_PREVIOUS_ANSWER_CHARS = 4000


def shared_input_nodes(nodes: Iterable[Node]) -> frozenset[str]:
    """The planned nodes (default prompts) whose exact inputs another node reads too."""
    planned = [n for n in nodes if n.prompt is None and n.task.depends_on]
    readers = Counter(n.task.depends_on for n in planned)
    return frozenset(n.task.id for n in planned if readers[n.task.depends_on] > 1)


def attempt_messages(
    prompt: str, previous: Attempt | None, previous_text: str, cut: int = 0
) -> list[Message]:
    """The attempt's user turn; with ``cut``, a cache breakpoint after its first ``cut`` chars."""
    text = prompt
    if previous is not None:
        why = previous.error or (previous.verdict.reason if previous.verdict else "rejected")
        answer = previous_text[:_PREVIOUS_ANSWER_CHARS] or "(no answer was produced)"
        text = feedback_prompt(prompt, previous.tier, answer, why)
    if not cut:
        return [Message(role="user", content=text)]
    blocks = [TextBlock(text=text[:cut], cache=True), TextBlock(text=text[cut:])]
    return [Message(role="user", content=blocks)]


def judge_messages(content: str, tier: Tier) -> list[Message]:
    """A judge call's user turn (a :func:`~orchestrator.wire.judge_prompt`) on ``tier``.

    With a breakpoint after the criteria and the cited passages when they are long enough
    for the tier's cache (the engine's estimate: 4 characters a token), so the next judge
    call on the same model that is shown the same passages reads them from the cache.
    """
    shared = judge_shared_chars(content)
    return attempt_messages(
        content, None, "", shared if shared // 4 >= tier.cache_min_tokens else 0
    )


def judge_request(
    node: Node, content: str, tier: Tier, *, cache: bool, batch: bool, on_text: TextHook | None
) -> tuple[ModelRequest, str]:
    """A judge call on ``tier`` and the prefix it caches (empty when too short).

    ``content`` is a :func:`~orchestrator.wire.judge_prompt`: criteria and passages first.
    """
    shared = judge_shared_chars(content)
    cut = shared if shared // 4 >= tier.cache_min_tokens else 0
    request = ModelRequest(
        tier=tier, system=JUDGE_SYSTEM_PROMPT, messages=judge_messages(content, tier),
        max_output_tokens=1024, output_schema=JudgeVerdict.model_json_schema(),
        purpose="judge", on_text=on_text, task_id=node.task.id, cache=cache, batch=batch,
    )  # fmt: skip
    return request, content[:cut]


def route_request(node: Node, prompt: str) -> RouteRequest:
    """What the router sees of the node: needs, instruction, prompt, kind, id."""
    task = node.task
    kind = task_kind(structured=bool(task.output_schema), tools=bool(task.tools))
    return RouteRequest.of(task.needs, task.instruction, prompt=prompt, kind=kind, task_id=task.id)


def structured(node: Node) -> bool:
    """Whether the node's answer is structured data (an output type or schema)."""
    return node.output_type is not None or node.task.output_schema is not None


def schema_of(node: Node) -> dict[str, Any] | None:
    """The JSON Schema the node's answer must follow, if any."""
    if node.output_type is not None:
        return node.output_type.model_json_schema()
    return node.task.output_schema
