"""The :class:`Verifier` protocol, and what a verifier sees and may ask.

A verifier gets an attempt's output and a :class:`VerificationContext` (the task, the raw
text, the tier, a :class:`JudgeFunction` to ask a judge model a :class:`JudgeRequest`) and returns a
:class:`~orchestrator.results.Verdict`. The built-in verifiers are in
:mod:`orchestrator.verify` and :mod:`orchestrator.citations`; write your own by
implementing the protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from orchestrator.plan import Task
from orchestrator.results import Verdict

__all__ = ["JudgeFunction", "JudgeRequest", "JudgeVerdict", "VerificationContext", "Verifier"]


class JudgeVerdict(BaseModel):
    """The structured answer a judge model gives."""

    model_config = ConfigDict(extra="forbid", title="JudgeVerdict")

    passed: bool
    """Whether the answer meets the criteria."""
    reason: str
    """The flaw found, or why it passes."""
    score: float
    """Confidence that the answer is correct, 0 to 1."""


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """What a verifier asks a judge model, through :attr:`VerificationContext.judge`.

    The judge is shown the prompt the author was given (the instruction and the inputs
    from earlier tasks), the criteria and the answer, then any evidence.

    Attributes:
        criteria: What the judge checks, in words.
        answer: The answer's text.
        tier: The judge's tier; ``None``: one tier above the author's (capped at the
            strongest), since a judge weaker than the author misses what it missed.
        inputs: Show the judge the inputs the author was given (the default). ``False``
            shows the instruction alone: cheaper when the inputs are long, but blind to
            answers unfaithful to them.
        evidence: Shown after the answer (the text of the passages it cites, say).
    """

    criteria: str
    answer: str
    tier: str | None = None
    inputs: bool = True
    evidence: str = ""


class JudgeFunction(Protocol):
    """Asks a judge model about an answer; provided by the engine in the context."""

    def __call__(self, request: JudgeRequest, /) -> Awaitable[JudgeVerdict]:
        """Return the judge's verdict (its cost is charged to the attempt)."""
        ...


@dataclass(frozen=True, slots=True)
class VerificationContext:
    """What a verifier may look at besides the output.

    Attributes:
        task: The task being verified.
        text: The raw text of the answer.
        tier: The name of the tier that produced it.
        judge: Asks a judge model (costs are charged to the attempt).
        prompt: The prompt the author was given: the instruction and the inputs from
            earlier tasks (empty when the context was not built by the engine).
    """

    task: Task
    text: str
    tier: str
    judge: JudgeFunction
    prompt: str = ""


@runtime_checkable
class Verifier(Protocol):
    """Checks an attempt's output and returns a verdict."""

    @property
    def name(self) -> str:
        """Short name shown in verdicts, logs and traces."""
        ...

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Judge ``output`` (already parsed into the task's type, when it has one)."""
        ...
