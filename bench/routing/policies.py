"""The cost model and every routing policy, computed directly from the draws.

Prices come from the default ladder (``orchestrator.tiers.default_ladder``, priced with
``Tier.cost``); latencies from the simulator's default models (``ttft_s + output /
tokens_per_s``). A call's tokens:

* task attempt: the node's input and output tokens; an escalated attempt also carries the
  previous answer (the engine quotes at most 4,000 characters, about 1,000 tokens) and a
  short feedback line (``ESCALATION_OVERHEAD`` tokens);
* judge or self-check call: the task and the answer in (input + output + ``JUDGE_PROMPT``
  tokens), ``JUDGE_OUTPUT`` tokens out.

``ours`` here is a model of the engine's behaviour; ``through_engine.py`` runs the same
draws through the real ``Engine`` and ``run.py`` checks that the two agree node by node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from draws import TIERS, NodeDraw

from orchestrator.pricing import Usage
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator_sim.config import default_models

ESCALATION_OVERHEAD = 60
PREVIOUS_ANSWER_CAP = 1000
JUDGE_PROMPT = 200
JUDGE_OUTPUT = 100
TOP = len(TIERS) - 1


@dataclass(frozen=True, slots=True)
class VerifierRates:
    """A verifier's error rates and what running it costs."""

    name: str
    false_accept: float
    false_reject: float
    judge: str | None
    """``None``: free (no model call); ``"up"``: a judge one tier above the author (the
    engine's ``LLMJudge`` default); ``"self"``: the author's own tier checks its answer."""

    def accepts(self, correct: bool, u: float) -> bool:
        """The verdict on an answer, given its truth and the pre-drawn noise ``u``."""
        return u >= self.false_reject if correct else u < self.false_accept


VERIFIERS = {
    "schema": VerifierRates("schema", 0.02, 0.01, None),
    "judge": VerifierRates("judge", 0.10, 0.10, "up"),
    "self": VerifierRates("self", 0.25, 0.15, "self"),
}
"""The swept verifiers (issue 7): schema check, LLM judge one tier up, self-check."""

SELF_CHECK = VERIFIERS["self"]

JUDGE_ANSWER_ONLY = VerifierRates("judge, answer only", 0.10, 0.10, "up")
"""Sensitivity: the LLM judge reading the instruction and the answer, not the task's inputs."""
INSTRUCTION_TOKENS = 300


@dataclass(frozen=True, slots=True)
class Call:
    """One model call: where, what it cost, how long it took."""

    tier: int
    kind: str
    input_tokens: int
    output_tokens: int
    cost: float
    latency: float


@dataclass(slots=True)
class NodeRun:
    """What a policy did with one node."""

    cost: float = 0.0
    latency: float = 0.0
    """Seconds spent on the node's calls, one after another."""
    attempts: list[int] = field(default_factory=list)
    """Author tier of each attempt, in order."""
    wasted: float = 0.0
    """Spend on attempts whose answer was not accepted (the engine's ``wasted_cost_usd``)."""
    delivered: bool = False
    """Whether an answer was handed on as the node's result."""
    correct: bool = False
    """Whether that answer is truly correct."""

    def add(self, call: Call) -> float:
        """Account for ``call``; returns its cost."""
        self.cost += call.cost
        self.latency += call.latency
        return call.cost


class CostModel:
    """Prices and latencies of calls on the default ladder."""

    def __init__(self, ladder: TierLadder | None = None) -> None:
        self.ladder = ladder or default_ladder()
        models = default_models()
        self.speed = [
            (models[tier.model].ttft_s, models[tier.model].tokens_per_s)
            for tier in self.ladder.tiers
        ]

    def call(self, tier: int, kind: str, input_tokens: int, output_tokens: int) -> Call:
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        ttft, speed = self.speed[tier]
        cost = float(self.ladder[tier].cost(usage))  # the cost model's sums are floats
        return Call(tier, kind, input_tokens, output_tokens, cost, ttft + output_tokens / speed)

    def task(self, tier: int, node: NodeDraw, escalated: bool) -> Call:
        extra = 0
        if escalated:
            extra = min(node.output_tokens, PREVIOUS_ANSWER_CAP) + ESCALATION_OVERHEAD
        return self.call(tier, "task", node.input_tokens + extra, node.output_tokens)

    def judge(self, tier: int, node: NodeDraw, answer_only: bool = False) -> Call:
        read = INSTRUCTION_TOKENS if answer_only else node.input_tokens
        tokens = read + node.output_tokens + JUDGE_PROMPT
        return self.call(tier, "judge", tokens, JUDGE_OUTPUT)


Policy = Callable[[CostModel, NodeDraw, VerifierRates], NodeRun]
"""A comparison policy: what it does with one node, given the swept verifier."""


ORACLE_VERIFIED = "oracle-verified"
"""The name of :func:`oracle_verified` in reports."""


def judge_tier(verifier: VerifierRates, author: int) -> int | None:
    """The tier that judges ``author``'s answer (``None``: no model call)."""
    if verifier.judge is None:
        return None
    return author if verifier.judge == "self" else min(author + 1, TOP)


def _attempt(
    run: NodeRun, model: CostModel, node: NodeDraw, tier: int, verifier: VerifierRates | None
) -> bool:
    """One attempt on ``tier``, verified by ``verifier`` (``None``: accepted unchecked)."""
    spent = run.add(model.task(tier, node, escalated=bool(run.attempts)))
    run.attempts.append(tier)
    accepted = True
    if verifier is not None:
        judge = judge_tier(verifier, tier)
        if judge is not None:
            spent += run.add(model.judge(judge, node, verifier is JUDGE_ANSWER_ONLY))
        accepted = verifier.accepts(node.passes[tier], node.verdict_u[tier])
    if accepted:
        run.delivered, run.correct = True, node.passes[tier]
    else:
        run.wasted += spent
    return accepted


def router_start(node: NodeDraw, sigma: float) -> int:
    """The tier ``CapabilityRouter`` starts on, given the planner's noisy ``needs``.

    The planner's ``needs.reasoning`` is the rounded difficulty estimate plus one, clipped
    to 1..3; Haiku covers 1, Sonnet 2, Opus 3, so the start index is the clipped estimate.
    """
    return needs_level(node, sigma) - 1


def needs_level(node: NodeDraw, sigma: float) -> int:
    """``needs.reasoning`` the planner gives the node (1..3)."""
    return min(3, max(1, round(node.difficulty_estimate(sigma)) + 1))


def ours(
    model: CostModel,
    node: NodeDraw,
    verifier: VerifierRates,
    sigma: float,
    max_attempts: int | None = None,
) -> NodeRun:
    """Route by needs, verify every attempt, escalate one tier per rejection, give up at top
    (or after ``max_attempts``, the engine's ``RunConfig.max_attempts``)."""
    run = NodeRun()
    tiers = range(router_start(node, sigma), TOP + 1)
    for tier in list(tiers)[:max_attempts]:
        if _attempt(run, model, node, tier, verifier):
            break
    return run


def ours_skip_sonnet(
    model: CostModel, node: NodeDraw, verifier: VerifierRates, sigma: float
) -> NodeRun:
    """Proposal (not in the engine): as ``ours``, but a rejection escalates straight to Opus."""
    run = NodeRun()
    tier = router_start(node, sigma)
    if not _attempt(run, model, node, tier, verifier) and tier < TOP:
        _attempt(run, model, node, TOP, verifier)
    return run


def always(tier: int) -> Policy:
    """One attempt on ``tier``, its answer handed on unchecked."""

    def policy(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
        run = NodeRun()
        _attempt(run, model, node, tier, None)
        return run

    return policy


def frugal_cascade(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
    """FrugalGPT: Haiku, then Sonnet, then Opus, a scorer gating each step; the last answers.

    FrugalGPT's scorer is a small fine-tuned model, so it costs nothing here; it has the
    swept verifier's error rates. The top tier's answer is returned as is.
    """
    run = NodeRun()
    scorer = VerifierRates(verifier.name, verifier.false_accept, verifier.false_reject, None)
    for tier in range(TOP):
        if _attempt(run, model, node, tier, scorer):
            return run
    _attempt(run, model, node, TOP, None)
    return run


def routellm(threshold: float, sigma: float) -> Policy:
    """RouteLLM-style: one call, Opus if the difficulty estimate >= threshold, else Haiku."""

    def policy(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
        run = NodeRun()
        tier = TOP if node.difficulty_estimate(sigma) >= threshold else 0
        _attempt(run, model, node, tier, None)
        return run

    return policy


def automix(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
    """AutoMix-style: Haiku answers and checks itself; if it doubts, Opus answers unchecked."""
    run = NodeRun()
    if not _attempt(run, model, node, 0, SELF_CHECK):
        _attempt(run, model, node, TOP, None)
    return run


def oracle(hopeless: str) -> Policy:
    """One call on the cheapest tier that truly passes; nodes no tier solves cost
    nothing (``free``), one Haiku attempt (``haiku``) or one Opus attempt (``opus``)."""

    def policy(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
        run = NodeRun()
        tier = node.cheapest_pass
        if tier <= TOP:
            _attempt(run, model, node, tier, None)
            return run
        if hopeless != "free":
            give_up = 0 if hopeless == "haiku" else TOP
            run.wasted = run.add(model.task(give_up, node, False))
            run.attempts.append(give_up)  # so avoidable waste sees the top-tier attempt
        return run

    return policy


def oracle_verified(model: CostModel, node: NodeDraw, verifier: VerifierRates) -> NodeRun:
    """The one-Opus-attempt oracle that also checks, once, the answer it hands on.

    It knows each node's outcome, so it makes the same attempt as ``oracle("opus")``, but it
    pays for one call of the swept verifier on that attempt (none for a free check), with
    no verifier error. No policy that verifies every answer with that verifier can pay
    less: the floor the cost target can be measured against when verification is paid.
    """
    run = NodeRun()
    tier = min(node.cheapest_pass, TOP)
    spent = run.add(model.task(tier, node, escalated=False))
    run.attempts.append(tier)
    judge = judge_tier(verifier, tier)
    if judge is not None:
        spent += run.add(model.judge(judge, node, verifier is JUDGE_ANSWER_ONLY))
    if node.cheapest_pass <= TOP:
        run.delivered = run.correct = True
    else:
        run.wasted = spent
    return run


def baselines(sigma: float, threshold: float) -> dict[str, Callable[..., NodeRun]]:
    """Every comparison policy, by the name the report uses."""
    return {
        "always-haiku": always(0),
        "always-sonnet": always(1),
        "always-opus": always(TOP),
        "frugalgpt-cascade": frugal_cascade,
        f"routellm-threshold-{threshold:g}": routellm(threshold, sigma),
        "automix-self-verify": automix,
        "oracle-hopeless-free": oracle("free"),
        "oracle-hopeless-haiku": oracle("haiku"),
        "oracle-hopeless-opus": oracle("opus"),
        ORACLE_VERIFIED: oracle_verified,
    }
