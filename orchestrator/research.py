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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from orchestrator.budget import Budget
from orchestrator.citations import cited_ids
from orchestrator.dag import validate_plan
from orchestrator.engine import Engine
from orchestrator.events import Listener
from orchestrator.goal import Goal
from orchestrator.models.base import ModelClient
from orchestrator.node import render_value
from orchestrator.plan import CitationsSpec, JudgeSpec, Plan, VerifierSpec
from orchestrator.planners.llm import AttemptHook, LLMPlanner, PlanningReport
from orchestrator.results import RunResult
from orchestrator.routing import Router
from orchestrator.run import Run, RunConfig
from orchestrator.store.base import StoredRun
from orchestrator.telemetry.tracing import Telemetry, current_telemetry
from orchestrator.tiers import TierLadder, default_ladder
from orchestrator.tool import ServerTool, Tool
from orchestrator.tools.corpus import Corpus, corpus_tools
from orchestrator.tools.web import web_tools

__all__ = ["RESEARCH_CONTEXT", "ResearchAgent", "render_report", "research_checks"]

RESEARCH_CONTEXT = (
    "This is a research goal, answered from a document corpus only. Plan several "
    "independent sub-questions that each search the corpus (give them the corpus tools), "
    "then one synthesis task that depends on all of them and writes the report with "
    "sections, then a check of the synthesis. Every answer must cite the passages it "
    'uses by id, as [path#n], and may quote them exactly: "words" [path#n].'
)
"""Context given to the planner with every research goal."""

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
        if judge and "llm_judge" not in kinds:
            verify.append(JudgeSpec(criteria=JUDGE_CRITERIA))
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

    def __post_init__(self) -> None:
        self.tools: list[Tool] = [*corpus_tools(self.corpus), *(web_tools() if self.web else [])]
        self.engine = Engine(
            self.client,
            self.ladder or default_ladder(),
            tools=self.tools,
            listeners=self.listeners,
            config=self.config,
            passages=self.corpus,
            router=self.router,
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

    async def _plan(self, goal: str, budget: Budget, on_attempt: AttemptHook | None) -> Plan:
        planner = LLMPlanner(
            self.client,
            self.engine.ladder,
            tier=self.planner_tier,
            tools=self.tools,
            max_tasks=self.max_tasks,
            budget=budget,
            cache=self.config.cache if self.config else True,
        )
        try:
            with self._telemetry().planning("research"):  # the conventions' plan span
                plan = await planner.plan(goal, context=RESEARCH_CONTEXT, on_attempt=on_attempt)
        finally:
            self.last_planning = planner.last_report
        corpus_names = [t.name for t in self.tools if not isinstance(t, ServerTool)]
        web_names = [t.name for t in self.tools if isinstance(t, ServerTool)]
        return research_checks(plan, tools=corpus_names, web_tools=web_names, judge=self.judge)

    async def _plan_in_run(self, goal: str, budget: Budget, on_attempt: AttemptHook) -> Plan:
        return await self._plan(goal, budget, on_attempt)

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
        work = Goal(goal, self._plan_in_run)
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
