"""Routing: the cheapest tier whose capabilities cover the needs, never chosen by model name."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import (
    Capabilities,
    CapabilityRouter,
    Needs,
    PriceBand,
    RouteDecision,
    Router,
    RouteRequest,
    Tier,
    TierLadder,
    default_ladder,
)


def route(needs: Needs, ladder: TierLadder | None = None) -> tuple[str, RouteDecision]:
    ladder = default_ladder() if ladder is None else ladder
    decision = CapabilityRouter().route(RouteRequest(needs), ladder)
    assert 0 <= decision.index < len(ladder)
    return ladder[decision.index].name, decision


def test_capability_router_is_a_router() -> None:
    assert isinstance(CapabilityRouter(), Router)


@pytest.mark.parametrize(
    ("needs", "expected"),
    [
        ({}, "haiku"),
        ({"reasoning": 1, "long_context": 1, "coding": 1}, "haiku"),
        ({"tool_use": 2}, "haiku"),  # haiku covers tool_use 2
        ({"context_tokens": 200_000}, "haiku"),  # exactly haiku's window
        ({"reasoning": 2}, "sonnet"),
        ({"long_context": 2}, "sonnet"),
        ({"coding": 2}, "sonnet"),
        ({"tool_use": 3}, "sonnet"),
        ({"context_tokens": 200_001}, "sonnet"),
        ({"context_tokens": 300_000}, "sonnet"),  # beyond haiku's 200k window
        ({"reasoning": 2, "coding": 2, "context_tokens": 1_000_000}, "sonnet"),
        ({"coding": 3}, "opus"),
        ({"reasoning": 3}, "opus"),
        ({"long_context": 3, "tool_use": 1}, "opus"),
        ({"reasoning": 3, "long_context": 3, "coding": 3, "tool_use": 3}, "opus"),
    ],
)
def test_default_ladder_routes_to_cheapest_covering_tier(
    needs: dict[str, int], expected: str
) -> None:
    name, decision = route(Needs(**needs))
    assert name == expected
    assert decision.covered is True
    assert expected in decision.reason


@pytest.mark.parametrize(
    ("needs", "missing"),
    [
        ({"reasoning": 3, "context_tokens": 2_000_000}, ["context_tokens 2000000 > 1000000"]),
        ({"context_tokens": 1_000_001}, ["context_tokens 1000001 > 1000000"]),
    ],
)
def test_nothing_covers_the_needs_uses_the_strongest(
    needs: dict[str, int], missing: list[str]
) -> None:
    name, decision = route(Needs(**needs))
    assert name == "opus"
    assert decision.index == 2
    assert decision.covered is False
    for words in missing:
        assert words in decision.reason
    assert "reasoning" not in decision.reason  # opus does cover reasoning 3
    assert "opus" in decision.reason


def tier(name: str, model: str, rank: int, levels: dict[str, int], window: int) -> Tier:
    return Tier(
        name=name,
        model=model,
        rank=rank,
        capabilities=Capabilities(**levels),
        prices=(PriceBand(input=float(rank), output=float(rank)),),
        context_window=window,
    )


WEAK = {"reasoning": 1, "coding": 1}
STRONG = {"reasoning": 3, "long_context": 3, "coding": 3, "tool_use": 3}


def misleading_ladder() -> TierLadder:
    """Names and model ids say the opposite of what each tier can do."""
    return TierLadder(
        tiers=(
            tier("opus", "claude-opus-5-5", 1, STRONG, 1_000_000),
            tier("haiku", "claude-haiku-5-5", 2, WEAK, 10_000),
        )
    )


def test_routing_follows_capabilities_not_names() -> None:
    ladder = misleading_ladder()
    # The cheapest tier (rank 1) covers everything, whatever it is called.
    for needs in (Needs(), Needs(reasoning=3), Needs(coding=3, context_tokens=500_000)):
        name, decision = route(needs, ladder)
        assert decision.index == 0
        assert name == "opus"
        assert ladder[0].model == "claude-opus-5-5"


def test_swapping_model_ids_does_not_change_the_route() -> None:
    default = default_ladder()
    models = [t.model for t in default.tiers]
    swapped = TierLadder(
        tiers=tuple(
            t.model_copy(update={"model": model, "name": f"tier{i}"})
            for i, (t, model) in enumerate(zip(default.tiers, reversed(models), strict=True))
        )
    )
    assert swapped[0].model == "claude-opus-5-5"
    assert swapped[2].model == "claude-haiku-5-5"
    cases = [
        Needs(),
        Needs(tool_use=2),
        Needs(reasoning=2),
        Needs(context_tokens=300_000),
        Needs(coding=3),
        Needs(reasoning=3, context_tokens=2_000_000),
    ]
    for needs in cases:
        expected = CapabilityRouter().route(RouteRequest(needs), default)
        actual = CapabilityRouter().route(RouteRequest(needs), swapped)
        assert actual.index == expected.index
        assert actual.covered == expected.covered


def test_moving_a_capability_line_moves_the_route() -> None:
    default = default_ladder()
    assert route(Needs(coding=3))[0] == "opus"
    stronger_sonnet = default.get("sonnet").model_copy(
        update={"capabilities": Capabilities(reasoning=2, long_context=2, coding=3, tool_use=3)}
    )
    ladder = TierLadder(tiers=(default.get("haiku"), stronger_sonnet, default.get("opus")))
    assert route(Needs(coding=3), ladder)[0] == "sonnet"


@pytest.mark.parametrize(
    ("needs", "index", "covered"),
    [
        ({}, 0, True),
        ({"context_tokens": 10_001}, 1, True),  # beyond the cheap tier's small window
        ({"reasoning": 2}, 1, True),
        ({"tool_use": 3}, 2, True),
        ({"tool_use": 3, "context_tokens": 3_000_000}, 2, False),
    ],
)
def test_routing_on_a_custom_ladder(needs: dict[str, int], index: int, covered: bool) -> None:
    ladder = TierLadder(
        tiers=(
            tier("c", "m-x", 30, STRONG, 2_000_000),
            tier("a", "m-y", 10, WEAK, 10_000),
            tier("b", "m-z", 20, {"reasoning": 2, "tool_use": 1}, 500_000),
        )
    )
    _, decision = route(Needs(**needs), ladder)
    assert decision.index == index
    assert decision.covered is covered


def test_uncovered_reason_lists_every_shortfall_of_the_strongest() -> None:
    ladder = TierLadder(tiers=(tier("small", "m", 1, WEAK, 1000),))
    name, decision = route(Needs(reasoning=3, tool_use=1, context_tokens=5000), ladder)
    assert name == "small"
    assert decision.covered is False
    for words in ("reasoning 3 > 1", "tool_use 1 > 0", "context_tokens 5000 > 1000"):
        assert words in decision.reason
    assert "coding" not in decision.reason


@pytest.mark.parametrize(
    ("levels", "window", "expected"),
    [
        ({"reasoning": 2}, 100, []),
        ({"reasoning": 3}, 100, ["reasoning 3 > 2"]),
        ({"coding": 1, "tool_use": 2}, 100, ["tool_use 2 > 0"]),
        ({"context_tokens": 101}, 100, ["context_tokens 101 > 100"]),
        ({"context_tokens": 100}, 100, []),
    ],
)
def test_needs_shortfalls(levels: dict[str, Any], window: int, expected: list[str]) -> None:
    covered = Capabilities(reasoning=2, coding=1)
    assert Needs(**levels).shortfalls(covered, window) == expected


@pytest.mark.anyio
async def test_the_router_sees_the_task_it_routes() -> None:
    """Through the engine: the instruction, the whole prompt with its inputs, their size,
    the kind of task and its needs, so a router can route on what the task demands."""
    from orchestrator import Engine, Plan
    from orchestrator.testing import TestModel

    seen: dict[str, RouteRequest] = {}

    class Recording:
        def route(self, request: RouteRequest, ladder: TierLadder) -> RouteDecision:
            seen[request.task_id] = request
            return CapabilityRouter().route(request, ladder)

    plan = Plan.model_validate(
        {
            "goal": "g",
            "tasks": [
                {
                    "id": "facts",
                    "instruction": "List facts about queues.",
                    "needs": {"reasoning": 2},
                },
                {
                    "id": "table",
                    "instruction": "Tabulate the facts.",
                    "depends_on": ["facts"],
                    "output_schema": {"type": "object"},
                },
            ],
        }
    )
    answer = "A queue is first in, first out. " * 20
    engine = Engine(TestModel('{"rows": []}', by_tier={"sonnet": answer}), router=Recording())
    result = await engine.run(plan)
    assert result.status == "succeeded", [n.reason for n in result.nodes]

    facts, table = seen["facts"], seen["table"]
    assert (facts.instruction, facts.kind, facts.needs) == (
        "List facts about queues.",
        "text",
        Needs(reasoning=2),
    )
    assert facts.prompt == "List facts about queues."
    assert table.kind == "structured"
    assert answer.strip() in table.prompt  # its input, as the model will see it
    assert table.input_tokens == len(table.prompt.encode()) > len(answer)


def test_a_router_request_can_be_made_from_needs_alone() -> None:
    request = RouteRequest.of(Needs(coding=2), "Fix the bug.")
    assert (request.prompt, request.input_tokens, request.kind) == ("Fix the bug.", 12, "text")
    assert CapabilityRouter().route(request, default_ladder()) == CapabilityRouter().route_needs(
        Needs(coding=2), default_ladder()
    )
