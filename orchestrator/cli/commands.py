"""The command implementations behind :mod:`orchestrator.cli`."""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from orchestrator.budget import Meter
from orchestrator.cli.render import ProgressPrinter, render_ladder, render_summary
from orchestrator.engine import Engine, Run, RunConfig
from orchestrator.events import Listener
from orchestrator.exceptions import UserError
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.base import ModelRequest, ModelResponse
from orchestrator.node import render_value
from orchestrator.plan import Plan
from orchestrator.results import RunResult, RunStatus
from orchestrator.store import RunSummary, SQLiteStore, StoredRun, StoreListener
from orchestrator.tiers import TierLadder, load_ladder
from planners.static import load_plan_file

__all__ = [
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
    """Run a plan file, online or against the local simulator, recording it in the store."""
    ladder = load_ladder(args.tiers)
    plan = load_plan_file(args.plan)
    if args.goal:
        plan = plan.model_copy(update={"goal": args.goal})
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    config = _run_config(args)
    result = anyio.run(_run, args, plan, ladder, config, None)
    _report(args, result)
    return 0 if result.status is RunStatus.SUCCEEDED else 1


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a stored run: only what did not finish runs, nothing is paid for twice."""
    ladder = load_ladder(args.tiers)
    if not args.offline and not _has_key(ladder):
        raise UserError(NO_KEY_HELP)
    stored = anyio.run(_load_stored, store_path(args), args.run_id)
    config = _run_config(args)
    result = anyio.run(_run, args, stored.plan, ladder, config, stored)
    _report(args, result)
    return 0 if result.status is RunStatus.SUCCEEDED else 1


def cmd_runs(args: argparse.Namespace) -> int:
    """List stored runs, newest first."""
    runs = anyio.run(_list_runs, store_path(args), args.limit)
    if args.json:
        print(json.dumps([run.model_dump(mode="json") for run in runs], indent=2))
        return 0
    for run in runs:
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.run_id}  {run.status:<16} ${run.cost_usd:>9.4f}  {started}  {run.goal[:50]}")
    if not runs:
        print(f"no runs in {store_path(args)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one stored run (the same JSON as ``run --json``)."""
    stored = anyio.run(_load_stored, store_path(args), args.run_id)
    result = stored.result
    if result is None:  # the process died: show what the store knows
        result = Engine(_NoClient()).prepare(stored.plan, resume=stored).snapshot()
    _report(args, result)
    return 0


def store_path(args: argparse.Namespace) -> Path:
    """The SQLite file: ``--home`` or ``ORCHESTRATOR_HOME`` (default ``~/.orchestrator``)."""
    home = args.home or os.environ.get("ORCHESTRATOR_HOME") or Path.home() / ".orchestrator"
    return Path(home) / "runs.db"


async def _load_stored(path: Path, run_id: str) -> StoredRun:
    store = await SQLiteStore.open(path)
    try:
        return await store.load_run(run_id)
    except KeyError:
        raise UserError(f"no run {run_id!r} in {path}; `orchestrator runs` lists them") from None
    finally:
        await store.aclose()


async def _list_runs(path: Path, limit: int) -> list[RunSummary]:
    store = await SQLiteStore.open(path)
    try:
        return await store.list_runs(limit)
    finally:
        await store.aclose()


class _NoClient:
    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        raise AssertionError("showing a run never calls a model")  # pragma: no cover


def _run_config(args: argparse.Namespace) -> RunConfig:
    try:
        return RunConfig(max_concurrency=args.max_concurrency, budget_usd=args.budget)
    except ValueError as exc:
        raise UserError(f"bad run settings: {exc}") from None


def _has_key(ladder: TierLadder) -> bool:
    names = {tier.api_key_env or "ANTHROPIC_API_KEY" for tier in ladder.tiers}
    return all(os.environ.get(name) for name in names)


async def _run(
    args: argparse.Namespace,
    plan: Plan,
    ladder: TierLadder,
    config: RunConfig,
    resume: StoredRun | None,
) -> RunResult:
    store = await SQLiteStore.open(store_path(args))
    try:
        async with _endpoint(args, ladder) as (client, run_ladder):
            listeners: list[Listener] = [StoreListener(store)]
            if not args.json:
                listeners.append(ProgressPrinter())
            engine = Engine(client, run_ladder, listeners=listeners, config=config)
            run = engine.prepare(plan, resume=resume)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_sigint, run)
                result = await run.execute()
                tg.cancel_scope.cancel()
            return result
    finally:
        await store.aclose()


@asynccontextmanager
async def _endpoint(
    args: argparse.Namespace, ladder: TierLadder
) -> AsyncIterator[tuple[AnthropicClient, TierLadder]]:
    if not args.offline:
        async with AnthropicClient() as client:
            yield client, ladder
        return
    from orchestrator.sim import SimConfig, serve  # noqa: PLC0415  (only offline runs need it)

    sim_config = SimConfig(seed=args.seed, time_scale=0.05, fault_rate=args.fault_rate)
    async with serve(sim_config) as server:
        tiers = tuple(
            t.model_copy(update={"base_url": server.base_url, "api_key_env": None})
            for t in ladder.tiers
        )
        offline = TierLadder(tiers=tiers)
        async with AnthropicClient(api_key=OFFLINE_KEY, seed=args.seed) as client:
            yield client, offline


async def _cancel_on_sigint(run: Run) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            run.cancel()
            return


def _report(args: argparse.Namespace, result: RunResult) -> None:
    document = result.model_dump(mode="json")
    if args.out:
        _write_outputs(Path(args.out), document, result)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(render_summary(result))


def _write_outputs(out: Path, document: dict[str, Any], result: RunResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    if result.output is not None:
        (out / "output.md").write_text(render_value(result.output) + "\n", encoding="utf-8")


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve the simulated Messages API until interrupted."""
    from orchestrator.sim import SimConfig, run_forever  # noqa: PLC0415

    config = SimConfig(
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
    run_forever(config, args.host, args.port)
    return 0
