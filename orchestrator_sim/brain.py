"""The brain: what the simulated models answer (deterministic, documented, not a model).

A :class:`Brain` turns a validated request into content blocks and a stop reason. The
default one, :class:`DefaultBrain`, classifies the request and answers from templates:

* ``judge``: the output schema's title is ``JudgeVerdict``, or the system prompt asks to
  judge or verify; answers a verdict whose accuracy rises with capability (:mod:`.judge`);
* ``classify``: the engine's classifier call (:data:`orchestrator.wire.CLASSIFY_TASK_MARK`);
  answers a label from the task's true difficulty, right with a chance that rises with
  capability (``SimConfig.classifier_accuracy``);
* ``plan``: the output schema's title is ``Plan`` (:mod:`.plans`);
* ``tool_turn``: tools are given (:mod:`.tool_use`);
* ``task``: anything else.

Tasks have a true difficulty (1..3, :func:`~orchestrator_sim.prompts.difficulty`); a model
whose capability is below it answers *flawed* (:mod:`.writer`, :mod:`.schema_fill`), and
the flaw is recorded as ground truth. Feedback about a previous attempt does not help: the
answer depends on the current model's capability only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from orchestrator.wire import (
    CLASSIFY_LABELS_MARK,
    CLASSIFY_SYSTEM_PROMPT,
    CLASSIFY_TASK_MARK,
    parse_revision,
)
from orchestrator_sim.config import SimConfig
from orchestrator_sim.diffs import Anchor, citable, diff_anchors, misplace_one_citation
from orchestrator_sim.judge import FlawRegistry, judge_answer
from orchestrator_sim.plans import BROKEN_KINDS, catalogue_tools, plan_text
from orchestrator_sim.prompts import ToolResult as SeenResult
from orchestrator_sim.prompts import (
    citation_ids,
    difficulty,
    input_task_ids,
    inputs_text,
    instruction,
    judge_parts,
    key_terms,
    last_user_text,
    normalise,
    required_sections,
    tool_results,
)
from orchestrator_sim.schema_fill import (
    FillContext,
    empty_one_field,
    fill,
    resolve,
    twist_one_field,
)
from orchestrator_sim.seeding import digest, seeded_random, short_id, unit
from orchestrator_sim.tool_use import (
    ToolCall,
    evidence_from,
    findings_from,
    first_call,
    follow_up,
)
from orchestrator_sim.writer import Brief, Evidence, Flaw, write_answer

__all__ = ["Brain", "BrainReply", "BrainRequest", "DefaultBrain", "Kind"]

Kind = Literal["task", "tool_turn", "judge", "plan", "classify"]
_JUDGE_SYSTEM = re.compile(r"\b(judge|verif(y|ier)|grader)\b", re.IGNORECASE)
_GOAL = re.compile(r"^Goal:\s*(.+)$", re.MULTILINE)
_CLASSIFY_TASK = re.compile(
    re.escape(CLASSIFY_TASK_MARK) + r"\s*<task>\n?(.*?)\n?</task>", re.DOTALL
)
_CLASSIFY_LABELS = re.compile(re.escape(CLASSIFY_LABELS_MARK) + r"\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class BrainRequest:
    """A validated Messages request, as the brain sees it.

    Attributes:
        model: Model id.
        capability: The model's capability, 1..3.
        system: System prompt text.
        messages: The conversation (``role`` and ``content`` per turn).
        tools: Tool definitions.
        tool_choice: The ``tool_choice`` parameter, if given.
        output_schema: The structured-output JSON schema, if any.
    """

    model: str
    capability: int
    system: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BrainReply:
    """The brain's answer and its ground truth.

    Attributes:
        content: Response content blocks (``text`` and ``tool_use``).
        stop_reason: ``end_turn`` or ``tool_use`` (``max_tokens`` is applied later).
        kind: How the request was classified.
        task_hash: Short hash of the instruction (stable across retries and tiers).
        difficulty: The task's true difficulty (tasks and tool turns).
        flaw: The planted flaw, if the answer is flawed.
        notes: Extra ground truth for the request log (judge verdicts, broken plans).
    """

    content: list[dict[str, Any]]
    stop_reason: str
    kind: Kind
    task_hash: str
    difficulty: int | None = None
    flaw: Flaw | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Brain(Protocol):
    """Anything that answers simulated requests."""

    def respond(self, request: BrainRequest) -> BrainReply:
        """Return the answer to ``request`` (called on the event loop: must not block)."""
        ...


def _property_names(schema: Mapping[str, Any] | None) -> set[str] | None:
    """Top-level property names of an object schema; ``None`` if there is no schema."""
    if schema is None:
        return None
    properties = resolve(schema, schema).get("properties")
    return set(properties) if isinstance(properties, Mapping) else set()


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


class DefaultBrain:
    """The documented default brain (see docs/sim.md, "The brain").

    Args:
        config: Server configuration (seed, flaw and judge settings, broken plans).
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.registry = FlawRegistry()
        self._plans_served = 0

    @staticmethod
    def classify(request: BrainRequest) -> Kind:
        """Return the kind of request (classify > judge > plan > tool_turn > task)."""
        if request.system == CLASSIFY_SYSTEM_PROMPT:
            return "classify"
        title = (request.output_schema or {}).get("title")
        if title == "JudgeVerdict" or _JUDGE_SYSTEM.search(request.system):
            return "judge"
        if title == "Plan":
            return "plan"
        if request.tools:
            return "tool_turn"
        return "task"

    def respond(self, request: BrainRequest) -> BrainReply:
        """Answer ``request`` deterministically (see the module docstring)."""
        kind = self.classify(request)
        user = last_user_text(request.messages)
        task_hash = digest("task", normalise(instruction(user)))[:16]
        if kind == "classify":
            return self._classify(request, user)
        if kind == "judge":
            return self._judge(request, user, task_hash)
        if kind == "plan":
            return self._plan(request, user, task_hash)
        if kind == "tool_turn":
            return self._tool_turn(request, user, task_hash)
        return self._answer(request, user, task_hash, kind, [])

    # -- tasks ------------------------------------------------------------------------

    def _answer(
        self,
        request: BrainRequest,
        user: str,
        task_hash: str,
        kind: Kind,
        evidence: Sequence[Evidence],
        *,
        results: Sequence[SeenResult] = (),
    ) -> BrainReply:
        core = instruction(user)
        level = difficulty(core, self.config.seed)
        flawed = request.capability < level
        subtle = (
            flawed and unit(self.config.seed, "subtle", task_hash) < self.config.subtle_flaw_rate
        )
        rng = seeded_random(self.config.seed, "answer", request.model, normalise(user))
        terms = key_terms(core)
        if request.output_schema is not None:
            anchors = diff_anchors(user)
            text, flaw = self._structured(
                request.output_schema, terms, rng, flawed, subtle, anchors=anchors
            )
        else:
            cited = [*evidence, *self._input_citations(user, evidence)][:3]
            brief = Brief(
                terms, required_sections(core), input_task_ids(user), cited, flawed, subtle
            )
            text, flaw = write_answer(brief, rng)
            if findings := findings_from(results):  # what its tools answered, reported
                text += "\n\nFrom the tools: " + "; ".join(findings) + "."
        if flaw is not None:
            self.registry.record(text, flaw)
        return BrainReply([_text_block(text)], "end_turn", kind, task_hash, level, flaw)

    @staticmethod
    def _input_citations(user: str, evidence: Sequence[Evidence]) -> list[Evidence]:
        known = {item.id for item in evidence}
        found = citation_ids(instruction(user)) + citation_ids(inputs_text(user))
        return [Evidence(i) for i in dict.fromkeys(found) if i not in known]

    @staticmethod
    def _structured(
        schema: Mapping[str, Any],
        terms: list[str],
        rng: Any,
        flawed: bool,
        subtle: bool,
        *,
        anchors: Sequence[Anchor] = (),
    ) -> tuple[str, Flaw | None]:
        cite = citable(anchors)
        if cite:  # answers about a diff cite its lines (see .diffs)
            start = rng.randrange(len(cite))
            cite = cite[start:] + cite[:start]
        instance = fill(schema, FillContext(schema, terms, rng, cite))
        flaw: Flaw | None = None
        if flawed and isinstance(instance, dict):
            detail = twist_one_field(instance, schema, terms) if subtle else None
            if detail is not None:
                flaw = Flaw("contradiction", detail, subtle=True)
            elif cite and (detail := misplace_one_citation(instance, anchors, rng)):
                flaw = Flaw("wrong_location", detail)
            else:
                detail = empty_one_field(instance, schema, rng)
                flaw = Flaw("empty_field", detail) if detail is not None else None
        return json.dumps(instance), flaw

    # -- tool use ---------------------------------------------------------------------

    def _tool_turn(self, request: BrainRequest, user: str, task_hash: str) -> BrainReply:
        results = tool_results(request.messages)
        call = self._next_call(request, user, results)
        if call is None:
            evidence = evidence_from(results)
            return self._answer(request, user, task_hash, "tool_turn", evidence, results=results)
        made = sum(1 for _ in self._calls_made(request.messages))
        tool_id = short_id("toolu_", self.config.seed, task_hash, request.model, made, len(results))
        terms = key_terms(instruction(user), 3)
        about = ", ".join(terms) if terms else "the task"
        content = [
            _text_block(f"I'll use {call.name} to look into {about}."),
            {"type": "tool_use", "id": tool_id, "name": call.name, "input": call.input},
        ]
        level = difficulty(instruction(user), self.config.seed)
        return BrainReply(content, "tool_use", "tool_turn", task_hash, level)

    def _next_call(
        self, request: BrainRequest, user: str, results: Sequence[Any]
    ) -> ToolCall | None:
        choice = dict(request.tool_choice or {"type": "auto"})
        if choice.get("type") == "none":
            return None
        ctx = FillContext({}, key_terms(instruction(user)), seeded_random(self.config.seed, user))
        forced = choice.get("type") in {"any", "tool"}
        made = sum(1 for _ in self._calls_made(request.messages))
        if not forced and made >= self.config.max_tool_calls:
            return None
        text = instruction(user)
        if made == 0 or (forced and choice.get("type") == "tool"):
            return first_call(request.tools, ctx, choice.get("name"), text)
        follow = follow_up(request.tools, results, ctx, text)
        if follow is None and forced:
            return first_call(request.tools, ctx, None, text)
        return follow

    @staticmethod
    def _calls_made(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [
            block
            for message in messages
            if message["role"] == "assistant" and not isinstance(message["content"], str)
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]

    # -- judge and plan ---------------------------------------------------------------

    def _judge(self, request: BrainRequest, user: str, task_hash: str) -> BrainReply:
        task, _criteria, answer = judge_parts(user)
        verdict = judge_answer(
            task,
            answer,
            capability=request.capability,
            model=request.model,
            registry=self.registry,
            config=self.config,
        )
        data: Any = {}
        schema = request.output_schema
        if schema is not None:
            data = fill(schema, FillContext(schema, key_terms(task), seeded_random(task_hash)))
        if not isinstance(data, dict):
            data = {}
        fields = {"passed": verdict.passed, "reason": verdict.reason, "score": verdict.score}
        allowed = _property_names(schema)
        data.update({k: v for k, v in fields.items() if allowed is None or k in allowed})
        notes = {
            "verdict": verdict.passed,
            "answer_flaw": verdict.flaw.kind if verdict.flaw else None,
            "caught": verdict.flaw is not None and not verdict.passed,
        }
        reply = [_text_block(json.dumps(data))]
        return BrainReply(reply, "end_turn", "judge", task_hash, notes=notes)

    def _classify(self, request: BrainRequest, user: str) -> BrainReply:
        """A label for the task: its true difficulty on the labels' scale, or a wrong one.

        Difficulty 1 (what a capability-1 model answers right) is the first label, 3 the
        last, 2 rounds up (with two labels, anything a small model gets wrong is "hard").
        """
        task = _CLASSIFY_TASK.search(user)
        labels_line = _CLASSIFY_LABELS.search(user)
        core = instruction(task.group(1) if task else user)
        labels = [x.strip() for x in (labels_line.group(1) if labels_line else "").split(",")]
        labels = [x for x in labels if x] or ["easy", "hard"]
        level = difficulty(core, self.config.seed)
        true = min(len(labels) - 1, -(-(level - 1) * (len(labels) - 1) // 2))
        task_hash = digest("task", normalise(core))[:16]
        roll = unit(self.config.seed, "classify", request.model, task_hash)
        if roll < self.config.classifier_accuracy[request.capability - 1]:
            chosen = true
        else:  # one of the other labels, by a second fixed draw
            others = [i for i in range(len(labels)) if i != true]
            pick = unit(self.config.seed, "classify-wrong", request.model, task_hash)
            chosen = others[int(pick * len(others))]
        notes = {"label": labels[chosen], "true_label": labels[true]}
        return BrainReply(
            [_text_block(labels[chosen])], "end_turn", "classify", task_hash, level, notes=notes
        )

    def _plan(self, request: BrainRequest, user: str, task_hash: str) -> BrainReply:
        broken = None
        if self._plans_served < self.config.broken_plans:
            broken = BROKEN_KINDS[self._plans_served % len(BROKEN_KINDS)]
        self._plans_served += 1
        match = _GOAL.search(user)
        goal = match.group(1).strip() if match else instruction(user)
        schema = request.output_schema or {}
        rng = seeded_random(self.config.seed, "plan", task_hash)
        ctx = FillContext(schema, key_terms(goal), rng)
        revision = parse_revision(user)  # the engine's brief: revise, keeping what succeeded
        tools = catalogue_tools(request.system)
        text = plan_text(schema, goal, ctx, broken, tools, revision=revision)
        notes = {"broken_plan": broken}
        return BrainReply([_text_block(text)], "end_turn", "plan", task_hash, notes=notes)
