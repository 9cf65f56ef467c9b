"""One node, start to end: route -> call -> verify -> escalate, recording every attempt.

The first attempt runs on the tier the router picks. An output that fails verification, or
an error the model client's retries could not fix, is re-run one tier higher with a fresh
conversation that carries the task, the previous answer and the verdict's reason as text
(never the other model's thinking). Escalation stops at the top tier, at ``max_tier`` or
after ``max_attempts``. Every attempt is kept with its cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import replace
from typing import Any

import anyio

from orchestrator.approval import Approvals, Approver
from orchestrator.budget import Budget
from orchestrator.events import AttemptStarted, Escalated, EventBus
from orchestrator.exceptions import BudgetExhausted, ModelAPIError
from orchestrator.executor import Executor
from orchestrator.models.base import Message, ModelClient, ModelRequest, ModelResponse
from orchestrator.models.instrumented import instrumented
from orchestrator.node import Node, same_answer
from orchestrator.paused import ToolsAwaitApproval
from orchestrator.policy import RunPolicy
from orchestrator.prompting import (
    attempt_messages,
    judge_request,
    route_request,
    schema_of,
    shared_input_nodes,
    structured,
)
from orchestrator.python_nodes import NO_VERIFIER, PythonNodes
from orchestrator.results import (
    Attempt,
    NodeResult,
    NodeStatus,
    Outcome,
    Verdict,
)
from orchestrator.routing import Router, TaskClassifier
from orchestrator.routing.rules import PROBE_ROUTE, RouteDecision
from orchestrator.spend import Spend, now, settle
from orchestrator.store.base import past_rejections
from orchestrator.tiers import Tier, TierLadder
from orchestrator.tool_approval import PausedTools, ToolApproval
from orchestrator.tools.registry import ToolRegistry
from orchestrator.turns import run_turns
from orchestrator.verifier import JudgeRequest, JudgeVerdict, VerificationContext
from orchestrator.verify import SchemaVerifier
from orchestrator.wire import (
    judge_prompt,
    shared_prefix_chars,
)

__all__ = ["NodeRunner", "RunPolicy"]


class NodeRunner(PythonNodes, Approvals):
    """Runs nodes of one run: shared ladder, client, budget, tier limits and events."""

    def __init__(
        self,
        *,
        run_id: str,
        ladder: TierLadder,
        client: ModelClient,
        router: Router,
        budget: Budget,
        policy: RunPolicy,
        tools: ToolRegistry,
        bus: EventBus,
        approver: Approver | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.run_id = run_id
        self.remote = executor if executor is not None and executor.remote else None
        self.approver = approver
        self.ladder = ladder
        self.client = instrumented(client)  # a chat span per turn
        self.router = router
        self.budget = budget
        self.policy = policy
        self.tools = tools
        self.bus = bus
        self.approve_tools = policy.approve_tools
        self._tier_limits = {t.name: anyio.CapacityLimiter(t.max_concurrency) for t in ladder.tiers}
        self._shared: frozenset[str] = frozenset()  # nodes whose inputs others read too
        self._written: dict[tuple[str, int], anyio.Event] = {}  # (model, prefix): cached
        self._waiting: dict[str, list[Attempt]] = {}  # by node: attempts with batch calls

    def _spend(self, node: Node, attempt: Attempt) -> Spend:
        earlier = self._waiting.get(node.task.id, ())  # batch calls an earlier process left
        return Spend(self.budget, self.bus, self.run_id, node.task.id, attempt, earlier=earlier)

    async def _answer(
        self,
        node: Node,
        tier: Tier,
        messages: list[Message],
        attempt: Attempt,
        prompt: str,
        *,
        prefix: str,
        gate: ToolApproval | None = None,
    ) -> tuple[Any, str]:
        """An answering attempt, after the call that caches its shared ``prefix``.

        When another node's call is writing the same prefix (a cache breakpoint) on this
        model, this one waits for it and reads the prefix instead of writing it too.
        """
        writes = await self._first_to_write(tier.model, prefix)
        try:
            return await self._attempt(
                node, tier, messages, attempt, prompt, writes=writes, gate=gate
            )
        finally:
            if writes is not None:  # the call failed before it was answered: go on
                writes.set()

    async def _first_to_write(self, model: str, prefix: str) -> anyio.Event | None:
        """The event this call sets once answered, if it writes ``prefix`` first on ``model``.

        ``None``: no cacheable prefix, or another call writes it: this one waited until that
        call was answered (the prefix is cached then) and reads it. Batched, the others go
        in the batch after the writer's.
        """
        if not (prefix and self.policy.cache):
            return None
        key = (model, hash(prefix))
        if (written := self._written.get(key)) is not None:
            await written.wait()
            return None
        writes = self._written[key] = anyio.Event()
        return writes

    def share_inputs(self, nodes: Iterable[Node]) -> None:
        """Note the planned nodes that read the same inputs (their prompts share a prefix)."""
        self._shared = shared_input_nodes(nodes)

    def run(
        self, node: Node, arguments: Mapping[str, Any], result: NodeResult
    ) -> Coroutine[Any, Any, None]:
        """Run ``node`` to a final status, recording into ``result`` as it goes (await it).

        A plain function returning the coroutine of the node's kind: one coroutine frame
        less per node.
        """
        if node.is_python:
            if node.task.approve is not None:
                return self._run_python_approved(node, arguments, result)
            return self._run_python(node, arguments, result)
        return self._run_llm(node, arguments, result)

    # -- LLM nodes --------------------------------------------------------------------

    async def _run_llm(self, node: Node, arguments: Mapping[str, Any], result: NodeResult) -> None:
        if waiting := [a for a in result.attempts if a.batch_pending]:
            self._waiting[node.task.id] = waiting  # a resumed node collects them
        done, previous, previous_text = await self._waiting_answer(node, result)
        done, resumed = (done, None) if done else await self._paused_tools(node, result)
        if done or not await self._may_start(node, result):
            return
        prompt, own = node.build_turn(arguments)
        routed = await self._route(node, prompt, result, resumed)
        if routed is None:
            return
        decision, index, reason, covered = routed
        top = self.policy.max_tier
        limit = self.policy.max_attempts or (top - index + 1)
        shared = own or (shared_prefix_chars(prompt) if node.task.id in self._shared else 0)
        for step in range(1, limit + 1):
            number = len(result.attempts) + 1  # after those of an earlier process
            tier = self.ladder[index]
            attempt = Attempt(
                number=number, tier=tier.name, model=tier.model, started_at=now(),
                route_reason=reason, needs_covered=covered,
                escalated_from=previous.number if previous else None,
            )  # fmt: skip
            result.attempts.append(attempt)
            result.final_tier = tier.name
            cut = shared if shared // 4 >= tier.cache_min_tokens else 0  # a cacheable prefix
            messages = attempt_messages(prompt, previous, previous_text, cut)
            gate = self._tool_gate(node, result, attempt, resumed)
            if resumed is not None:
                messages, resumed = resumed.messages, None
            output, previous_text = await self._answer(
                node, tier, messages, attempt, prompt, prefix=prompt[:cut], gate=gate
            )
            if attempt.tool_wait is not None:  # its tool calls wait for a person
                result.status, result.reason = NodeStatus.WAITING, Outcome.WAITING_FOR_APPROVAL
                return
            if attempt.passed and await self._held(node, result, attempt, output):
                return  # its answer waits for a person
            if attempt.passed:
                result.status, result.output, result.reason = NodeStatus.SUCCEEDED, output, None
                other = top if decision.shadow_tier is None else min(decision.shadow_tier, top)
                if decision.shadow and other != index:
                    await self._shadow(node, prompt, output, result, number=number + 1, index=other)
                return
            result.reason = attempt.error or (attempt.verdict.reason if attempt.verdict else None)
            if attempt.error_type == Outcome.BUDGET_EXHAUSTED:
                result.status = NodeStatus.NOT_RUN if step == 1 else NodeStatus.FAILED
                result.reason = Outcome.BUDGET_EXHAUSTED
                return
            if index >= top:
                break
            index += 1
            reason = f"escalated after attempt {number} on {tier.name}: {result.reason}"
            up, why = self.ladder[index].name, str(result.reason)
            await self.bus.emit(Escalated(self.run_id, node.task.id, number, tier.name, up, why))
            previous = attempt
        result.status = NodeStatus.FAILED

    async def _route(
        self, node: Node, prompt: str, result: NodeResult, resumed: PausedTools | None
    ) -> tuple[RouteDecision, int, str, bool] | None:
        """Where the node starts: ``(decision, tier index, why, needs covered)``.

        ``None``: the budget did not cover the classifier's call (the node does not run).
        """
        request = route_request(node, prompt)
        classifier: TaskClassifier | None = getattr(self.router, "classifier", None)
        if classifier is not None:
            label, afforded = await self._classify(node, classifier, prompt, result)
            if not afforded:
                result.status, result.reason = NodeStatus.NOT_RUN, Outcome.BUDGET_EXHAUSTED
                return None
            request = replace(request, label=label)
        decision = self.router.route(request, self.ladder)
        above = decision.shadow_tier is None or decision.shadow_tier > decision.index
        if decision.shadow and above:  # sampled for the top tier's check (not a probe below)
            result.shadowed = True
        top = self.policy.max_tier
        index = min(decision.index, top)
        covered = decision.covered and index == decision.index
        reason = (
            decision.reason if index == decision.index else f"{decision.reason}; capped at max tier"
        )
        index, reason = past_rejections(self.ladder.names, result, index, top, reason)
        if resumed is not None:  # on the tier whose conversation waited for a decision
            index, reason = self.ladder.index(resumed.attempt.tier), resumed.reason
        return decision, index, reason, covered

    async def _classify(
        self, node: Node, classifier: TaskClassifier, prompt: str, result: NodeResult
    ) -> tuple[str | None, bool]:
        """The label a cheap-tier call gives the task (paid, recorded, not the answer).

        Returns the label (``None``: none named, or the call failed) and whether the budget
        covered the call (if not, the node does not run). A resumed node reuses the label
        an earlier process paid for.
        """
        earlier = next((a for a in result.attempts if a.classify and a.error is None), None)
        if earlier is not None:
            return earlier.label, True
        tier = classifier.pick_tier(self.ladder)
        attempt = Attempt(
            number=len(result.attempts) + 1, tier=tier.name, model=tier.model,
            started_at=now(), classify=True,
            route_reason=f"classify: {tier.name} labels the task before it is routed",
        )  # fmt: skip
        result.attempts.append(attempt)
        request = ModelRequest(
            tier=tier,
            system=classifier.system,
            messages=[Message(role="user", content=classifier.prompt(prompt))],
            max_output_tokens=classifier.max_output_tokens,
            purpose="classify",
            task_id=node.task.id,
            cache=self.policy.cache,
            batch=self.policy.batches(node),
        )
        async with self._recorded(node, tier, attempt) as meters:  # a failure: no label
            request = request.model_copy(update={"on_text": meters.on_text("classify")})
            response = await self.client.complete(request, meters.meter(tier))
            attempt.simulated = response.simulated
            attempt.label = classifier.parse(response.text)
        return attempt.label, attempt.error_type != Outcome.BUDGET_EXHAUSTED

    async def _shadow(
        self, node: Node, prompt: str, accepted: Any, result: NodeResult, *, number: int, index: int
    ) -> None:
        """Answer the task on tier ``index`` too (the router asked): paid, compared, not used."""
        tier = self.ladder[index]
        probe = index < self.ladder.index(result.final_tier or tier.name)
        reason = (
            f"{PROBE_ROUTE}{tier.name} answers too, to learn what it gets wrong"
            if probe
            else f"shadow: {tier.name} answers too, to learn what the checks miss"
        )
        attempt = Attempt(
            number=number, tier=tier.name, model=tier.model, started_at=now(), shadow=True,
            route_reason=reason,
        )  # fmt: skip
        result.attempts.append(attempt)
        gate = self._tool_gate(node, result, attempt, pausable=False)
        output, _ = await self._attempt(
            node, tier, attempt_messages(prompt, None, ""), attempt, prompt, gate=gate
        )
        if attempt.passed:
            attempt.agrees = same_answer(output, accepted)

    async def _attempt(
        self,
        node: Node,
        tier: Tier,
        messages: list[Message],
        attempt: Attempt,
        prompt: str,
        *,
        writes: anyio.Event | None = None,
        gate: ToolApproval | None = None,
    ) -> tuple[Any, str]:
        text = ""
        output: Any = None
        async with self._recorded(node, tier, attempt, writes) as meters:
            try:
                response = await self._call(node, tier, messages, meters, gate)
            except ToolsAwaitApproval as paused:  # stored: resume goes on from here
                attempt.tool_wait = paused.wait
                return None, ""
            attempt.simulated, attempt.worker = response.simulated, response.worker  # relayed
            text = response.text
            candidate = response.data if structured(node) else response.text
            output, attempt.verdict = await self._verify(
                node, candidate, text, tier, meters, prompt=prompt
            )
        return output, text

    @asynccontextmanager
    async def _recorded(
        self, node: Node, tier: Tier, attempt: Attempt, writes: anyio.Event | None = None
    ) -> AsyncIterator[Spend]:
        """The calls of one attempt on ``tier``: limited, announced, metered, settled.

        A failure ends the attempt, not the run: its error is recorded on the attempt
        (``error``, ``error_type``: ``budget_exhausted``, the API's error type, or the
        exception's class) and not raised; cancellation is recorded and raised.
        """
        meters = self._spend(node, attempt)
        meters.answered = writes  # set once its first call is answered (the prefix cached)
        try:
            # a batch call holds no connection: the tier's concurrency does not bound it
            async with nullcontext() if self.policy.batches(node) else self._tier_limits[tier.name]:
                attempt.started_at = now()
                await self.bus.emit(AttemptStarted(self.run_id, node.task.id, attempt))
                yield meters
        except BudgetExhausted as exc:
            attempt.error, attempt.error_type = str(exc), Outcome.BUDGET_EXHAUSTED
        except ModelAPIError as exc:
            attempt.error, attempt.error_type = str(exc), exc.error_type
        except anyio.get_cancelled_exc_class():
            attempt.error, attempt.error_type = "cancelled", Outcome.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001  (a failed attempt, not a crashed run)
            attempt.error, attempt.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
        finally:
            settle(attempt, meters)
            with anyio.CancelScope(shield=True):
                await self.bus.emit_finished(self.run_id, node.task.id, attempt)

    async def _call(
        self,
        node: Node,
        tier: Tier,
        messages: list[Message],
        meters: Spend,
        gate: ToolApproval | None = None,
    ) -> ModelResponse:
        meter = meters.meter(tier)
        request = ModelRequest(
            tier=tier,
            system=self.policy.system_prompt,
            messages=messages,
            max_output_tokens=node.task.max_output_tokens or tier.max_output_tokens,
            tools=[self.tools[name] for name in node.task.tools],
            output_schema=schema_of(node),
            task_id=node.task.id,
            max_tool_steps=self.policy.max_tool_steps,
            tool_timeout_s=self.policy.tool_timeout_s,
            cache=self.policy.cache,
            batch=self.policy.batches(node),
        )
        return await run_turns(self.client, request, meter, meters, gate)

    # -- verification -----------------------------------------------------------------

    async def _verify(
        self,
        node: Node,
        candidate: Any,
        text: str,
        tier: Tier,
        meters: Spend,
        *,
        prompt: str,
    ) -> tuple[Any, Verdict]:
        if not node.verifiers:
            return candidate, NO_VERIFIER

        async def judge(request: JudgeRequest) -> JudgeVerdict:
            task = prompt if request.inputs else node.task.instruction
            return await self._judge(node, task, request, author=tier, meters=meters)

        context = VerificationContext(
            task=node.task, text=text, tier=tier.name, judge=judge, prompt=prompt
        )
        output = candidate
        verdict = NO_VERIFIER
        for verifier in node.verifiers:
            verdict = await verifier.verify(output, context)
            if not verdict.passed:
                return None, verdict
            if isinstance(verifier, SchemaVerifier) and node.output_type is not None:
                output = node.output_type.model_validate(output)
        return output, verdict

    async def _judge(
        self, node: Node, task: str, asked: JudgeRequest, *, author: Tier, meters: Spend
    ) -> JudgeVerdict:
        if asked.tier is None:
            judge_tier = self.ladder[min(self.ladder.index(author.name) + 1, len(self.ladder) - 1)]
        else:
            judge_tier = self.ladder.get(asked.tier)
        meter = meters.meter(judge_tier)
        content = judge_prompt(task, asked.criteria, asked.answer, asked.evidence)
        request, prefix = judge_request(
            node, content, judge_tier, cache=self.policy.cache,
            batch=self.policy.batches(node), on_text=meters.on_text("judge"),
        )  # fmt: skip
        writes = await self._first_to_write(judge_tier.model, prefix)
        try:
            response = await self.client.complete(request, meter)
        finally:
            if writes is not None:
                writes.set()
        return JudgeVerdict.model_validate(response.data)
