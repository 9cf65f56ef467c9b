"""The command implementations behind :mod:`orchestrator.cli`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
from pydantic import ValidationError

from orchestrator.cli.approve import exit_code, tool_approvals
from orchestrator.cli.executors import executor_of, relay_of
from orchestrator.cli.home import store_path
from orchestrator.cli.mcp import mcp_servers
from orchestrator.cli.otel import session
from orchestrator.cli.render import (
    LiveProgress,
    ProgressPrinter,
    render_ladder,
    render_mermaid,
    render_summary,
    render_tree,
)
from orchestrator.cli.stores import (
    list_stored,
    load_stored,
    open_store,
    shared_rate_limits,
    store_name,
)
from orchestrator.cli.stream import json_stream
from orchestrator.engine import Engine, new_run_id, stored_result
from orchestrator.events import Listener
from orchestrator.exceptions import (
    BudgetExhausted,
    ModelAPIError,
    PlanValidationError,
    RunLeased,
    UserError,
)
from orchestrator.executor import Executor
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.node import render_value
from orchestrator.plan import Plan
from orchestrator.planners.llm import PlanningReport
from orchestrator.planners.static import load_plan_file
from orchestrator.research import ResearchAgent, render_report
from orchestrator.results import RunResult
from orchestrator.routing import CalibratedRouter, Router, TaskClassifier
from orchestrator.run import Run, RunConfig
from orchestrator.store import HeldLease, RunStore, StoreListener, hold_lease
from orchestrator.telemetry import current_telemetry, write_timeline
from orchestrator.tiers import TierLadder, load_ladder
from orchestrator.tools.corpus import CORPUS_TOOL_NAMES, Corpus, corpus_tools

__all__ = [
    "cmd_plan",
    "cmd_resume",
    "cmd_run",
    "cmd_runs",
    "cmd_show",
    "cmd_sim_serve",
    "cmd_tiers",
    "cmd_validate",
    "store_path",
]

OFFLINE_KEY = "offline-simulator"  # the local server ignores keys; this one is not secret
NO_KEY_HELP = (
    "no ANTHROPIC_API_KEY is set. Get a key at https://console.anthropic.com/settings/keys "
    "and export ANTHROPIC_API_KEY, or run with --offline to use the local simulator "
    "(simulated answers, clearly marked)"
)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a plan file, printing every problem (exit 2) or a one-line summary (exit 0)."""
    plan = load_plan_file(args.plan)
    from orchestrator.dag import validate_plan  # noqa: PLC0415  (keeps CLI start-up light)

    try:
        graph = validate_plan(plan)
    except UserError as exc:
        raise UserError(f"{args.plan}: {exc}") from None
    print(f"{args.plan}: valid, {len(plan.tasks)} tasks, {graph.number_of_edges()} dependencies")
    return 0


def cmd_tiers(args: argparse.Namespace) -> int:
    """Print the ladder (after the tiers file, if any)."""
    ladder = load_ladder(args.tiers)
    if args.json:
        print(ladder.model_dump_json(indent=2))
    else:
        print(render_ladder(ladder))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a goal (research mode: plan, then execute) or a plan file; record it in the store."""
    ladder = load_ladder(args.tiers)
    plan = None
    if args.plan:
        plan = load_plan_file(args.plan)
        if args.goal:
            plan = plan.model_copy(update={"goal": args.goal})
    elif not args.goal:
        raise UserError("give a GOAL to research, or --plan FILE to run a plan file")
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    config = _run_config(args)
    with session(args):  # logs, spans and metrics; flushed on the way out
        outcome = anyio.run(_run, args, plan, ladder, config, None)
    if outcome is None:
        return 1
    _report(args, *outcome)
    return exit_code(outcome[0].status)


def cmd_plan(args: argparse.Namespace) -> int:
    """Plan a goal and print the plan (tree, mermaid or JSON); nothing is executed."""
    ladder = load_ladder(args.tiers)
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    planned = anyio.run(_plan_only, args, ladder)
    if planned is None:
        return 1
    plan, report = planned
    if args.format == "json":
        print(plan.model_dump_json(indent=2))
    elif args.format == "mermaid":
        print(render_mermaid(plan))
    else:
        print(render_tree(plan))
    if report is not None and args.format != "json":
        print(
            f"\nplanned on {report.tier} in {report.rounds} round(s), ${report.cost_usd:.4f}"
            + (" (SIMULATED planner: local simulator, not a model)" if report.simulated else ""),
            file=sys.stderr,
        )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a stored run: only what did not finish runs, nothing is paid for twice.

    The run keeps the budget it was started with (what it spent counts against it);
    ``--budget`` replaces it, as the most the whole run may spend, earlier spend included.
    """
    ladder = load_ladder(args.tiers)
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    stored = anyio.run(load_stored, args, args.run_id)  # it exists (else exit 2)
    config = _run_config(args)
    with session(args):  # the run is loaded again once this process holds its lease
        outcome = anyio.run(_run, args, stored.plan, ladder, config, stored.summary.run_id)
    if outcome is None:
        return 1
    _report(args, *outcome)
    return exit_code(outcome[0].status)


def cmd_runs(args: argparse.Namespace) -> int:
    """List stored runs, newest first."""
    runs = anyio.run(list_stored, args, args.limit)
    if args.json:
        print(json.dumps([run.model_dump(mode="json") for run in runs], indent=2))
        return 0
    for run in runs:
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.run_id}  {run.status:<16} ${run.cost_usd:>9.4f}  {started}  {run.goal[:50]}")
    if not runs:
        print(f"no runs in {store_name(args)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one stored run (the same JSON as ``run --json``)."""
    stored = anyio.run(load_stored, args, args.run_id)
    result = stored_result(stored)  # the process died: what the store knows; no tools needed
    _report(args, result, None)
    if args.timeline:
        try:
            path = write_timeline(result, args.timeline)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc)) from None
        print(f"timeline written to {path}", file=sys.stderr)
    return 0


_FLAGS = {"max_concurrency": "--max-concurrency", "budget_usd": "--budget", "replan": "--replan"}
BATCH_CONCURRENCY = 1000
"""``--max-concurrency`` with ``--batch``: nodes in flight, whose calls one batch holds."""


def _run_config(args: argparse.Namespace) -> RunConfig:
    batch = getattr(args, "batch", False)
    concurrency = args.max_concurrency
    if concurrency is None:
        concurrency = BATCH_CONCURRENCY if batch else 16
    try:
        return RunConfig(
            max_concurrency=concurrency,
            budget_usd=args.budget,
            cache=not getattr(args, "no_cache", False),
            batch=batch,
            replan=getattr(args, "replan", 0),
            approve_tools=tool_approvals(args),
        )
    except ValidationError as exc:  # one line per setting, named as the flag is
        problems = "; ".join(
            f"{_FLAGS.get(str(e['loc'][0]), e['loc'][0])} ({e['loc'][0]}): {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise UserError(f"bad run settings: {problems}") from None


def _has_key(ladder: TierLadder) -> bool:
    names = {tier.api_key_env or "ANTHROPIC_API_KEY" for tier in ladder.tiers}
    return all(os.environ.get(name) for name in names)


async def _run(
    args: argparse.Namespace,
    plan: Plan | None,
    ladder: TierLadder,
    config: RunConfig,
    resume_id: str | None,
) -> tuple[RunResult, Corpus | None] | None:
    """Plan (when ``plan`` is None: research mode, planning inside the run) and execute.

    The process holds the run's lease throughout (a second ``resume`` of it exits 2 naming
    this process); a resumed run is read from the store once the lease is held, so it
    starts from what its previous owner left, never from an older copy.
    """
    store = await open_store(args)
    runs: list[Run] = []  # the run, once prepared: stopped if the lease is lost

    def lost(_: RunLeased) -> None:
        for run in runs:
            run.cancel()

    try:
        async with hold_lease(store, resume_id or new_run_id(), on_lost=lost) as lease:
            outcome = await _run_held(args, plan, ladder, config, store, lease, runs)
        if lease.lost_to is not None:
            raise lease.lost_to  # stopped: another process owns the run now (exit 2)
        return outcome
    finally:
        await store.aclose()


async def _run_held(  # noqa: PLR0917  (the arguments of _run, and what it opened)
    args: argparse.Namespace,
    plan: Plan | None,
    ladder: TierLadder,
    config: RunConfig,
    store: RunStore,
    lease: HeldLease,
    runs: list[Run],
) -> tuple[RunResult, Corpus | None]:
    run_id = lease.run_id
    resume = None
    if args.command == "resume":  # read now that this process owns it
        resume = await store.load_run(run_id)
        plan = resume.plan
        if args.budget is None:  # the run's budget holds; --budget replaces it
            config = config.model_copy(update={"budget_usd": resume.budget_usd})
    async with (
        mcp_servers(args) as servers,  # started before the run, stopped after it
        executor_of(args) as executor,  # --executor ray: Ray joined or started first
        _endpoint(args, ladder, executor) as (client, run_ladder),
        _progress(args) as progress,
        current_telemetry().run_trace(),  # planning and the run: one trace
    ):
        listeners: list[Listener] = [StoreListener(store, lease=lease)]  # fenced by it
        if progress is not None:
            listeners.append(progress)
        router = await _router(args, store)
        corpus = None
        if plan is None or _uses_corpus(plan):
            corpus = await _load_corpus(args)
        if plan is None:  # the run is recorded before the planner's first call
            assert corpus is not None
            agent = ResearchAgent(
                client, corpus, run_ladder, config=config, listeners=listeners,
                planner_tier=getattr(args, "planner_tier", None),
                judge=getattr(args, "judge", False), web=getattr(args, "web", False),
                router=router, extra_tools=servers, executor=executor,
            )  # fmt: skip
            goal = resume.summary.goal if resume is not None else args.goal
            run = agent.start(goal, resume=resume, run_id=run_id)
        else:
            tools = corpus_tools(corpus) if corpus is not None else []
            engine = Engine(
                client, run_ladder, listeners=listeners, config=config,
                tools=[*tools, *servers], passages=corpus, router=router, executor=executor,
            )  # fmt: skip
            run = engine.prepare(plan, resume=resume, run_id=run_id)
        runs.append(run)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_sigint, run)
            result = await (json_stream(run) if args.json_stream else run.execute())
            tg.cancel_scope.cancel()
        return result, corpus


async def _router(args: argparse.Namespace, store: RunStore) -> Router | None:
    """``--router calibrated``: a router that has learned from every run in the store."""
    classify = getattr(args, "classify", False)
    if getattr(args, "router", "rules") != "calibrated":
        if classify:
            raise UserError("--classify needs --router calibrated (the rules read no labels)")
        return None
    classifier = TaskClassifier() if classify else None
    router = CalibratedRouter(seed=args.seed, classifier=classifier)
    counted = await router.learn_from_store(store)
    _note(args, f"routing: calibrated from {counted} verified nodes of past runs")
    return router


async def _plan_only(
    args: argparse.Namespace, ladder: TierLadder
) -> tuple[Plan, PlanningReport | None] | None:
    async with _endpoint(args, ladder) as (client, run_ladder):
        corpus = await _load_corpus(args)
        agent = ResearchAgent(
            client, corpus, run_ladder, planner_tier=args.planner_tier, judge=args.judge,
            web=args.web,
        )  # fmt: skip
        try:
            plan = await agent.plan(args.goal)
        except (PlanValidationError, ModelAPIError, BudgetExhausted) as exc:
            print(f"orchestrator: planning failed: {exc}", file=sys.stderr)
            return None
        return plan, agent.last_planning


def _uses_corpus(plan: Plan) -> bool:
    names = set(CORPUS_TOOL_NAMES)
    return any(
        names & set(task.tools) or any(spec.kind == "citations" for spec in task.verify)
        for task in plan.tasks
    )


async def _load_corpus(args: argparse.Namespace) -> Corpus:
    if args.corpus:
        root = Path(args.corpus)
        if not await anyio.Path(root).is_dir():
            raise UserError(f"--corpus {args.corpus}: not a directory")
        corpus = await Corpus.load(root)
    else:
        corpus = await Corpus.load_default()
    if len(corpus) == 0:
        raise UserError(f"--corpus {args.corpus}: no readable .md, .txt, .html or .pdf files")
    _note(args, f"corpus: {corpus.name}, {len(corpus)} passages")
    return corpus


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


@asynccontextmanager
async def _progress(args: argparse.Namespace) -> AsyncIterator[Listener | None]:
    if args.json:
        yield None
    elif sys.stderr.isatty():
        with LiveProgress() as live:
            yield live
    else:
        yield ProgressPrinter()


@asynccontextmanager
async def _endpoint(
    args: argparse.Namespace, ladder: TierLadder, executor: Executor | None = None
) -> AsyncIterator[tuple[AnthropicClient, TierLadder]]:
    relay = relay_of(args, executor, offline_key=OFFLINE_KEY if args.offline else None)
    # Processes sharing a home, or a --store database, share each tier's rate limits.
    home = shared_rate_limits(args)
    if not args.offline:
        async with AnthropicClient(shared_rate_limits=home, relay=relay) as client:
            yield client, ladder
        return
    sim = _simulator()

    # Latency at 5% of the modelled speed; an injected "slow" answer takes 8 s, past the
    # client's 6 s timeout (the longest honest offline answer takes under 5 s), so a slow
    # fault costs seconds, not the 30 s and 600 s of the real defaults.
    sim_config = sim.SimConfig(
        seed=args.seed, time_scale=0.05, fault_rate=args.fault_rate, slow_response_s=8.0
    )
    async with sim.serve(sim_config) as server:
        offline = ladder.with_endpoint(server.base_url)
        # each offline run has its own simulator on a fresh port: one label for them all
        client = AnthropicClient(
            api_key=OFFLINE_KEY,
            seed=args.seed,
            timeout_s=6.0,
            shared_rate_limits=home,
            endpoint_label="offline-simulator",
            batch_collect_s=0.05,  # the simulator's batches end in simulated time, scaled
            batch_poll_s=0.05,
            relay=relay,
        )
        async with client:
            yield client, offline


async def _cancel_on_sigint(run: Run) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            run.cancel()
            return


def _report(args: argparse.Namespace, result: RunResult, corpus: Corpus | None) -> None:
    document = result.model_dump(mode="json")
    report = render_report(result, corpus) if corpus is not None else None
    if args.out:
        _write_outputs(Path(args.out), document, result, report)
    if getattr(args, "json_stream", False):
        return  # stdout carried the run's events, its result last
    if args.json:
        print(json.dumps(document, indent=2))
    elif report is not None:
        print(report)
        print(render_summary(result, show_output=False))
    else:
        print(render_summary(result))


def _write_outputs(
    out: Path, document: dict[str, Any], result: RunResult, report: str | None
) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
        if report is not None:
            (out / "report.md").write_text(report, encoding="utf-8")
        elif result.output is not None:
            (out / "output.md").write_text(render_value(result.output) + "\n", encoding="utf-8")
    except OSError as exc:  # the run is stored already: say where it is
        raise UserError(
            f"--out {out}: cannot write ({exc.strerror}); the run is stored: "
            f"`orchestrator show {result.run_id} --out DIR`"
        ) from None


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve the simulated Messages API until interrupted."""
    sim = _simulator()
    config = sim.SimConfig(
        seed=args.seed,
        time_scale=args.time_scale,
        fault_rate=args.fault_rate,
        request_log=Path(args.request_log) if args.request_log else None,
    )
    print(
        f"Simulated Messages API on http://{args.host}:{args.port} (answers are simulated; "
        "see docs/sim.md). Use: ANTHROPIC_BASE_URL=http://"
        f"{args.host}:{args.port} ANTHROPIC_API_KEY=anything orchestrator run ...",
        flush=True,
    )
    try:
        sim.run_forever(config, args.host, args.port)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise UserError(
            f"--host {args.host} --port {args.port}: cannot listen ({exc.strerror or exc})"
        ) from None
    return 0


def _simulator() -> ModuleType:
    """The simulator package (``--offline``, ``sim serve``), or a message naming the extra."""
    try:
        import orchestrator_sim  # noqa: PLC0415  (only offline runs need it)
    except ImportError as exc:
        raise UserError(
            f"the local simulator is not installed ({exc.msg}): "
            "pip install 'tiered-orchestrator[sim]'"
        ) from None
    return orchestrator_sim
