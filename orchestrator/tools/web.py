"""Anthropic's server-side web tools, for runs with a real key.

The API runs them: the model searches or fetches during its turn and the results come back
inside its answer, with citations. Name them in a task's tool allowlist like any tool, or
give ``--web`` to ``orchestrator run``. Searches are billed per use (the tier's
``web_search_usd``); the budget reserves ``max_uses`` searches before each call.

The local simulator accepts these definitions and never calls them, so offline runs stay on
the corpus; enabling them is meaningful only against the real API.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.tool import ServerTool

__all__ = ["WEB_FETCH_TYPE", "WEB_SEARCH_TYPE", "web_fetch", "web_search", "web_tools"]

WEB_SEARCH_TYPE = "web_search_20260318"
"""The web search tool version sent (the newest the pinned SDK knows)."""
WEB_FETCH_TYPE = "web_fetch_20260318"
"""The web fetch tool version sent."""


def _domains(
    definition: dict[str, object], allowed: Sequence[str] | None, blocked: Sequence[str] | None
) -> dict[str, object]:
    if allowed and blocked:
        raise ValueError("give allowed_domains or blocked_domains, not both")
    if allowed:
        definition["allowed_domains"] = list(allowed)
    if blocked:
        definition["blocked_domains"] = list(blocked)
    return definition


def web_search(
    *,
    max_uses: int = 5,
    allowed_domains: Sequence[str] | None = None,
    blocked_domains: Sequence[str] | None = None,
) -> ServerTool:
    """The server-side web search tool, at most ``max_uses`` searches per request."""
    if max_uses < 1:
        raise ValueError(f"max_uses must be at least 1, not {max_uses}")
    definition = {"type": WEB_SEARCH_TYPE, "name": "web_search", "max_uses": max_uses}
    return ServerTool(
        name="web_search",
        definition=_domains(definition, allowed_domains, blocked_domains),
        description="Search the web (run by the API); results come back with citations.",
    )


def web_fetch(
    *,
    max_uses: int = 5,
    max_content_tokens: int | None = 20_000,
    allowed_domains: Sequence[str] | None = None,
    blocked_domains: Sequence[str] | None = None,
) -> ServerTool:
    """The server-side web fetch tool: full text of URLs found by search or given."""
    if max_uses < 1:
        raise ValueError(f"max_uses must be at least 1, not {max_uses}")
    definition: dict[str, object] = {
        "type": WEB_FETCH_TYPE, "name": "web_fetch", "max_uses": max_uses,
        "citations": {"enabled": True},
    }  # fmt: skip
    if max_content_tokens is not None:
        definition["max_content_tokens"] = max_content_tokens
    return ServerTool(
        name="web_fetch",
        definition=_domains(definition, allowed_domains, blocked_domains),
        description="Fetch a web page or PDF by URL (run by the API), with citations.",
    )


def web_tools(max_uses: int = 5) -> list[ServerTool]:
    """Web search and web fetch, each limited to ``max_uses`` per request."""
    return [web_search(max_uses=max_uses), web_fetch(max_uses=max_uses)]
