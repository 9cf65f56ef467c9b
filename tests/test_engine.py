"""Routing, verification, escalation and budget, through the engine's public API."""

from __future__ import annotations

import gc
import weakref

import anyio
import pytest

from orchestrator import (
    AttemptFinished,
    AttemptStarted,
    Engine,
    JudgeSpec,
    ModelAPIError,
    ModelRequest,
    Needs,
    NodeFinished,
    NodeStatus,
    Plan,
    PlanValidationError,
    RequiredSectionsSpec,
    RunFinished,
    RunStarted,
    RunStatus,
    SelfCheck,
    Task,
    UserError,
    Workflow,
)
from orchestrator.testing import EventCapture, FunctionModel, TestModel

pytestmark = pytest.mark.anyio


def one(task: Task) -> Plan:
    return Plan(goal="g", tasks=[task])


async def test_passes_at_first_tier() -> None:
    result = await Engine(TestModel("a good answer")).run(one(Task(id="t", instruction="x")))
    node = result.node("t")
    assert node.status is NodeStatus.SUCCEEDED
    assert [a.tier for a in node.attempts] == ["haiku"]
    assert node.final_tier == "haiku"
    assert result.wasted_cost_usd == 0
    assert result.cost_usd == pytest.approx(node.attempts[0].cost_usd)
    assert result.cost_usd > 0


async def test_fails_then_passes_one_tier_up_with_the_reason() -> None:
    model = TestModel("", by_tier={"sonnet": "a real answer"})
    result = await Engine(model).run(one(Task(id="t", instruction="explain")))
    node = result.node("t")
    assert node.status is NodeStatus.SUCCEEDED
    assert [a.tier for a in node.attempts] == ["haiku", "sonnet"]
    first, second = node.attempts
    assert first.verdict is not None
    assert not first.verdict.passed
    assert first.verdict.reason == "the answer is empty"
    assert second.escalated_from == 1
    assert "escalated after attempt 1 on haiku" in second.route_reason
    # the second attempt is a fresh conversation carrying the task and the verdict as text
    retry_prompt = model.requests[1].messages[0].content
    assert len(model.requests[1].messages) == 1
    assert "explain" in retry_prompt
    assert "the answer is empty" in retry_prompt
    assert result.wasted_cost_usd == pytest.approx(first.cost_usd)
    assert result.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)


async def test_fails_at_every_tier() -> None:
    result = await Engine(TestModel("I'm sorry, I can't help with that.")).run(
        one(Task(id="t", instruction="x"))
    )
    node = result.node("t")
    assert node.status is NodeStatus.FAILED
    assert [a.tier for a in node.attempts] == ["haiku", "sonnet", "opus"]
    assert "refusal" in (node.reason or "")
    assert result.status is RunStatus.FAILED
    assert result.wasted_cost_usd == pytest.approx(result.cost_usd)


async def test_routing_starts_at_cheapest_covering_tier() -> None:
    plan = Plan(
        goal="g",
        tasks=[
            Task(id="easy", instruction="x"),
            Task(id="medium", instruction="x", needs=Needs(reasoning=2)),
            Task(id="hard", instruction="x", needs=Needs(coding=3)),
        ],
    )
    result = await Engine(TestModel("ok")).run(plan)
    assert {n.id: n.final_tier for n in result.nodes} == {
        "easy": "haiku",
        "medium": "sonnet",
        "hard": "opus",
    }


async def test_uncoverable_needs_use_strongest_and_say_so() -> None:
    task = Task(id="t", instruction="x", needs=Needs(context_tokens=5_000_000))
    result = await Engine(TestModel("ok")).run(one(task))
    attempt = result.node("t").attempts[0]
    assert attempt.tier == "opus"
    assert attempt.needs_covered is False
    assert "no tier covers" in attempt.route_reason


async def test_max_tier_caps_escalation() -> None:
    result = await Engine(TestModel("")).run(one(Task(id="t", instruction="x")), max_tier="sonnet")
    assert [a.tier for a in result.node("t").attempts] == ["haiku", "sonnet"]


async def test_max_attempts_caps_escalation() -> None:
    result = await Engine(TestModel("")).run(one(Task(id="t", instruction="x")), max_attempts=1)
    assert [a.tier for a in result.node("t").attempts] == ["haiku"]


async def test_api_error_after_retries_escalates() -> None:
    def answer(request: ModelRequest) -> str:
        if request.tier.name == "haiku":
            raise ModelAPIError(
                "overloaded after 3 retries", status_code=529, error_type="overloaded_error"
            )
        return "answer"

    result = await Engine(FunctionModel(answer)).run(one(Task(id="t", instruction="x")))
    first, second = result.node("t").attempts
    assert first.error == "overloaded after 3 retries"
    assert first.error_type == "overloaded_error"
    assert first.verdict is None
    assert second.tier == "sonnet"
    assert result.node("t").status is NodeStatus.SUCCEEDED


async def test_unexpected_client_exception_is_an_attempt_error_not_a_crash() -> None:
    def answer(request: ModelRequest) -> str:
        if request.tier.name == "haiku":
            raise RuntimeError("connection reset")
        return "answer"

    result = await Engine(FunctionModel(answer)).run(one(Task(id="t", instruction="x")))
    assert result.node("t").attempts[0].error == "RuntimeError: connection reset"
    assert result.status is RunStatus.SUCCEEDED


async def test_required_sections_and_judge_from_plan_specs() -> None:
    def answer(request: ModelRequest) -> str:
        if request.purpose == "judge":
            assert request.tier.name == "opus"  # one tier above the sonnet attempt
            return '{"passed": true, "reason": "complete", "score": 0.9}'
        if request.tier.name == "haiku":
            return "## Findings\nonly one section"
        return "## Findings\nx\n## Sources\ny"

    task = Task(
        id="report",
        instruction="write",
        verify=[RequiredSectionsSpec(sections=["Findings", "Sources"]), JudgeSpec()],
    )
    result = await Engine(FunctionModel(answer)).run(one(task))
    first, second = result.node("report").attempts
    assert first.verdict is not None
    assert first.verdict.reason == "missing required section(s): Sources"
    assert second.verdict is not None
    assert second.verdict.verifier == "llm_judge"
    assert second.verdict.score == 0.9
    assert second.calls == 2  # the answer and the judge, both charged to the attempt


@pytest.mark.parametrize("inputs", [True, False])
async def test_the_judge_sees_the_inputs_the_author_was_given(inputs: bool) -> None:
    # A judge that cannot see the sources cannot catch a summary unfaithful to them; one
    # told not to (inputs=False) reads the instruction alone, for less.
    judged: list[str] = []

    def answer(request: ModelRequest) -> str:
        text = str(request.messages[-1].content)
        if request.purpose == "judge":
            judged.append(text)
            return '{"passed": true, "reason": "faithful", "score": 0.9}'
        if request.task_id == "gather":
            return "SOURCE-7 says the bridge opened in 1932."
        return "The bridge opened in 1932."

    plan = Plan(
        goal="g",
        tasks=[
            Task(id="gather", instruction="Find when the bridge opened."),
            Task(
                id="summarise",
                instruction="Summarise the findings.",
                depends_on=["gather"],
                verify=[JudgeSpec(criteria="Faithful to the inputs.", inputs=inputs)],
            ),
        ],
    )
    result = await Engine(FunctionModel(answer)).run(plan)
    assert result.status is RunStatus.SUCCEEDED
    [text] = judged
    assert "Summarise the findings." in text
    assert "Faithful to the inputs." in text
    assert "<answer>\nThe bridge opened in 1932.\n</answer>" in text
    assert ("SOURCE-7 says the bridge opened in 1932." in text) is inputs


class OnePassage:
    def passage_text(self, passage_id: str) -> str | None:
        return "The bridge opened in 1932." if passage_id == "bridge.md#0" else None


async def test_a_planned_judge_reads_the_passages_the_answer_cites() -> None:
    judged: list[str] = []

    def answer(request: ModelRequest) -> str:
        if request.purpose == "judge":
            judged.append(str(request.messages[-1].content))
            return '{"passed": true, "reason": "supported", "score": 0.9}'
        return "It opened in 1932 [bridge.md#0]."

    task = Task(id="t", instruction="When did it open?", verify=[JudgeSpec()])
    result = await Engine(FunctionModel(answer), passages=OnePassage()).run(one(task))
    assert result.status is RunStatus.SUCCEEDED
    [text] = judged
    assert "<passage id='bridge.md#0'>\nThe bridge opened in 1932.\n</passage>" in text


async def test_a_self_check_runs_on_the_authors_tier_and_escalates_like_a_judge() -> None:
    judges: list[tuple[str, str]] = []

    def answer(request: ModelRequest) -> str:
        if request.purpose == "judge":
            author = "haiku" if "haiku answer" in str(request.messages[-1].content) else "other"
            judges.append((request.tier.name, author))
            passed = "false" if author == "haiku" else "true"
            return f'{{"passed": {passed}, "reason": "checked", "score": 0.8}}'
        return f"{request.tier.name} answer"

    wf = Workflow("self-checked")

    @wf.llm(name="t", verify=[SelfCheck("Correct and complete.")])
    def explain() -> str:
        return "Explain."

    result = await Engine(FunctionModel(answer)).run(wf)
    assert judges == [("haiku", "haiku"), ("sonnet", "other")]
    first, second = result.node("t").attempts
    assert first.verdict is not None
    assert first.verdict.verifier == "self_check"
    assert not first.passed
    assert second.passed
    assert result.node("t").output == "sonnet answer"


async def test_structured_output_from_plan_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["items"],
    }

    def answer(request: ModelRequest) -> str:
        assert request.output_schema == schema
        return '{"items": ["a"]}' if request.tier.name == "haiku" else '{"items": ["a", "b"]}'

    result = await Engine(FunctionModel(answer)).run(
        one(Task(id="t", instruction="list", output_schema=schema))
    )
    node = result.node("t")
    assert node.output == {"items": ["a", "b"]}
    verdict = node.attempts[0].verdict
    assert verdict is not None
    assert "items" in verdict.reason


async def test_budget_is_never_exceeded_and_unrun_nodes_are_reported() -> None:
    plan = Plan(goal="g", tasks=[Task(id=f"t{i}", instruction="x" * 200) for i in range(40)])
    # each answer is ~1,000 output tokens (~$0.0005 on haiku); each call reserves its worst
    # case (4,096 output tokens, ~$0.002) until it settles
    budget = 0.01
    result = await Engine(TestModel("word " * 800)).run(plan, budget_usd=budget, max_concurrency=4)
    assert result.cost_usd <= budget
    assert result.status is RunStatus.BUDGET_EXHAUSTED
    not_run = [n for n in result.nodes if n.status is NodeStatus.NOT_RUN]
    succeeded = [n for n in result.nodes if n.status is NodeStatus.SUCCEEDED]
    assert not_run
    assert succeeded
    assert len(not_run) + len(succeeded) == 40
    assert {n.reason for n in not_run} == {"budget_exhausted"}
    assert all(n.output for n in succeeded)


async def test_zero_budget_runs_nothing() -> None:
    result = await Engine(TestModel("ok")).run(one(Task(id="t", instruction="x")), budget_usd=0)
    assert result.cost_usd == 0
    assert result.node("t").status is NodeStatus.NOT_RUN
    assert result.status is RunStatus.BUDGET_EXHAUSTED


async def test_events_tell_the_story_in_order() -> None:
    events = EventCapture()
    engine = Engine(TestModel("", by_tier={"sonnet": "ok"}), listeners=[events])
    await engine.run(one(Task(id="t", instruction="x")))
    kinds = [type(event).__name__ for event in events.events]
    assert kinds == [
        "RunStarted",
        "NodeStarted",
        "AttemptStarted",
        "AttemptSpending",  # the call's worst case, recorded before it is sent
        "CostUpdated",  # what it cost, once answered
        "VerdictGiven",
        "AttemptFinished",
        "Escalated",
        "AttemptStarted",
        "AttemptSpending",
        "CostUpdated",
        "VerdictGiven",
        "AttemptFinished",
        "NodeFinished",
        "RunFinished",
    ]
    assert isinstance(events.events[0], RunStarted)
    assert [e.attempt.tier for e in events.of_type(AttemptStarted)] == ["haiku", "sonnet"]
    assert events.of_type(AttemptFinished)[0].attempt.verdict is not None
    assert events.of_type(NodeFinished)[0].result.status is NodeStatus.SUCCEEDED
    assert events.of_type(RunFinished)[0].result.status is RunStatus.SUCCEEDED


async def test_async_listener_is_awaited_before_dependents_start() -> None:
    order: list[str] = []

    async def slow_store(event: object) -> None:
        if isinstance(event, NodeFinished):
            await anyio.lowlevel.checkpoint()
            order.append(f"stored {event.result.id}")

    def answer(request: ModelRequest) -> str:
        order.append(f"call {request.task_id}")
        return "ok"

    plan = Plan(
        goal="g",
        tasks=[Task(id="a", instruction="x"), Task(id="b", instruction="y", depends_on=["a"])],
    )
    await Engine(FunctionModel(answer), listeners=[slow_store]).run(plan)
    assert order == ["call a", "stored a", "call b", "stored b"]


async def test_invalid_plan_is_rejected_before_anything_runs() -> None:
    model = TestModel("ok")
    plan = Plan(
        goal="g",
        tasks=[Task(id="a", instruction="x", depends_on=["ghost"], tools=["search"])],
    )
    with pytest.raises(PlanValidationError) as info:
        await Engine(model).run(plan)
    messages = [str(problem) for problem in info.value.problems]
    assert "task 'a': depends on unknown task 'ghost'" in messages
    assert any("unknown tool 'search'" in message for message in messages)
    assert model.requests == []


async def test_bad_override_is_a_user_error() -> None:
    with pytest.raises(Exception, match="max_concurrency"):
        await Engine(TestModel()).run(one(Task(id="t", instruction="x")), max_concurrency=0)
    with pytest.raises(KeyError, match="no tier named 'gpt'"):
        await Engine(TestModel()).run(one(Task(id="t", instruction="x")), max_tier="gpt")


async def test_results_are_marked_simulated_for_test_doubles() -> None:
    result = await Engine(TestModel("ok")).run(one(Task(id="t", instruction="x")))
    assert result.simulated is True
    assert result.node("t").attempts[0].simulated is True


def test_missing_run_input_is_named() -> None:
    from orchestrator import Workflow

    wf = Workflow("g")

    @wf.task
    def greet(name: str) -> str:
        return f"hi {name}"

    with pytest.raises(UserError, match=r"missing run input\(s\): 'name' \(needed by 'greet'\)"):
        Engine(TestModel()).prepare(wf)


async def test_a_run_executes_once() -> None:
    run = Engine(TestModel("ok")).prepare(one(Task(id="t", instruction="x")))
    await run.execute()
    with pytest.raises(RuntimeError, match="already executed"):
        await run.execute()


async def test_a_finished_run_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle keeps a run (or its graph and tasks) alive once it is dropped:
    a program running many big plans gets the memory back at once, and the collector has
    no dead runs to scan."""
    plan = Plan(
        goal="g",
        tasks=[Task(id="a", instruction="x"), Task(id="b", instruction="y", depends_on=["a"])],
    )
    engine = Engine(TestModel("ok"))
    gc.collect()
    gc.disable()
    try:
        run = engine.prepare(plan)
        result = await run.execute()
        assert result.status is RunStatus.SUCCEEDED
        refs = [weakref.ref(run), weakref.ref(run._graph), weakref.ref(run._scheduler)]
        del run
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()


def test_preparing_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    engine = Engine(TestModel("ok"))
    good = Plan(goal="g", tasks=[Task(id="a", instruction="x")])
    bad = Plan(goal="g", tasks=[Task(id="a", instruction="x", depends_on=["missing"])])
    assert gc.isenabled()
    engine.prepare(good)
    assert gc.isenabled()
    with pytest.raises(PlanValidationError):
        engine.prepare(bad)
    assert gc.isenabled()  # re-enabled when preparing fails too
    gc.disable()
    try:
        engine.prepare(good)
        assert not gc.isenabled()  # an application that turned it off keeps it off
    finally:
        gc.enable()
