"""Verification: is an attempt's output good enough to hand to the dependents?

Cheap tiers fail silently: a confident, wrong answer looks like any other. Every attempt's
output runs through the node's verifiers in order; the first failed :class:`Verdict` rejects
it, and its reason is given to the next attempt, one tier up.

Built in: :class:`SchemaVerifier` (output matches the task's schema or pydantic type),
:class:`NonEmpty` (not empty, not a refusal), :class:`RequiredSections` (Markdown headings),
:class:`Predicate` (any Python check) and :class:`LLMJudge` (another model judges, by default
one tier up). Write your own by implementing the :class:`Verifier` protocol (in
:mod:`orchestrator.verifier`, with the context a verifier sees; re-exported here).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from orchestrator.citations import Citations, PassageLookup, cited_ids
from orchestrator.exceptions import UserError
from orchestrator.plan import (
    CitationsSpec,
    JudgeSpec,
    NonEmptySpec,
    RequiredSectionsSpec,
    SchemaSpec,
    Task,
)
from orchestrator.results import Verdict
from orchestrator.verifier import (
    JudgeFunction,
    JudgeRequest,
    JudgeVerdict,
    VerificationContext,
    Verifier,
)

__all__ = [
    "JudgeFunction",
    "JudgeRequest",
    "JudgeVerdict",
    "LLMJudge",
    "NonEmpty",
    "Predicate",
    "RequiredSections",
    "SchemaVerifier",
    "SelfCheck",
    "VerificationContext",
    "Verifier",
    "verifiers_from_specs",
]


_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|i apologi[sz]e|i can(?:no|')t|i can not|i won'?t|"
    r"i am unable|i'?m unable|i am not able|as an ai\b)",
    re.IGNORECASE,
)


class NonEmpty:
    """Rejects empty output and refusals ("I'm sorry, I can't...")."""

    name = "non_empty"

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass unless the output is empty or opens with a refusal."""
        if output is None or (isinstance(output, str | list | dict) and not output):
            return Verdict(passed=False, reason="the answer is empty", verifier=self.name)
        text = context.text.strip() if isinstance(output, str) else ""
        if isinstance(output, str) and not text:
            return Verdict(passed=False, reason="the answer is only whitespace", verifier=self.name)
        if _REFUSAL.match(text[:200]):
            return Verdict(
                passed=False,
                reason="the answer is a refusal; do the task as asked",
                verifier=self.name,
            )
        return Verdict(passed=True, verifier=self.name)


class SchemaVerifier:
    """Checks structured output against a pydantic type or a JSON Schema.

    Args:
        output_type: A pydantic model the output must validate into.
        json_schema: A JSON Schema (used when there is no ``output_type``).
    """

    name = "schema"

    def __init__(
        self,
        output_type: type[BaseModel] | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> None:
        if output_type is None and json_schema is None:
            raise ValueError("SchemaVerifier needs an output_type or a json_schema")
        self.output_type = output_type
        self.json_schema = json_schema

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass if the output validates; the reason lists what does not."""
        if output is None:
            return Verdict(passed=False, reason="the answer is not valid JSON", verifier=self.name)
        if self.output_type is not None:
            if isinstance(output, self.output_type):
                return Verdict(passed=True, verifier=self.name)
            try:
                self.output_type.model_validate(output)
            except ValidationError as exc:
                return Verdict(passed=False, reason=_pydantic_reason(exc), verifier=self.name)
            return Verdict(passed=True, verifier=self.name)
        assert self.json_schema is not None
        errors = sorted(
            jsonschema.validators.validator_for(self.json_schema)(self.json_schema).iter_errors(
                output
            ),
            key=lambda err: list(err.absolute_path),
        )
        if errors:
            listed = "; ".join(
                f"{_json_path(err.absolute_path)}: {err.message}" for err in errors[:5]
            )
            return Verdict(
                passed=False,
                reason=f"output does not match the schema: {listed}",
                verifier=self.name,
            )
        return Verdict(passed=True, verifier=self.name)


def _pydantic_reason(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '(whole)'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:5]
    ]
    return "output does not match the schema: " + "; ".join(problems)


def _json_path(path: Sequence[object]) -> str:
    return ".".join(str(part) for part in path) or "(whole)"


class RequiredSections:
    """Checks that Markdown output has a heading for every named section.

    Args:
        sections: Section titles; matched case-insensitively against ``#`` headings.
    """

    name = "required_sections"

    def __init__(self, sections: Sequence[str]) -> None:
        self.sections = list(sections)

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass if every section has a heading; the reason names the missing ones."""
        headings = {
            match.group(1).strip().lower()
            for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", context.text, re.MULTILINE)
        }
        missing = [s for s in self.sections if s.strip().lower() not in headings]
        if missing:
            return Verdict(
                passed=False,
                reason=f"missing required section(s): {', '.join(missing)}",
                verifier=self.name,
            )
        return Verdict(passed=True, verifier=self.name)


PredicateResult = bool | str | Verdict | None
"""A predicate returns True/None (pass), False (fail), a reason string (fail), or a Verdict."""


class Predicate:
    """Any Python check of the output.

    Args:
        check: Called with the output (sync or async). Return ``True`` or ``None`` to pass,
            ``False`` to fail with ``reason``, a string to fail with that string as the
            reason, or a full :class:`Verdict`.
        reason: The reason given when ``check`` returns ``False``.
        name: Shown in verdicts; defaults to the function's name.
    """

    def __init__(
        self,
        check: Callable[[Any], PredicateResult | Awaitable[PredicateResult]],
        reason: str = "the output failed a check",
        *,
        name: str | None = None,
    ) -> None:
        self.check = check
        self.reason = reason
        self.name = name or getattr(check, "__name__", "predicate")

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Run the check and turn its result into a verdict."""
        result = self.check(output)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Verdict):
            return result
        if result is True or result is None:
            return Verdict(passed=True, verifier=self.name)
        reason = result if isinstance(result, str) else self.reason
        return Verdict(passed=False, reason=reason, verifier=self.name)


class LLMJudge:
    """Another model judges the output against criteria.

    Args:
        criteria: What the judge checks, in words.
        tier: The judge's tier; ``None`` runs it one tier above the attempt's (capped at
            the strongest): a judge weaker than the author misses what the author missed.
        min_score: A passing verdict with a score below this fails.
        inputs: Show the judge the inputs the author was given (the default), so it can
            catch answers unfaithful to them. ``False`` shows the instruction alone: the
            judge then reads a fraction of the tokens when the inputs are long, and
            can only judge the answer on its face.
        passages: A corpus: the judge is also shown the text of the passages the answer
            cites (``[path#n]``, at most ``MAX_CITED_PASSAGES``), so it can check each claim
            against its source rather than take the citation on trust. The engine passes
            its own (``Engine(passages=...)``) to judges built from a plan's specs.
    """

    name = "llm_judge"

    MAX_CITED_PASSAGES = 30
    """Most cited passages shown to the judge (the first ones cited)."""

    def __init__(
        self,
        criteria: str,
        *,
        tier: str | None = None,
        min_score: float = 0.0,
        inputs: bool = True,
        passages: PassageLookup | None = None,
    ) -> None:
        self.criteria = criteria
        self.tier = tier
        self.min_score = min_score
        self.inputs = inputs
        self.passages = passages

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Ask the judge; fail if it rejects or scores below ``min_score``."""
        tier = self._judge_tier(context)
        request = JudgeRequest(
            criteria=self.criteria,
            answer=context.text,
            tier=tier,
            inputs=self.inputs,
            evidence=self._cited_passages(context.text),
        )
        verdict = await context.judge(request)
        passed = verdict.passed and verdict.score >= self.min_score
        return Verdict(
            passed=passed, reason=verdict.reason, score=verdict.score, verifier=self.name
        )

    def _judge_tier(self, context: VerificationContext) -> str | None:
        return self.tier

    def _cited_passages(self, text: str) -> str:
        if self.passages is None:
            return ""
        shown = []
        for passage_id in cited_ids(text)[: self.MAX_CITED_PASSAGES]:
            body = self.passages.passage_text(passage_id)
            if body is not None:  # a made-up id is the citations check's to reject
                shown.append(f"<passage id={passage_id!r}>\n{body}\n</passage>")
        return "\n".join(shown)


class SelfCheck(LLMJudge):
    """The author's own tier judges the answer (AutoMix-style self-verification).

    Cheaper than :class:`LLMJudge` one tier up, and more lenient: a model tends to accept
    its own mistakes (the routing benchmark assumes a quarter of wrong answers pass, as
    against a tenth for a judge one tier up; see docs/benchmarks.md). Use it where a
    wrong answer is cheap to catch later, and a free check (schema, predicate, citations)
    where one exists.

    Args:
        criteria: What the check looks for, in words.
        min_score: A passing verdict with a score below this fails.
        inputs: Show the inputs the author was given (see :class:`LLMJudge`).
        passages: Show the passages the answer cites (see :class:`LLMJudge`).
    """

    name = "self_check"

    def __init__(
        self,
        criteria: str,
        *,
        min_score: float = 0.0,
        inputs: bool = True,
        passages: PassageLookup | None = None,
    ) -> None:
        super().__init__(criteria, min_score=min_score, inputs=inputs, passages=passages)

    def _judge_tier(self, context: VerificationContext) -> str | None:
        return context.tier


def verifiers_from_specs(
    task: Task,
    output_type: type[BaseModel] | None = None,
    *,
    passages: PassageLookup | None = None,
) -> list[Verifier]:
    """Build the verifier chain of a task: schema check first, then its specs in order.

    A task with an output schema (or ``output_type``) is always schema-checked first; every
    task without explicit specs gets :class:`NonEmpty`.

    Raises:
        UserError: If the task asks for citation checks and no ``passages`` are given.
    """
    chain: list[Verifier] = []
    if output_type is not None or task.output_schema is not None:
        chain.append(SchemaVerifier(output_type, task.output_schema))
    specs = task.verify or [NonEmptySpec()]
    for spec in specs:
        match spec:
            case SchemaSpec():
                continue  # already first in the chain
            case NonEmptySpec():
                chain.append(NonEmpty())
            case RequiredSectionsSpec(sections=sections):
                chain.append(RequiredSections(sections))
            case JudgeSpec(criteria=criteria, tier=tier, inputs=inputs):
                chain.append(LLMJudge(criteria, tier=tier, inputs=inputs, passages=passages))
            case CitationsSpec(min_citations=least):
                if passages is None:
                    raise UserError(
                        f"task {task.id!r} asks for citation checks, but the engine has no "
                        "corpus to check them against: pass Engine(passages=corpus)"
                    )
                chain.append(Citations(passages, min_citations=least))
    return chain
