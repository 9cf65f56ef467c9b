"""Server-side tools (Anthropic's web search and fetch): sent as defined, never run locally,
pause_turn continued, searches priced and reserved in the budget."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from orchestrator import Budget, BudgetExhausted, Message, ModelRequest, default_ladder
from orchestrator.budget import Meter
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.pricing import Usage
from orchestrator.tool import ServerTool
from orchestrator.tools.web import WEB_SEARCH_TYPE, web_fetch, web_search, web_tools
from orchestrator.turns import run_turns
from orchestrator_sim import serve
from orchestrator_sim.brain import BrainReply, BrainRequest

pytestmark = pytest.mark.anyio


class PausingBrain:
    """Answers like the API does for a long server-tool turn: pause_turn, then the answer."""

    def __init__(self) -> None:
        self.requests: list[BrainRequest] = []

    def respond(self, request: BrainRequest) -> BrainReply:
        self.requests.append(request)
        if len(self.requests) == 1:
            content = [{"type": "text", "text": "Searching the web for that."}]
            return BrainReply(content, "pause_turn", "task", "h")
        return BrainReply(
            [{"type": "text", "text": "The answer, from the web."}], "end_turn", "task", "h"
        )


def _request(tools: list[Any], tier: str = "sonnet") -> ModelRequest:
    return ModelRequest(
        tier=default_ladder().get(tier),
        messages=[Message(role="user", content="What changed in the news today?")],
        max_output_tokens=256,
        tools=tools,
    )


async def test_server_tools_are_sent_as_defined_and_pause_turn_is_continued() -> None:
    brain = PausingBrain()
    async with (
        serve(brain=brain) as server,
        AnthropicClient(base_url=server.base_url, api_key="k") as client,
    ):
        with anyio.fail_after(20):
            response = await run_turns(
                client,
                _request(web_tools(max_uses=3)),
                Meter(default_ladder().get("sonnet"), Budget()),
            )
    assert response.text == "The answer, from the web."
    assert len(brain.requests) == 2
    sent = [dict(tool) for tool in brain.requests[0].tools]
    assert {tool["name"] for tool in sent} == {"web_search", "web_fetch"}
    search = next(tool for tool in sent if tool["name"] == "web_search")
    assert search["type"] == WEB_SEARCH_TYPE
    assert search["max_uses"] == 3
    # the paused assistant turn went back as is, so the model could continue it
    second = brain.requests[1].messages
    assert second[-1]["role"] == "assistant"
    assert response.tool_calls == ()  # nothing to run locally


async def test_web_search_fees_are_reserved_before_the_call() -> None:
    tier = default_ladder().get("sonnet")
    budget = Budget(0.02)  # tokens fit, 5 searches at $0.01 do not
    async with serve() as server, AnthropicClient(base_url=server.base_url, api_key="k") as client:
        with anyio.fail_after(20), pytest.raises(BudgetExhausted):
            await client.complete(_request([web_search(max_uses=5)]), Meter(tier, budget))
    assert budget.spent_usd == 0


def test_searches_are_priced_per_use() -> None:
    tier = default_ladder().get("sonnet")
    plain = Usage(input_tokens=1000, output_tokens=100)
    searched = Usage(input_tokens=1000, output_tokens=100, web_search_requests=4)
    assert float(tier.cost(searched) - tier.cost(plain)) == pytest.approx(0.04)
    assert (plain + searched).web_search_requests == 4


def test_bad_server_tool_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_uses"):
        web_search(max_uses=0)
    with pytest.raises(ValueError, match="not both"):
        web_fetch(allowed_domains=["a.org"], blocked_domains=["b.org"])
    tool = web_fetch()
    assert isinstance(tool, ServerTool)
    assert tool.max_searches == 0  # fetches are not billed per use
