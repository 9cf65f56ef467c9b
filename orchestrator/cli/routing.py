"""``orchestrator routing``: what calibrated routing has learned from the stored runs."""

from __future__ import annotations

import argparse
import json

import anyio

from orchestrator.cli.render import render_calibration
from orchestrator.cli.stores import opened_store
from orchestrator.routing import CalibratedRouter
from orchestrator.tiers import load_ladder

__all__ = ["cmd_routing"]


def cmd_routing(args: argparse.Namespace) -> int:
    """Show what calibrated routing has learned from the runs in the store."""
    ladder = load_ladder(args.tiers)

    async def learn() -> tuple[CalibratedRouter, int]:
        async with opened_store(args) as store:
            router = CalibratedRouter(seed=0, explore=0.0, warmup_explore=0.0)
            return router, await router.learn_from_store(store, runs=args.runs)

    router, counted = anyio.run(learn)
    rows = router.table(ladder)
    if args.json:
        print(json.dumps({"nodes_counted": counted, "rows": rows}, indent=2))
        return 0
    print(render_calibration(router, ladder, counted))
    return 0
