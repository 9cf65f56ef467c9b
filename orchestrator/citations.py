"""Citation checking: every cited passage exists, and every quote is really in it.

Research answers cite passages as ``[path#n]``; a quote followed by its citation,
``"exact words" [path#n]``, claims those words appear in that passage. Cheap tiers invent
passage ids and misquote sources while sounding sure; this verifier catches both, against
the corpus itself rather than another model's opinion.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

from orchestrator.results import Verdict
from orchestrator.verifier import VerificationContext

__all__ = ["CITATION", "Citations", "PassageLookup", "cited_ids"]

CITATION = re.compile(r"\[([^\[\]\s]+#\d+)\]")
"""A citation marker: ``[relative/path.md#3]``."""

_QUOTE = re.compile(r"[\"“]([^\"”]{8,400})[\"”]\s*((?:\[[^\[\]\s]+#\d+\]\s*)+)")


@runtime_checkable
class PassageLookup(Protocol):
    """Where citations are checked: anything that returns a passage's text by id."""

    def passage_text(self, passage_id: str) -> str | None:
        """Return the passage's text, or ``None`` if there is no such passage."""
        ...


def cited_ids(text: str) -> list[str]:
    """Return the passage ids cited in ``text``, in order, without repeats."""
    return list(dict.fromkeys(CITATION.findall(text)))


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


class Citations:
    """Rejects answers that cite passages that do not exist or misquote them.

    Args:
        lookup: The corpus (anything with ``passage_text(id)``).
        min_citations: Fewest distinct citations an answer must carry.
    """

    name = "citations"

    def __init__(self, lookup: PassageLookup, *, min_citations: int = 1) -> None:
        self.lookup = lookup
        self.min_citations = min_citations

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass if enough citations are present, all exist, and every quote matches."""
        ids = cited_ids(context.text)
        if len(ids) < self.min_citations:
            return self._fail(
                f"cite at least {self.min_citations} passage(s) as [path#n]; found {len(ids)}"
            )
        missing = [pid for pid in ids if self.lookup.passage_text(pid) is None]
        if missing:
            return self._fail(f"cited passage(s) that do not exist: {', '.join(missing)}")
        misquoted = self._misquotes(context.text)
        if misquoted:
            return self._fail("quoted text not found in the cited passage: " + "; ".join(misquoted))
        return Verdict(passed=True, reason=f"{len(ids)} citation(s) checked", verifier=self.name)

    def _misquotes(self, text: str) -> list[str]:
        problems = []
        for match in _QUOTE.finditer(text):
            quote = _normalise(match.group(1))
            sources = CITATION.findall(match.group(2))
            passages = [_normalise(self.lookup.passage_text(pid) or "") for pid in sources]
            if not any(quote in passage for passage in passages):
                problems.append(f'"{match.group(1)[:60]}" [{", ".join(sources)}]')
        return problems

    def _fail(self, reason: str) -> Verdict:
        return Verdict(passed=False, reason=reason, verifier=self.name)
