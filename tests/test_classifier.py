"""The lightweight classifier before routing: a paid cheap-tier call whose label is learned."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from orchestrator import (
    CalibratedRouter,
    CapabilityRouter,
    Engine,
    Needs,
    Plan,
    RouteDecision,
    RouteRequest,
    RunConfig,
    Task,
    TaskClassifier,
    TierLadder,
    UserError,
    Verdict,
    Workflow,
    default_ladder,
)
from orchestrator.cli import main
from orchestrator.exceptions import ModelAPIError
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.base import ModelRequest
from orchestrator.store.listener import StoreListener
from orchestrator.store.memory import MemoryStore
from orchestrator.testing import FunctionModel
from orchestrator.verifier import VerificationContext
from orchestrator.wire import CLASSIFY_SYSTEM_PROMPT
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

NEEDS = Needs(reasoning=3)  # the rules put every task on the strong tier


def two_tiers() -> TierLadder:
    ladder = default_ladder()
    return TierLadder(tiers=(ladder.get("haiku"), ladder.get("opus")))


def hard(task_id: str) -> bool:
    return int(task_id.split("_")[1]) % 2 == 1  # nothing in the id or the text says which


def answer(request: ModelRequest) -> str:
    task = request.task_id or ""
    if request.purpose == "classify":
        assert request.system == CLASSIFY_SYSTEM_PROMPT
        return "hard" if hard(task) else "Easy."
    if hard(task) and request.tier.name == "haiku":
        return f"wrong answer to {task}"
    return f"right answer to {task}"


class CatchesHalf:
    """Rejects a wrong answer of every other task, never a right one: a lenient check."""

    name = "half"

    async def verify(self, output: object, context: VerificationContext) -> Verdict:
        caught = str(output).startswith("wrong") and int(context.task.id.split("_")[1]) % 4 == 1
        return Verdict(passed=not caught, reason="wrong" if caught else "", verifier=self.name)


def workflow(name: str, count: int, offset: int = 0) -> Workflow:
    flow = Workflow(name)
    for i in range(offset, offset + count):

        def prompt(text: str = f"Question number {i}, please answer it.") -> str:
            return text

        flow.llm(name=f"q_{i}", needs=NEEDS, verify=[CatchesHalf()])(prompt)
    return flow


def router(**kwargs: object) -> CalibratedRouter:
    options: dict[str, object] = {
        "fit": "inline", "seed": 3, "min_samples": 30, "threshold": 0.2, "warmup_explore": 0.5,
        "shadow": 0.2,
        "classifier": TaskClassifier(),
    }  # fmt: skip
    options.update(kwargs)
    return CalibratedRouter(**options)  # type: ignore[arg-type]


async def test_the_label_is_paid_recorded_first_and_never_the_answer() -> None:
    engine = Engine(FunctionModel(answer), two_tiers(), router=router())
    with anyio.fail_after(60):
        result = await engine.run(workflow("labels", 20))
    for node in result.nodes:
        first = node.attempts[0]
        assert first.classify
        assert first.tier == "haiku"
        assert first.label == ("hard" if hard(node.id) else "easy")
        assert first.cost_usd > 0
        assert first.calls == 1
        assert node.output.startswith("right") or node.attempts[1].tier == "haiku"
        assert not any(a.classify for a in node.attempts[1:])
    classify = sum((n.classify_cost_usd for n in result.nodes), Decimal(0))
    assert result.classify_cost_usd == classify > 0
    assert result.cost_usd >= classify + sum(
        (a.cost_usd for n in result.nodes for a in n.attempts if not a.classify), Decimal(0)
    )
    failed = [a for n in result.nodes for a in n.attempts if a.answering and not a.passed]
    assert result.wasted_cost_usd == sum((a.cost_usd for a in failed), Decimal(0))


async def test_the_router_learns_what_the_label_says_when_nothing_else_does() -> None:
    """Easy and hard tasks read alike; only the classifier's label tells them apart."""
    learned = router()
    engine = Engine(
        FunctionModel(answer), two_tiers(), router=learned, config=RunConfig(max_concurrency=8)
    )
    with anyio.fail_after(120):
        await engine.run(workflow("learn", 300))
        result = await engine.run(workflow("then", 60, offset=1000))
    starts = {n.id: next(a.tier for a in n.attempts if a.answering) for n in result.nodes}
    hard_ids = [i for i in starts if hard(i)]
    easy_ids = [i for i in starts if not hard(i)]
    assert sum(starts[i] == "opus" for i in hard_ids) >= 0.85 * len(hard_ids), starts
    assert sum(starts[i] == "haiku" for i in easy_ids) >= 0.85 * len(easy_ids), starts

    without = router(classifier=None)
    engine = Engine(FunctionModel(answer), two_tiers(), router=without)
    with anyio.fail_after(120):
        await engine.run(workflow("learn", 300))
        blind = await engine.run(workflow("then", 60, offset=1000))
    blind_starts = {n.id: n.attempts[0].tier for n in blind.nodes}
    told_apart = sum(starts[i] == ("opus" if hard(i) else "haiku") for i in starts)
    blind_apart = sum(blind_starts[i] == ("opus" if hard(i) else "haiku") for i in blind_starts)
    assert told_apart > blind_apart + 20, (told_apart, blind_apart)


async def test_a_budget_covers_the_classifier_calls() -> None:
    engine = Engine(FunctionModel(answer), two_tiers(), router=router())
    with anyio.fail_after(60):
        first = await engine.run(workflow("cost", 10))
    budget = first.cost_usd / 2
    engine = Engine(
        FunctionModel(answer), two_tiers(), router=router(), config=RunConfig(budget_usd=budget)
    )
    with anyio.fail_after(60):
        result = await engine.run(workflow("cost", 10))
    assert result.cost_usd <= budget
    assert result.classify_cost_usd > 0
    assert any(n.status == "not_run" for n in result.nodes)


async def test_the_simulator_answers_a_label_through_the_real_client() -> None:
    """Over HTTP, the simulator labels tasks by their true difficulty, marked simulated."""
    flow = Workflow("sim")
    for i, level in enumerate([1, 3, 1, 3, 2, 1, 3, 3]):

        def prompt(text: str = f"Summarise topic {i} in a paragraph. [difficulty={level}]") -> str:
            return text

        flow.llm(name=f"t_{i}", needs=Needs(reasoning=1))(prompt)
    sure = SimConfig(time_scale=0, classifier_accuracy=(1.0, 1.0, 1.0))
    async with serve(sure) as server:
        client = AnthropicClient(base_url=server.base_url, api_key="test")
        async with client:
            engine = Engine(client, default_ladder(), router=router(threshold=0.2))
            with anyio.fail_after(60):
                result = await engine.run(flow)
    labels = [n.attempts[0].label for n in result.nodes]
    assert labels == ["easy", "hard", "easy", "hard", "hard", "easy", "hard", "hard"]
    assert all(n.attempts[0].simulated and n.attempts[0].classify for n in result.nodes)


def test_labels_are_checked() -> None:
    with pytest.raises(UserError, match="two labels"):
        TaskClassifier(labels=("easy",))
    with pytest.raises(UserError, match="single words"):
        TaskClassifier(labels=("easy", "very hard"))
    with pytest.raises(UserError, match="differ"):
        TaskClassifier(labels=("Hard", "hard"))
    classifier = TaskClassifier(labels=("low", "mid", "high"))
    assert classifier.parse("**High**.") == "high"
    assert classifier.parse("I cannot tell") is None


class RecordingRouter(CapabilityRouter):
    """The rules, with a classifier; remembers the label each task was routed with."""

    def __init__(self) -> None:
        self.classifier = TaskClassifier()
        self.labels: dict[str, str | None] = {}

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        self.labels[request.task_id] = request.label
        return super().route(request, ladder)


async def test_a_resumed_node_reuses_the_label_it_paid_for() -> None:
    store = MemoryStore()
    plan = Plan(goal="resume", tasks=[Task(id="a", instruction="first")])
    answering = anyio.Event()

    async def first_process(request: ModelRequest) -> str:
        if request.purpose == "classify":
            return "hard"
        answering.set()
        await anyio.sleep_forever()
        raise AssertionError

    engine = Engine(
        FunctionModel(first_process), router=RecordingRouter(), listeners=[StoreListener(store)]
    )
    run = engine.prepare(plan, run_id="labelled")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.execute)
            await answering.wait()
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    stored = await store.load_run("labelled")
    second = FunctionModel(lambda request: f"answer {request.task_id}")
    router = RecordingRouter()
    with anyio.fail_after(10):
        resumed = await Engine(second, router=router).run(stored.plan, resume=stored)
    assert [r.purpose for r in second.requests] == ["task"]  # no second classifier call
    assert router.labels == {"a": "hard"}
    attempts = resumed.node("a").attempts
    assert attempts[0].classify
    assert attempts[0].label == "hard"
    assert resumed.node("a").output == "answer a"


PLAN = Path(__file__).parent.parent / "examples" / "plans" / "release_notes.json"


def test_the_cli_labels_each_task_within_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--offline", "--plan", str(PLAN), "--classify"]) == 2
    assert "--classify needs --router calibrated" in capsys.readouterr().err

    flags = ["run", "--offline", "--plan", str(PLAN), "--router", "calibrated", "--classify"]
    assert main([*flags, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for node in result["nodes"]:
        first = node["attempts"][0]
        assert first["classify"], node
        assert first["label"] in {"easy", "hard"}
        assert first["simulated"]
    labels = sum(a["cost_usd"] for n in result["nodes"] for a in n["attempts"] if a["classify"])
    assert float(result["classify_cost_usd"]) == pytest.approx(labels)
    assert float(result["classify_cost_usd"]) > 0

    budget = float(result["cost_usd"]) / 3
    assert main([*flags, "--json", "--budget", f"{budget:.6f}"]) in {0, 1}
    tight = json.loads(capsys.readouterr().out)
    assert float(tight["cost_usd"]) <= budget
    assert main(flags) == 0
    assert "[haiku: " in capsys.readouterr().out  # the label, shown in the node's path


async def test_a_failed_classifier_call_leaves_the_task_unlabelled_and_the_run_going() -> None:
    def flaky(request: ModelRequest) -> str:
        if request.purpose == "classify":
            if request.task_id == "q_0":
                raise ModelAPIError("overloaded", status_code=529, error_type="overloaded_error")
            if request.task_id == "q_1":
                raise ValueError("a client bug")
            return "no idea"
        return f"right answer to {request.task_id}"

    engine = Engine(FunctionModel(flaky), two_tiers(), router=router())
    with anyio.fail_after(30):
        result = await engine.run(workflow("flaky", 3))
    for node in result.nodes:
        first = node.attempts[0]
        assert first.classify
        assert first.label is None
        assert node.output == f"right answer to {node.id}"
    assert result.node("q_0").attempts[0].error_type == "overloaded_error"
    assert result.node("q_1").attempts[0].error_type == "ValueError"
    assert result.node("q_2").attempts[0].error is None  # answered, named no label
