"""Our policy through the real ``Engine``: in-process double, or HTTP to the local simulator.

Both paths build the same workload per DAG: one LLM node per drawn node, with
``needs.reasoning`` from the planner's noisy estimate (so the real ``CapabilityRouter``
picks the start tier) and one verifier:

* ``schema``: a free local check with the schema check's error rates (``DrawnCheck``);
* ``judge``: the engine's own ``LLMJudge`` (a judge call one tier above the author);
* ``self``: the engine's ``SelfCheck``, a judge call on the author's own tier.

The engine then routes, calls, verifies, escalates, gives up and accounts exactly as it
does for users. What is simulated is only the model's side: whether an answer is correct
and what a judge says come from the node's pre-drawn outcome and verdict noise.

The DAG's edges are not given to the engine (every node is attempted, so per-node numbers
do not depend on where a failure sits in the graph); makespan is computed afterwards on the
real edges (``report.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from draws import TIERS, DagDraw, NodeDraw
from policies import (
    JUDGE_OUTPUT,
    CostModel,
    NodeRun,
    VerifierRates,
    needs_level,
)

from orchestrator import Engine, LLMJudge, Needs, Plan, RunConfig, SelfCheck, Task
from orchestrator.models.base import ModelRequest, ModelResponse
from orchestrator.models.test import FunctionModel
from orchestrator.node import Node
from orchestrator.pricing import Usage
from orchestrator.results import RunResult, Verdict
from orchestrator.routing import Router
from orchestrator.verify import VerificationContext, Verifier
from orchestrator.wire import DEFAULT_SYSTEM_PROMPT
from orchestrator_sim.brain import BrainReply, BrainRequest
from orchestrator_sim.prompts import last_user_text

_MARKER = re.compile(r"\[bench dag=(\d+) node=(\d+)\]")
CRITERIA = "The answer fully and correctly does what the task asks."


def _answer(index: int, node: NodeDraw, tier: int) -> str:
    """A right answer reads the same from every tier (a shadow run agrees); a wrong one not."""
    return f"answer node={index} " + ("right" if node.passes[tier] else f"wrong tier={TIERS[tier]}")


def _node_of(text: str, dag: DagDraw) -> tuple[int, NodeDraw]:
    found = _MARKER.search(text)
    if found is None or int(found.group(1)) != dag.index:
        raise ValueError(f"request without this DAG's marker: {text[:80]!r}")
    index = int(found.group(2))
    return index, dag.nodes[index]


def _judge_data(accepted: bool, pad: bool) -> dict[str, Any]:
    reason = "The answer meets the criteria." if accepted else "The answer has an error."
    if pad:  # the simulator counts characters / 4: make the verdict about JUDGE_OUTPUT tokens
        reason += " " + "detail " * ((JUDGE_OUTPUT * 4 - 60) // 7)
    return {"passed": accepted, "reason": reason, "score": 0.9 if accepted else 0.1}


class DrawnCheck:
    """A free, local check with given error rates (stands in for a schema check)."""

    def __init__(self, node: NodeDraw, rates: VerifierRates) -> None:
        self.name = rates.name
        self.node, self.rates = node, rates

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        tier = TIERS.index(context.tier)
        accepted = self.rates.accepts(self.node.passes[tier], self.node.verdict_u[tier])
        reason = "" if accepted else "the output does not match the expected form"
        return Verdict(passed=accepted, reason=reason, verifier=self.name)


def instruction(dag: DagDraw, index: int, pad_to_tokens: int | None) -> str:
    text = f"[bench dag={dag.index} node={index}] Do task {index} of DAG {dag.index}."
    if pad_to_tokens is not None:  # over HTTP the simulator counts characters / 4
        room = pad_to_tokens * 4 - len(text) - len(DEFAULT_SYSTEM_PROMPT) - 8
        text += " " + "context " * max(0, room // 8)
    return text


@dataclass(frozen=True, slots=True)
class DagWorkload:
    """One drawn DAG as engine nodes (edges left out, see the module docstring)."""

    dag: DagDraw
    verifier: VerifierRates
    sigma: float
    pad: bool = False

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        nodes = []
        for index, draw in enumerate(self.dag.nodes):
            task = Task(
                id=f"n{index}",
                instruction=instruction(self.dag, index, draw.input_tokens if self.pad else None),
                needs=Needs(reasoning=needs_level(draw, self.sigma)),
            )
            nodes.append(Node(task=task, verifiers=(self._verifier(draw),)))
        return Plan(goal=f"bench DAG {self.dag.index}", tasks=[n.task for n in nodes]), nodes

    def _verifier(self, draw: NodeDraw) -> Verifier:
        if self.verifier.judge is None:
            return DrawnCheck(draw, self.verifier)
        if self.verifier.judge == "self":
            return SelfCheck(CRITERIA)
        return LLMJudge(CRITERIA)


class DrawnModel:
    """The model's side for the in-process run: answers and verdicts from the draws."""

    def __init__(self, dag: DagDraw, verifier: VerifierRates, costs: CostModel) -> None:
        self.dag, self.verifier, self.costs = dag, verifier, costs
        self.latency: dict[int, float] = {}
        self.author: dict[int, int] = {}  # node -> tier of its latest answer (for judges)

    def __call__(self, request: ModelRequest) -> ModelResponse:
        text = request.messages[-1].content
        index, node = _node_of(text, self.dag)
        tier = TIERS.index(request.tier.name)
        if request.purpose == "judge":
            written_by = self.author[index]  # a node's attempts run one after the other
            accepted = self.verifier.accepts(node.passes[written_by], node.verdict_u[written_by])
            call = self.costs.judge(tier, node)
            data = _judge_data(accepted, pad=False)
            answer = json.dumps(data)
        else:
            call = self.costs.task(tier, node, escalated="<previous_attempt" in text)
            self.author[index] = tier
            data, answer = None, _answer(index, node, tier)
        self.latency[index] = self.latency.get(index, 0.0) + call.latency
        usage = Usage(input_tokens=call.input_tokens, output_tokens=call.output_tokens)
        return ModelResponse(
            text=answer, data=data, usage=usage, model=request.tier.model, simulated=True
        )


def node_runs(result: RunResult, dag: DagDraw, latency: Mapping[int, float]) -> list[NodeRun]:
    """Read what the engine did with each node out of its result."""
    by_id = {node.id: node for node in result.nodes}
    runs = []
    for index, draw in enumerate(dag.nodes):
        node = by_id[f"n{index}"]
        run = NodeRun(latency=latency.get(index, 0.0))
        tried = [attempt for attempt in node.attempts if not attempt.shadow]
        run.attempts = [TIERS.index(attempt.tier) for attempt in tried]
        run.cost = float(sum(attempt.cost_usd for attempt in node.attempts))  # shadows paid too
        run.wasted = float(sum(attempt.cost_usd for attempt in tried if not attempt.passed))
        run.delivered = node.status == "succeeded"
        run.correct = run.delivered and draw.passes[run.attempts[-1]]
        runs.append(run)
    return runs


async def run_in_process(
    dags: Sequence[DagDraw],
    verifier: VerifierRates,
    sigma: float,
    costs: CostModel,
    router: Router | None = None,
) -> list[list[NodeRun]]:
    """Run every DAG through the real Engine with the in-process double.

    ``router``: the engine's router (default ``CapabilityRouter``); one instance serves every
    DAG in turn, so a learning router carries what it learned from one DAG to the next.
    """
    out = []
    for dag in dags:
        model = DrawnModel(dag, verifier, costs)
        engine = Engine(
            FunctionModel(model), costs.ladder, router=router,
            config=RunConfig(max_concurrency=256),
        )  # fmt: skip
        result = await engine.run(DagWorkload(dag, verifier, sigma))
        out.append(node_runs(result, dag, model.latency))
    return out


class OutcomeBrain:
    """A simulator brain whose answers follow the draws (swapped in with ``serve(brain=)``).

    The default brain answers soundly whenever a model's capability reaches the task's
    difficulty, so it cannot express "Sonnet passes, Opus fails"; this one reads the bench
    marker in the instruction and answers as the draw says, sized to the drawn tokens.
    """

    def __init__(self, dags: Sequence[DagDraw], verifier: VerifierRates) -> None:
        self.dags = {dag.index: dag for dag in dags}
        self.verifier = verifier
        self.author: dict[tuple[int, int], int] = {}  # (dag, node) -> tier of its last answer

    def respond(self, request: BrainRequest) -> BrainReply:
        user = last_user_text(request.messages)
        found = _MARKER.search(user)
        if found is None:
            raise ValueError("request without a bench marker")
        dag = self.dags[int(found.group(1))]
        index, node = _node_of(user, dag)
        tier = request.capability - 1
        notes = {"dag": dag.index, "node": index}
        if "verifier" in request.system:
            written_by = self.author[dag.index, index]
            accepted = self.verifier.accepts(node.passes[written_by], node.verdict_u[written_by])
            text = json.dumps(_judge_data(accepted, pad=True))
            return BrainReply([_block(text)], "end_turn", "judge", "j", notes=notes)
        self.author[dag.index, index] = tier
        text = _answer(index, node, tier) + " "
        text += "word " * max(0, (node.output_tokens * 4 - len(text)) // 5)
        return BrainReply([_block(text)], "end_turn", "task", "t", notes=notes)


def _block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


async def run_over_http(
    dags: Sequence[DagDraw], verifier: VerifierRates, sigma: float, costs: CostModel, seed: int
) -> tuple[list[list[NodeRun]], int]:
    """Run DAGs through the real Engine, AnthropicClient and SDK against the local server.

    Returns each DAG's node runs and the number of HTTP requests the server answered.
    """
    from orchestrator.models.anthropic import AnthropicClient  # noqa: PLC0415
    from orchestrator_sim import SimConfig, serve  # noqa: PLC0415

    out = []
    config = SimConfig(seed=seed, time_scale=0)
    async with serve(config, brain=OutcomeBrain(dags, verifier)) as sim:
        async with AnthropicClient(base_url=sim.base_url, api_key="offline") as client:
            engine = Engine(client, costs.ladder, config=RunConfig(max_concurrency=64))
            for dag in dags:
                result = await engine.run(DagWorkload(dag, verifier, sigma, pad=True))
                if not all(a.simulated for n in result.nodes for a in n.attempts):
                    raise RuntimeError("an answer was not marked simulated")
                out.append(node_runs(result, dag, _latencies(sim.requests, dag, costs)))
        requests = len(sim.requests)
    return out, requests


def _latencies(records: Sequence[Any], dag: DagDraw, costs: CostModel) -> dict[int, float]:
    """Per node: seconds its calls would take (ttft + output / speed), from the server log."""
    latency: dict[int, float] = {}
    models = [tier.model for tier in costs.ladder.tiers]
    for record in records:
        notes = record.notes or {}
        if notes.get("dag") != dag.index or record.status != 200:
            continue
        ttft, speed = costs.speed[models.index(record.model)]
        seconds = ttft + record.usage["output_tokens"] / speed
        latency[notes["node"]] = latency.get(notes["node"], 0.0) + seconds
    return latency
