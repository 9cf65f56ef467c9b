"""Unified diffs, file by file, parsed with ``unidiff`` (the ``[sim]`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from orchestrator import UserError


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One line of a hunk: ``kind`` is ``+``, ``-`` or ``" "``; ``new_line`` its new number."""

    kind: str
    text: str
    new_line: int | None
    section: str


@dataclass(frozen=True, slots=True)
class FileDiff:
    """One file of a unified diff.

    Attributes:
        path: The file's path on the new side (``b/`` removed).
        text: This file's part of the diff, headers included (what a prompt shows).
        lines: Every hunk line, in order.
        new_side: New-side line number -> text, for added and context lines.
    """

    path: str
    text: str
    lines: tuple[DiffLine, ...]
    new_side: Mapping[int, str]

    def ranges(self) -> str:
        """The new-side line ranges the hunks cover, e.g. ``4-17, 25-31``."""
        numbers = sorted(self.new_side)
        spans: list[list[int]] = []
        for number in numbers:
            if spans and number == spans[-1][1] + 1:
                spans[-1][1] = number
            else:
                spans.append([number, number])
        return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


@dataclass(frozen=True, slots=True)
class ParsedDiff:
    """A unified diff, file by file (parsed with ``unidiff``)."""

    name: str
    files: Mapping[str, FileDiff]

    def line(self, path: str, number: int) -> str | None:
        """The text of new-side line ``number`` of ``path``, or ``None`` if the diff lacks it."""
        file = self.files.get(path)
        return None if file is None else file.new_side.get(number)


def parse_diff(text: str, name: str = "diff") -> ParsedDiff:
    """Parse a unified diff (``git diff`` output).

    Raises:
        UserError: If ``text`` is not a unified diff with at least one hunk.
    """
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise UserError(f"{name}: not a valid unified diff: {exc}") from None
    files = {}
    for patched in patch:
        if patched.is_removed_file or not len(patched):
            continue
        lines = tuple(
            DiffLine(
                line.line_type, line.value.rstrip("\r\n"), line.target_line_no, hunk.section_header
            )
            for hunk in patched
            for line in hunk
            if line.line_type in "+- "
        )
        new_side = {line.new_line: line.text for line in lines if line.new_line is not None}
        files[patched.path] = FileDiff(patched.path, str(patched), lines, new_side)
    if not files:
        raise UserError(f"{name}: no file with hunks found; expected `git diff` output")
    return ParsedDiff(name, files)
