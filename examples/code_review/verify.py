"""The verifier: every citation in an answer is a line on the new side of the diff."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from orchestrator import Verdict, VerificationContext

from .diffs import ParsedDiff

_FILE_KEYS = ("file", "path")
_LINE_KEYS = ("line", "line_number")
_QUOTE_KEYS = ("quote", "snippet", "code")


def cited_locations(output: Any) -> Iterator[tuple[str, int, str | None]]:
    """Every ``(file, line, quote)`` an output cites: objects with a file and a line field."""
    value = output.model_dump() if isinstance(output, BaseModel) else output
    if isinstance(value, Mapping):
        file = next((value[k] for k in _FILE_KEYS if isinstance(value.get(k), str)), None)
        line = next((value[k] for k in _LINE_KEYS if isinstance(value.get(k), int)), None)
        if file is not None and line is not None:
            quote = next((value[k] for k in _QUOTE_KEYS if isinstance(value.get(k), str)), None)
            yield file, line, quote
        for item in value.values():
            yield from cited_locations(item)
    elif isinstance(value, list):
        for item in value:
            yield from cited_locations(item)


class DiffCitations:
    """Every citation in the output names a file of the diff and a line on its new side.

    A quoted line must match the cited line's text (whitespace aside).

    Args:
        diff: The parsed diff.
        files: The files citations may name (default: any file of the diff).
    """

    name = "diff_citations"

    def __init__(self, diff: ParsedDiff, *, files: Collection[str] | None = None) -> None:
        self.diff = diff
        self.files = set(files) if files is not None else set(diff.files)

    def problem(self, path: str, line: int, quote: str | None) -> str | None:
        """What is wrong with one citation, or ``None``."""
        if path not in self.diff.files:
            return f"cites {path}, which is not a file of the diff"
        if path not in self.files:
            return f"cites {path}, outside the files under review ({', '.join(sorted(self.files))})"
        text = self.diff.line(path, line)
        if text is None:
            covered = self.diff.files[path].ranges()
            return f"cites {path}:{line}, not a line of the diff (its lines: {covered})"
        if quote is not None and " ".join(quote.split()) not in " ".join(text.split()):
            return f"quotes {quote!r} at {path}:{line}, but that line reads {text.strip()!r}"
        return None

    async def verify(self, output: Any, context: VerificationContext) -> Verdict:
        """Pass if every citation is on the new side of the diff; else name each bad one."""
        problems = [
            problem
            for path, line, quote in cited_locations(output)
            if (problem := self.problem(path, line, quote)) is not None
        ]
        if problems:
            reason = "; ".join(problems[:5]) + ". Cite only lines shown in the diff."
            return Verdict(passed=False, reason=reason, verifier=self.name)
        return Verdict(passed=True, verifier=self.name)
