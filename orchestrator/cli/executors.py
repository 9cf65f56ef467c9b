"""``--executor`` and ``--ray-cpus`` of ``run`` and ``resume``: where Python work runs.

``local`` (the default): in this process. ``ray``: as Ray tasks, on the cluster at
``$RAY_ADDRESS``, or on a local Ray started for the command (``--ray-cpus`` CPUs) and shut
down after it (docs/scaling.md). The executor starts before the run: Ray not installed, or
a cluster that cannot be joined, is bad input (exit 2), and nothing has run. The workers
export their spans as this command does (``cli/otel.py`` sets them up as they start).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.cli.otel import WORKER_SETUP, worker_env
from orchestrator.exceptions import UserError
from orchestrator.executor import Executor, LocalExecutor
from orchestrator.executors.ray import RayExecutor
from orchestrator.models.relay import HTTPRelay

__all__ = ["EXECUTORS", "add_flags", "executor_of", "relay_of"]

EXECUTORS = ("local", "ray")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--executor`` and ``--ray-cpus``."""
    parser.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="where Python tasks and tools run: local (this process, the default) or ray "
        "(Ray tasks: the cluster at $RAY_ADDRESS, else a local Ray started for this command)",
    )  # fmt: skip
    parser.add_argument(
        "--ray-cpus", type=_cpus, default=None, metavar="N",
        help="CPUs of a local Ray started for --executor ray (default: all of them)",
    )  # fmt: skip
    parser.add_argument(
        "--ray-model-calls", type=_cpus, nargs="?", const=2, default=None, metavar="ACTORS",
        help="with --executor ray: model calls' HTTP exchanges are made by ACTORS Ray actors "
        "(default 2), each worker reading the API key from its own environment; metering, "
        "budget, limits and retries stay here (docs/scaling.md)",
    )  # fmt: skip


def _cpus(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@asynccontextmanager
async def executor_of(args: argparse.Namespace) -> AsyncIterator[Executor]:
    """The executor the flags name, started for the body and stopped after it.

    Raises:
        UserError: Ray is not installed, or the cluster cannot be joined or started.
    """
    if getattr(args, "executor", "local") == "local":
        for flag in ("ray_cpus", "ray_model_calls"):
            if getattr(args, flag, None) is not None:
                raise UserError(f"--{flag.replace('_', '-')} is for --executor ray")
        yield LocalExecutor()
        return
    quiet = bool(getattr(args, "json", False) or getattr(args, "json_stream", False))
    executor = RayExecutor(
        num_cpus=args.ray_cpus if not os.environ.get("RAY_ADDRESS") else None,
        worker_setup=WORKER_SETUP,
        worker_env=worker_env(getattr(args, "trace", None)),
        log_to_driver=not quiet,  # stdout stays the JSON's
    )
    async with executor:
        yield executor


def relay_of(
    args: argparse.Namespace, executor: Executor | None, *, offline_key: str | None = None
) -> HTTPRelay | None:
    """The relay of ``--ray-model-calls`` (``None``: this process makes the model calls).

    ``offline_key``: the simulator's key (not a secret), which the actors are given.
    """
    actors = getattr(args, "ray_model_calls", None)
    if actors is None or not isinstance(executor, RayExecutor):
        return None
    env = {"ANTHROPIC_API_KEY": offline_key} if offline_key else None
    return executor.relay(actors=actors, env=env)
