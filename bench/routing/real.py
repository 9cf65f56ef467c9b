"""Routing on real outcomes: RouteLLM's per-prompt results through the real ``Engine``.

Reads ``../shared/data/routellm`` (RouteLLM's MMLU and GSM8K outcomes of a weak and a
strong model, Apache-2.0; never copied into the project) and runs every row as a task
through the ``Engine`` with the public API, on a two-tier ladder priced like Haiku 5.5 and
Opus 5.5. On the weak tier a task is answered correctly iff the weak model (Mixtral-8x7B)
answered it correctly, on the strong tier iff the strong model (GPT-4) did. Each answer
goes through a verifier that catches a wrong answer with probability ``--catch`` (0.5) and
never rejects a right one, so a rejected weak answer escalates to the strong tier.

Policies: always weak, always strong (the rules, every task declared with the same needs,
which only the strong tier covers), ``CalibratedRouter`` at each ``--thresholds`` value
(trained online on the dev split, then on the test stream; ``--old``: also by needs alone),
with ``--classifier ACCURACY...`` also with a ``TaskClassifier`` whose label is right with
that *assumed* accuracy (its calls paid), and the oracle (the cheapest tier that is
right). Reported per split: $ per 1,000 tasks (shadow and classifier spend apart), true
accuracy, silent wrong answers (wrong, and accepted), strong starts, RouteLLM's APGR and
CPT(50%) from the router's score, bootstrap intervals; ``--plot``: cost vs accuracy.

Run from the repository root (bench/setup.sh makes bench/.venv, with scikit-learn)::

    bench/.venv/bin/python bench/routing/real.py                 # dev and test
    bench/.venv/bin/python bench/routing/real.py --split dev --limit 500

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
import numpy as np

from orchestrator import (
    CalibratedRouter,
    CapabilityRouter,
    Engine,
    Needs,
    RouteDecision,
    RouteRequest,
    RunConfig,
    TaskClassifier,
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

    def __init__(self, rows: dict[str, Row], classifier_accuracy: float = 1.0) -> None:
        self.rows, self.classifier_accuracy = rows, classifier_accuracy

    def __call__(self, request: ModelRequest) -> str:
        row = self.rows[request.task_id or ""]
        tier = request.tier.name
        if request.purpose == "classify":  # an ASSUMED classifier, not a measured one:
            # "hard" iff the weak model got it wrong, with the stated accuracy (fixed draw)
            right = _draw(row.task_id, "classify", 0) < self.classifier_accuracy
            return "easy" if row.weak_ok == right else "hard"
        if row.weak_ok if tier == "haiku" else row.strong_ok:
            return f"RIGHT: the answer to {row.task_id}"
        # A wrong answer picks one of the three wrong options (a fixed draw per task and
        # tier), so two wrong tiers agree a third of the time, as independent guesses would.
        option = int(_draw(row.task_id, f"{tier}:wrong", 0) * 3)
        return f"WRONG: option {option} for {row.task_id}"


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
    """One policy on one split: per task, where it started, what it answered, its score."""

    policy: str
    split: str
    rows: list[Row]
    cost_usd: Decimal
    shadow_usd: Decimal
    classify_usd: Decimal
    right: np.ndarray  # the accepted answer was right
    silent: np.ndarray  # a wrong answer was accepted
    strong_start: np.ndarray  # the first attempt ran on the strong tier
    score: np.ndarray  # the router's estimated silent-failure gap (learned router only)
    p_weak: np.ndarray  # its P(rejected on the weak tier) at routing time (nan: none yet)
    weak_rejected: np.ndarray  # 1/0 when the first attempt ran on the weak tier, else nan

    def reliability(self) -> tuple[float, float, int] | None:
        """Are its probabilities calibrated? ECE (10 bins) and Brier score on weak starts."""
        known = ~np.isnan(self.p_weak) & ~np.isnan(self.weak_rejected)
        if not known.any():
            return None
        p, y = self.p_weak[known], self.weak_rejected[known]
        bins = np.minimum((p * 10).astype(int), 9)
        ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean()
                  for b in range(10) if (bins == b).any())  # fmt: skip
        return float(ece), float(((p - y) ** 2).mean()), int(known.sum())

    def projected(self, take: np.ndarray | None = None) -> tuple[float, float, float]:
        """Two-tier projection (no verifier): strong-call share, accuracy, PGR."""
        weak, strong = _outcomes(self.rows)
        start = self.strong_start
        if take is not None:
            weak, strong, start = weak[take], strong[take], start[take]
        accuracy = np.where(start, strong, weak).mean()
        gap = strong.mean() - weak.mean()
        return float(start.mean()), float(accuracy), float((accuracy - weak.mean()) / gap)


def _outcomes(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    weak = np.array([r.weak_ok for r in rows], dtype=float)
    strong = np.array([r.strong_ok for r in rows], dtype=float)
    return weak, strong


def apgr_cpt(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[float, float]:
    """RouteLLM's APGR and CPT(50%) of a score (higher: send to strong) on the projection.

    Sorting by score, the first k tasks go to the strong model: PGR(k) is the share of the
    strong model's accuracy gain recovered; APGR is its mean over k = 0..n (the area under
    PGR against the strong-call share), CPT(50%) the least share reaching PGR 0.5.
    """
    order = np.argsort(-score, kind="stable")
    gained = np.concatenate([[0.0], np.cumsum(strong[order] - weak[order])])
    pgr = gained / (strong.sum() - weak.sum())
    share = np.arange(len(score) + 1) / len(score)
    return float(np.trapezoid(pgr, share)), float(share[np.argmax(pgr >= 0.5)])


async def run_policy(
    name: str,
    router: Any,
    rows: Sequence[Row],
    split: str,
    *,
    catch: float,
    seed: int,
    classifier_accuracy: float = 1.0,
) -> Outcome:
    """Every row as a task through the Engine with ``router``; what it cost and got right."""
    by_id = {row.task_id: row for row in rows}
    ladder = two_tiers()
    scores: dict[str, float] = {}
    p_weak: dict[str, float] = {}
    routed = _Scoring(router, scores, p_weak) if isinstance(router, CalibratedRouter) else router
    engine = Engine(
        FunctionModel(Model(by_id, classifier_accuracy)),
        ladder,
        router=routed,
        config=RunConfig(max_concurrency=64),
    )
    verifier = CatchesWrong(catch, seed)
    workflow = Workflow(f"routellm {split}")
    for row in rows:
        workflow.llm(name=row.task_id, needs=NEEDS, verify=[verifier])(_prompt(row.prompt))
    result = await engine.prepare(workflow).execute()
    nodes = {node.id: node for node in result.nodes}
    answers = [str(nodes[row.task_id].output or "") for row in rows]
    starts = [nodes[row.task_id].attempts for row in rows]
    return Outcome(
        name, split, list(rows), result.cost_usd, result.shadow_cost_usd,
        result.classify_cost_usd,
        right=np.array([a.startswith("RIGHT") for a in answers]),
        silent=np.array([a.startswith("WRONG") for a in answers]),
        strong_start=np.array([_start(a) == "opus" for a in starts]),
        score=np.array([scores.get(row.task_id, 0.0) for row in rows]),
        p_weak=np.array([p_weak.get(row.task_id, np.nan) for row in rows]),
        weak_rejected=np.array([_rejected_on(a, "haiku") for a in starts]),
    )  # fmt: skip


def _start(attempts: Sequence[Any]) -> str | None:
    return next((a.tier for a in attempts if a.answering), None)


def _rejected_on(attempts: Sequence[Any], tier: str) -> float:
    first = next((a for a in attempts if a.answering), None)
    if first is None or first.tier != tier or first.verdict is None:
        return np.nan
    return 0.0 if first.passed else 1.0


class _Scoring:
    """Routes with a ``CalibratedRouter`` and notes its score of each task as it routes."""

    def __init__(
        self, router: CalibratedRouter, scores: dict[str, float], p_weak: dict[str, float]
    ) -> None:
        self.router, self.scores, self.p_weak = router, scores, p_weak
        self.classifier = router.classifier  # the engine labels tasks for it, if it asks

    def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
        estimates = self.router.estimates(request, ladder) or {}
        self.scores[request.task_id] = estimates.get("haiku", 0.0) - estimates.get("opus", 0.0)
        quality = self.router.quality
        if quality is not None:
            weak = ladder.get("haiku")
            p = quality.p_rejected(quality.featurizer.features(request), weak.name, weak.model)
            if p is not None:
                self.p_weak[request.task_id] = p
        return self.router.route(request, ladder)

    def observe(self, result: Any, request: RouteRequest | None = None) -> bool:
        return self.router.observe(result, request)


def bootstrap(
    outcome: Outcome, strong_cost: Decimal, *, rounds: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% intervals over tasks drawn with replacement: accuracy, silent, cost ratio, APGR."""
    rng = np.random.default_rng(seed)
    weak, strong = _outcomes(outcome.rows)
    n = len(outcome.rows)
    draws: dict[str, list[float]] = {"accuracy": [], "silent": [], "apgr": [], "cpt": []}
    for _ in range(rounds):
        take = rng.integers(0, n, n)
        draws["accuracy"].append(float(outcome.right[take].mean()))
        draws["silent"].append(float(outcome.silent[take].mean()))
        if outcome.score.any():
            apgr, cpt = apgr_cpt(outcome.score[take], weak[take], strong[take])
            draws["apgr"].append(apgr)
            draws["cpt"].append(cpt)
    return {
        key: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
        for key, values in draws.items()
        if values
    }


def _pct(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:.1%}, {interval[1]:.1%}]"


def report(outcomes: list[Outcome], *, rounds: int, seed: int) -> list[str]:
    """The markdown table of one split, each policy against always-strong."""
    strong = next(o for o in outcomes if o.policy.startswith("always strong"))
    lines = [
        "| split | policy | $ / 1k tasks (shadow; classify) | x always-strong cost "
        "| true accuracy [95%] "
        "| silent wrong [95%] | strong starts | projected: strong calls, PGR | APGR [95%] "
        "| CPT(50%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        per_k = o.cost_usd / len(o.rows) * 1000
        shadow = o.shadow_usd / len(o.rows) * 1000
        classify = o.classify_usd / len(o.rows) * 1000
        ratio = o.cost_usd / strong.cost_usd
        ci = bootstrap(o, strong.cost_usd, rounds=rounds, seed=seed)
        calls, _, pgr = o.projected()
        if "apgr" in ci:
            weak, strong_ok = _outcomes(o.rows)
            apgr, cpt = apgr_cpt(o.score, weak, strong_ok)
            scored = f"{apgr:.3f} [{ci['apgr'][0]:.3f}, {ci['apgr'][1]:.3f}] | {cpt:.1%}"
        else:
            scored = "| "
        lines.append(
            f"| {o.split} | {o.policy} | {per_k:.4f} ({shadow:.4f}; {classify:.4f}) | {ratio:.3f} "
            f"| {o.right.mean():.1%} {_pct(ci['accuracy'])} | {o.silent.mean():.1%} "
            f"{_pct(ci['silent'])} | {o.strong_start.mean():.1%} | {calls:.1%}, {pgr:.2f} "
            f"| {scored} |"
        )
    return lines


def plot(outcomes: dict[str, list[Outcome]], path: Path) -> None:
    """Cost against true accuracy per split: the sweep as a line, baselines as points."""
    import matplotlib as mpl  # noqa: PLC0415  (benchmark-only dependency)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, len(outcomes), figsize=(6 * len(outcomes), 4.5))
    for axis, (split, rows) in zip(np.atleast_1d(axes), outcomes.items(), strict=True):
        sweep = [o for o in rows if o.policy.startswith("CalibratedRouter")]
        axis.plot(
            [float(o.cost_usd / len(o.rows) * 1000) for o in sweep],
            [o.right.mean() * 100 for o in sweep], "o-", label="CalibratedRouter, threshold sweep",
        )  # fmt: skip
        for o in rows:
            if o not in sweep:
                point = (float(o.cost_usd / len(o.rows) * 1000), o.right.mean() * 100)
                axis.plot(*point, "s")
                axis.annotate(
                    o.policy, point, fontsize=8, xytext=(4, -10), textcoords="offset points"
                )
        axis.set_title(f"RouteLLM outcomes, {split} split")
        axis.set_xlabel("$ per 1,000 tasks (shadow runs included)")
        axis.set_ylabel("true accuracy, %")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


THRESHOLDS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 1.0)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"the data (default {DATA})")
    parser.add_argument("--split", choices=("dev", "test", "both"), default="both")
    parser.add_argument("--limit", type=int, default=0, help="first N rows of each split")
    parser.add_argument("--catch", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument(
        "--shadow", type=float, default=0.02, help="CalibratedRouter's shadow share"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--plot", type=Path, help="write the cost-vs-accuracy plot here")
    parser.add_argument(
        "--old", action="store_true", help="also the needs-only router (threshold=None)"
    )
    parser.add_argument(
        "--classifier", type=float, nargs="*", default=[], metavar="ACCURACY",
        help="also the learned router with a TaskClassifier whose label is right with this "
        "(assumed) accuracy, at --classifier-thresholds; its calls are paid",
    )  # fmt: skip
    parser.add_argument("--classifier-thresholds", type=float, nargs="+", default=[0.1, 0.15])
    args = parser.parse_args(argv)
    if not (args.data / "mmlu").is_dir():
        parser.error(f"no RouteLLM data in {args.data} (expected its mmlu/ and gsm8k.csv)")
    splits = {name: load(name, args.data) for name in ("dev", "test")}
    order = np.random.default_rng(args.seed)  # a mixed stream: traffic is not sorted by subject
    splits = {
        name: [rows[i] for i in order.permutation(len(rows))] for name, rows in splits.items()
    }
    if args.limit:
        splits = {name: rows[: args.limit] for name, rows in splits.items()}
    wanted = ("dev", "test") if args.split == "both" else (args.split,)
    learned = {
        t: CalibratedRouter(threshold=t, shadow=args.shadow, fit="inline", seed=args.seed)
        for t in args.thresholds
    }
    if args.old:
        learned[-1.0] = CalibratedRouter(threshold=None, seed=args.seed)
    classified = {
        (accuracy, t): CalibratedRouter(
            threshold=t, shadow=args.shadow, fit="inline", seed=args.seed,
            classifier=TaskClassifier(),
        )
        for accuracy in args.classifier
        for t in args.classifier_thresholds
    }  # fmt: skip
    results: dict[str, list[Outcome]] = {}
    for split in ("dev", "test"):  # the learned routers learn on dev, then on the test stream
        if split not in wanted and split == "test":
            break
        rows = splits[split]
        oracle = Oracle({row.task_id: row for row in rows})
        policies: list[tuple[str, Any, float]] = [
            ("always weak", Fixed(0), 1.0),
            ("always strong (the rules)", CapabilityRouter(), 1.0),
            ("oracle", oracle, 1.0),
        ]
        for t, router in learned.items():
            label = "needs only (threshold=None)" if t < 0 else f"threshold {t:g}"
            policies.append((f"CalibratedRouter, {label}", router, 1.0))
        for (accuracy, t), router in classified.items():
            name = f"CalibratedRouter + classifier (assumed {accuracy:.0%} right), threshold {t:g}"
            policies.append((name, router, accuracy))
        outcomes = [
            await run_policy(
                name, router, rows, split, catch=args.catch, seed=args.seed,
                classifier_accuracy=accuracy,
            )
            for name, router, accuracy in policies
        ]  # fmt: skip
        if split in wanted:
            results[split] = outcomes
            print("\n".join(report(outcomes, rounds=args.bootstrap, seed=args.seed)), flush=True)
            for o in outcomes:
                fit = o.reliability()
                if fit is not None:
                    print(f"{split}, {o.policy}: P(rejected on the weak tier) over {fit[2]} weak "
                          f"starts: ECE {fit[0]:.3f}, Brier {fit[1]:.3f}")  # fmt: skip
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    anyio.run(main)
