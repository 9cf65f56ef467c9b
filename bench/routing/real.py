"""Routing on real outcomes: RouteLLM's per-prompt results through the real ``Engine``.

Reads ``../shared/data/routellm`` (RouteLLM's MMLU and GSM8K outcomes of a weak and a
strong model, Apache-2.0; never copied into the project) and runs every row as a task
through the ``Engine`` with the public API, on a two-tier ladder priced like Haiku 5.5 and
Opus 5.5. On the weak tier a task is answered correctly iff the weak model (Mixtral-8x7B)
answered it correctly, on the strong tier iff the strong model (GPT-4) did. Each answer
goes through a verifier that catches a wrong answer with probability ``--catch`` (0.5) and
never rejects a right one, so a rejected weak answer escalates to the strong tier.

Policies: always weak, always strong (the rules, every task declared with the same needs,
which only the strong tier covers), ``CalibratedRouter`` (trained online on the dev split,
then on the test stream), and the oracle (the cheapest tier that is right). Reported per
split: $ per 1,000 tasks, true accuracy, silent wrong answers (wrong, and accepted).

Run from the repository root (the project's venv is enough)::

    .venv/bin/python bench/routing/real.py                 # dev and test
    .venv/bin/python bench/routing/real.py --split dev --limit 500

Design and tune on dev only; report both (../shared/data/routellm/README.md).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from orchestrator import (
    CalibratedRouter,
    CapabilityRouter,
    Engine,
    Needs,
    RouteDecision,
    RouteRequest,
    RunConfig,
    TierLadder,
    Verdict,
    Workflow,
    default_ladder,
)
from orchestrator.models.base import ModelRequest
from orchestrator.testing import FunctionModel
from orchestrator.verifier import VerificationContext

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "routellm"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
DEV_SUBJECTS = 28  # the first 28 subject files, sorted by name, plus GSM8K (README.md)
NEEDS = Needs(reasoning=3)  # every task alike: only the strong tier covers it
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True, slots=True)
class Row:
    """One real prompt and whether each model answered it correctly."""

    task_id: str
    prompt: str
    weak_ok: bool
    strong_ok: bool


def load(split: str, data: Path = DATA) -> list[Row]:
    """The rows of ``split`` (``dev`` or ``test``), decontaminated as RouteLLM's evals are."""
    contaminated = {
        json.loads(line)["eval_prompt"]
        for line in (data / "mmlu_contaminated_prompts.jsonl").read_text().splitlines()
        if line.strip()
    }
    subjects = sorted((data / "mmlu").glob("mmlu_*.csv"))
    chosen = subjects[:DEV_SUBJECTS] if split == "dev" else subjects[DEV_SUBJECTS:]
    rows: list[Row] = []
    if split == "dev":
        rows += _read(data / "gsm8k.csv", "gsm8k", set())
    for path in chosen:
        rows += _read(path, f"mmlu.{path.stem.removeprefix('mmlu_')}", contaminated)
    return rows


def _read(path: Path, prefix: str, drop: set[str]) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Row(f"{prefix}.{index}", record["prompt"], _true(record[WEAK]), _true(record[STRONG]))
            for index, record in enumerate(csv.DictReader(handle))
            if record["prompt"] not in drop
        ]


def _true(cell: str) -> bool:
    return cell.strip().lower() in ("true", "1", "1.0")


def two_tiers() -> TierLadder:
    """Haiku and Opus of the built-in ladder: the weak and the strong tier."""
    ladder = default_ladder()
    return TierLadder(tiers=(ladder.get("haiku"), ladder.get("opus")))


class Model:
    """A model double whose answers are right or wrong as the real models' were."""

    def __init__(self, rows: dict[str, Row]) -> None:
        self.rows = rows

    def __call__(self, request: ModelRequest) -> str:
        row = self.rows[request.task_id or ""]
        right = row.weak_ok if request.tier.name == "haiku" else row.strong_ok
        return f"{'RIGHT' if right else 'WRONG'} answer to {row.task_id}"


class CatchesWrong:
    """Rejects a wrong answer with probability ``catch`` (a fixed draw per task and tier)."""

    name = "catch"

    def __init__(self, catch: float, seed: int) -> None:
        self.catch, self.seed = catch, seed

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        if str(output).startswith("RIGHT") or _draw(context.task.id, context.tier, self.seed) >= (
            self.catch
        ):
            return Verdict(passed=True, verifier=self.name)
        return Verdict(passed=False, reason="the check caught a wrong answer", verifier=self.name)


def _prompt(prompt: str) -> Any:
    def text() -> str:
        return prompt

    return text


def _draw(task_id: str, tier: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{task_id}:{tier}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Fixed:
    """Starts every task on one tier."""

    def __init__(self, index: int) -> None:
        self.index = index

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        return RouteDecision(self.index, self.index == len(ladder) - 1, "fixed")


class Oracle:
    """Starts each task on the cheapest tier that answers it right (the strong one if none)."""

    def __init__(self, rows: dict[str, Row]) -> None:
        self.rows = rows

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        row = self.rows[request.task_id]
        return RouteDecision(0 if row.weak_ok else 1, not row.weak_ok, "oracle")


@dataclass(slots=True)
class Outcome:
    policy: str
    split: str
    tasks: int
    cost_usd: Decimal
    right: int
    silent_wrong: int
    strong_starts: int

    def line(self) -> str:
        per_k = self.cost_usd / self.tasks * 1000
        return (
            f"| {self.split} | {self.policy} | {per_k:.4f} | {self.right / self.tasks:.1%} "
            f"| {self.silent_wrong / self.tasks:.1%} | {self.strong_starts / self.tasks:.1%} |"
        )


async def run_policy(
    name: str, router: Any, rows: Sequence[Row], split: str, *, catch: float, seed: int
) -> Outcome:
    """Every row as a task through the Engine with ``router``; what it cost and got right."""
    by_id = {row.task_id: row for row in rows}
    engine = Engine(
        FunctionModel(Model(by_id)),
        two_tiers(),
        router=router,
        config=RunConfig(max_concurrency=64),
    )
    verifier = CatchesWrong(catch, seed)
    workflow = Workflow(f"routellm {split}")
    for row in rows:
        workflow.llm(name=row.task_id, needs=NEEDS, verify=[verifier])(_prompt(row.prompt))
    run = engine.prepare(workflow)
    result = await run.execute()
    right = silent = strong = 0
    for node in result.nodes:
        answer = str(node.output or "")
        right += answer.startswith("RIGHT")
        silent += answer.startswith("WRONG")  # accepted, and wrong
        strong += bool(node.attempts) and node.attempts[0].tier == "opus"
    return Outcome(name, split, len(rows), result.cost_usd, right, silent, strong)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "both"), default="both")
    parser.add_argument("--limit", type=int, default=0, help="first N rows of each split")
    parser.add_argument("--catch", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = {name: load(name) for name in ("dev", "test")}
    if args.limit:
        splits = {name: rows[: args.limit] for name, rows in splits.items()}
    wanted = ("dev", "test") if args.split == "both" else (args.split,)
    learned = CalibratedRouter(seed=args.seed)
    print("| split | policy | $ / 1k tasks | true accuracy | silent wrong | strong starts |")
    print("|---|---|---|---|---|---|")
    for split in ("dev", "test"):
        rows = splits[split]
        oracle = Oracle({row.task_id: row for row in rows})
        policies = [
            ("always weak", Fixed(0)),
            ("always strong (the rules)", CapabilityRouter()),
            ("CalibratedRouter", learned),  # learns on dev, then on the test stream
            ("oracle", oracle),
        ]
        for name, router in policies:
            outcome = await run_policy(name, router, rows, split, catch=args.catch, seed=args.seed)
            if split in wanted:
                print(outcome.line(), flush=True)


if __name__ == "__main__":
    anyio.run(main)
