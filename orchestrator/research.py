"""The research-synthesis agent: a goal becomes a cited Markdown report.

Goal -> :class:`~orchestrator.planners.llm.LLMPlanner` (with the corpus tools in its
catalogue) -> a plan of independent sub-questions, a synthesis and a check -> each node on
the cheapest adequate tier, researching with ``search_corpus`` / ``read_passage`` ->
verification -> a report whose claims cite passages as ``[path#n]``, with a references
section.

What is verified (added to the planned tasks by :func:`research_checks`):

* every task that may use the corpus tools, and every task downstream of one, must cite at
  least one passage; every cited id must exist and every quote must be in its passage
  (:class:`~orchestrator.citations.Citations`, checked against the corpus itself);
* the planner's required sections must be present and no answer may be empty or a refusal;
* optionally (``judge=True``) an LLM judge one tier above the attempt.

A failing node escalates one tier up, as everywhere else in the engine.

Shared passages (``ResearchAgent(shared=k)``, off by default): research tasks planned
side by side search the same corpus for the same goal, so they read many of the same
passages. With ``shared``, the passages two or more of them (or the goal and one of them)
find among their best hits are given to every research task first, word for word the same
(:func:`shared_passages`); the engine puts a prompt-cache breakpoint after them, so the
first task writes them to the cache and the others, and every later turn of each tool
loop, read them at a tenth of the input price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from orchestrator.budget import Budget
from orchestrator.citations import cited_ids
from orchestrator.dag import validate_plan
from orchestrator.engine import Engine, Workload
from orchestrator.events import Listener
from orchestrator.executor import Executor
from orchestrator.goal import Goal
from orchestrator.models.base import ModelClient
from orchestrator.node import Node, Prompt, render_value
from orchestrator.plan import CitationsSpec, JudgeSpec, Plan, VerifierSpec
from orchestrator.planners.llm import AttemptHook, LLMPlanner, PlanningReport
from orchestrator.results import RunResult
from orchestrator.routing import Router
from orchestrator.run import Run, RunConfig
from orchestrator.store.base import StoredRun
from orchestrator.telemetry.tracing import Telemetry, current_telemetry
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tool import ServerTool, Tool, Toolset
from orchestrator.tools.corpus import CORPUS_TOOL_NAMES, Corpus, Passage, corpus_tools
from orchestrator.tools.web import web_tools
from orchestrator.wire import shared_inputs_prompt

__all__ = [
    "PASSAGES_INPUT",
    "RESEARCH_CONTEXT",
    "ResearchAgent",
    "render_report",
    "research_checks",
    "shared_passages",
    "with_shared_passages",
]

RESEARCH_CONTEXT = (
    "This is a research goal, answered from a document corpus only. Plan several "
    "independent sub-questions that each search the corpus (give them the corpus tools), "
    "then one synthesis task that depends on all of them and writes the report with "
    "sections, then a check of the synthesis. Every answer must cite the passages it "
    'uses by id, as [path#n], and may quote them exactly: "words" [path#n].'
)
"""Context given to the planner with every research goal."""

PASSAGES_INPUT = "passages"
"""The name of the input block that holds the passages research tasks share."""

JUDGE_CRITERIA = (
    "Every claim is supported by the cited passages; nothing contradicts its source; the "
    "answer does what the task asks."
)


def research_checks(
    plan: Plan, *, tools: Sequence[str], web_tools: Sequence[str] = (), judge: bool = False
) -> Plan:
    """Return ``plan`` with the research verification added to its tasks.

    Tasks that may call any of the corpus ``tools``, and every task downstream of one, get
    a ``citations`` check; with ``judge``, every task also gets an LLM judge. A task that
    may also use ``web_tools`` may cite web pages instead of passages, so its check only
    requires that the passages it cites exist and are quoted right. Existing checks are
    kept, and a task that already has a check of a kind is not given a second one.
    """
    tool_names = set(tools)
    web_names = set(web_tools)
    graph = validate_plan(plan)
    researching = {task.id for task in plan.tasks if tool_names & set(task.tools)}
    cited = set(researching)
    for task_id in researching:
        cited |= nx.descendants(graph, task_id)
    tasks = []
    for task in plan.tasks:
        verify: list[VerifierSpec] = list(task.verify)
        kinds = {spec.kind for spec in verify}
        if task.id in cited and "citations" not in kinds:
            on_web = bool(web_names & set(task.tools))
            verify.append(CitationsSpec(min_citations=0 if on_web else 1))
        if judge and "llm_judge" not in kinds:  # the cited passages are its evidence; a
            # task's inputs are other tasks' answers (shared passages are not shown)
            verify.append(JudgeSpec(criteria=JUDGE_CRITERIA, inputs=bool(task.depends_on)))
        tasks.append(task.model_copy(update={"verify": tuple(verify)}))
    return plan.model_copy(update={"tasks": tasks})


@dataclass
class ResearchAgent:
    """Plans a research goal over a corpus and runs it on the tier ladder.

    Args:
        client: The model client (the Anthropic client, online or against the simulator).
        corpus: The documents to research (``Corpus.default()`` is CPython's own docs).
        ladder: The tiers; default: the built-in ladder.
        config: Run settings (concurrency, budget, ...).
        listeners: Event listeners (progress, store, tracing).
        planner_tier: Tier to plan on; default: the planner's (cheapest with reasoning 2+).
        max_tasks: Largest plan accepted.
        judge: Also have an LLM judge (one tier up) check every answer.
        web: Also offer Anthropic's server-side web search and fetch (real API only; the
            simulator accepts them and never calls them).
        router: Picks each node's first tier; default: the capability rules
            (:class:`~orchestrator.routing.CapabilityRouter`).
        shared: Most passages the research tasks of a plan are given to share, first in
            their prompts (:func:`with_shared_passages`); ``0`` (the default) gives none,
            and each task reads only what it searches for. Shared passages are served
            from the prompt cache to every task but the first, but they are sent with
            every call of every research task: they pay only when the tasks would read
            them anyway (docs/benchmarks.md, "Prompt caching", measures both).
        extra_tools: More tools for the planner's catalogue and the tasks (MCP servers,
            say: their tools are listed once the run has started them).
        executor: Where the corpus tools' calls run (see :class:`~orchestrator.Engine`).
    """

    client: ModelClient
    corpus: Corpus
    ladder: TierLadder | None = None
    config: RunConfig | None = None
    listeners: Sequence[Listener] = ()
    planner_tier: str | None = None
    max_tasks: int = 12
    judge: bool = False
    web: bool = False
    router: Router | None = None
    shared: int = 0
    extra_tools: Sequence[Tool | Toolset] = ()
    executor: Executor | None = None

    def __post_init__(self) -> None:
        web = web_tools() if self.web else []
        self.tools: list[Tool | Toolset] = [*corpus_tools(self.corpus), *web, *self.extra_tools]
        self.engine: Engine = _ResearchEngine(
            self.corpus,
            self.shared,
            self.client,
            self.ladder or default_ladder(),
            tools=self.tools,
            listeners=self.listeners,
            config=self.config,
            passages=self.corpus,
            router=self.router,
            executor=self.executor,
        )
        self.last_planning: PlanningReport | None = None

    async def plan(self, goal: str) -> Plan:
        """Plan ``goal`` (repairing invalid plans) and add the research checks.

        Planning spends within the configured budget. To plan *inside* a run (recorded,
        resumable, one budget for planning and the rest) use :meth:`start` instead.

        Raises:
            PlanValidationError: If the planner never produced a valid plan.
            ModelAPIError: If the API kept failing.
            BudgetExhausted: If the budget cannot cover planning.
        """
        budget = Budget(self.config.budget_usd if self.config else None)
        return await self._plan(goal, budget, None)

    async def _plan(
        self, goal: str, budget: Budget, on_attempt: AttemptHook | None, brief: str = ""
    ) -> Plan:
        planner = LLMPlanner(
            self.client,
            self.engine.ladder,
            tier=self.planner_tier,
            tools=self.tools,
            max_tasks=self.max_tasks,
            budget=budget,
            cache=self.config.cache if self.config else True,
            batch=self.config.batch if self.config else False,  # work that can wait, planned so
        )
        try:
            with self._telemetry().planning("research"):  # the conventions' plan span
                context = f"{RESEARCH_CONTEXT}\n\n{brief}" if brief else RESEARCH_CONTEXT
                plan = await planner.plan(goal, context=context, on_attempt=on_attempt)
        finally:
            self.last_planning = planner.last_report
        corpus_names = list(CORPUS_TOOL_NAMES)
        web_names = [t.name for t in self.tools if isinstance(t, ServerTool)]
        return research_checks(plan, tools=corpus_names, web_tools=web_names, judge=self.judge)

    async def _plan_in_run(self, goal: str, budget: Budget, on_attempt: AttemptHook) -> Plan:
        return await self._plan(goal, budget, on_attempt)

    async def _revise_in_run(
        self, goal: str, brief: str, budget: Budget, on_attempt: AttemptHook
    ) -> Plan:
        """The plan revised after tasks failed for good (``replan``; the brief says how)."""
        return await self._plan(goal, budget, on_attempt, brief)

    def start(
        self,
        goal: str,
        *,
        run_id: str | None = None,
        resume: StoredRun | None = None,
        **overrides: Any,
    ) -> Run:
        """A run that plans ``goal`` and then executes the plan, all within its budget.

        The run is recorded (by a store listener) before the planner's first call; if
        planning fails, the run ends ``failed`` (or ``budget_exhausted``) with what planning
        cost, and can be resumed, which plans again.
        """
        work = Goal(goal, self._plan_in_run, self._revise_in_run)
        return self.engine.prepare(work, run_id=run_id, resume=resume, **overrides)

    def prepare(self, plan: Plan, *, run_id: str | None = None, **overrides: Any) -> Run:
        """A run of ``plan`` (planning cost, if any, counted in its result and budget)."""
        planning = self.last_planning.record() if self.last_planning else None
        return self.engine.prepare(plan, run_id=run_id, planning=planning, **overrides)

    async def run(self, goal: str) -> RunResult:
        """Plan and execute ``goal`` (one trace: planning, then the run); returns the result."""
        async with self._telemetry().run_trace():
            return await self.start(goal).execute()

    def _telemetry(self) -> Telemetry:
        return self.engine.telemetry or current_telemetry()


class _ResearchEngine(Engine):
    """An engine whose plans' research tasks read the passages they share first."""

    def __init__(self, corpus: Corpus, shared: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._corpus = corpus
        self._shared = shared

    def nodes_of(
        self, work: Plan | Workload, inputs: Mapping[str, Any]
    ) -> tuple[Plan, list[Node], nx.DiGraph[str]]:
        plan, nodes, graph = super().nodes_of(work, inputs)
        if isinstance(work, Plan) and self._shared:
            least = min(tier.cache_min_tokens for tier in self.ladder.tiers)
            nodes = with_shared_passages(plan, nodes, self._corpus, self._shared, least)
        return plan, nodes, graph


def shared_passages(
    corpus: Corpus, queries: Sequence[str], k: int, depth: int = 10
) -> list[Passage]:
    """The passages several of ``queries`` find: the ones research tasks would each read.

    Each query's best ``depth`` hits are counted; the passages two or more queries find,
    most queries first, then best ranked, at most ``k``.
    """
    found: dict[str, tuple[int, int]] = {}
    for query in queries:
        for rank, hit in enumerate(corpus.search(query, depth)):
            count, best = found.get(hit.passage.id, (0, rank))
            found[hit.passage.id] = (count + 1, min(best, rank))
    ids = sorted((pid for pid, (count, _) in found.items() if count > 1),
                 key=lambda pid: (-found[pid][0], found[pid][1], pid))  # fmt: skip
    return [corpus.passage(pid) for pid in ids[:k]]


def with_shared_passages(
    plan: Plan, nodes: list[Node], corpus: Corpus, k: int, min_tokens: int = 0
) -> list[Node]:
    """``nodes``, the research tasks among them given the passages they share, first.

    Research tasks are the ones that may search the corpus; with fewer than two there is
    nothing to share. The passages (:func:`shared_passages` of the goal and the tasks'
    instructions) go first in each one's prompt, before its own inputs and instruction, as
    a :class:`~orchestrator.node.Prompt`'s shared part, so the engine marks a cache
    breakpoint after them. Shorter than ``min_tokens`` (the smallest prefix any tier
    caches), they could only be paid in full by every task, and none are given.
    """
    research = [n for n in nodes if n.prompt is None and set(CORPUS_TOOL_NAMES) & set(n.task.tools)]
    if len(research) < 2:
        return nodes
    queries = [plan.goal, *(n.task.instruction for n in research)]
    text = "\n\n".join(corpus.format_passage(p.id) for p in shared_passages(corpus, queries, k))
    head, _ = shared_inputs_prompt("", [(PASSAGES_INPUT, text)])
    if not text or len(head) // 4 < min_tokens:  # the engine's estimate: 4 characters a token
        return nodes
    given = {n.task.id: _reading(n, text) for n in research}
    return [given.get(n.task.id, n) for n in nodes]


def _reading(node: Node, passages: str) -> Node:
    instruction = node.task.instruction

    def prompt(arguments: Mapping[str, Any]) -> Prompt:
        inputs = [(name, render_value(value)) for name, value in arguments.items()]
        shared, rest = shared_inputs_prompt(instruction, [(PASSAGES_INPUT, passages)], inputs)
        return Prompt(shared=shared, task=rest)

    return replace(node, prompt=prompt)


def render_report(result: RunResult, corpus: Corpus, *, title: str | None = None) -> str:
    """The run's output as a Markdown report with a references section.

    Every passage the output cites is listed with its document and opening words, so a
    reader can check each claim; a simulated run says so at the top.
    """
    body = render_value(result.output) if result.output is not None else ""
    lines = [f"# {title or result.goal}", ""]
    if result.simulated:
        lines += [
            "> **Simulated.** This report was written by the local Messages-API simulator "
            "(`orchestrator_sim`), not by a model: its wording is templated and carries no "
            "knowledge. The citations are real passages of the corpus.",
            "",
        ]
    if not body:
        lines += [f"_No report: the run ended {result.status}._", ""]
        return "\n".join(lines)
    lines += [body.strip(), "", "## References", ""]
    for passage_id in cited_ids(body):
        text = corpus.passage_text(passage_id)
        opening = " ".join((text or "").split())[:160] or "(not in the corpus)"
        lines.append(f"- `[{passage_id}]` {opening}")
    return "\n".join(lines) + "\n"
