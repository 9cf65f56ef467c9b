"""Diff-grounded citations: answers about a unified diff cite lines the diff really has.

When the prompt carries a unified diff (``--- a/...`` / ``+++ b/...`` headers and ``@@``
hunks, fenced or not), structured answers whose objects have a file-like field (``file``,
``path``...) and a line-like integer field (``line``, ``line_number``...) cite real lines of
the diff's *new* side, added lines first; a quote-like field (``quote``, ``snippet``...)
gets that line's text. A flawed answer moves one citation to a line that is not on the new
side of the diff (``wrong_location``): the flaw a verifier parsing the diff catches.

Parsing uses ``unidiff``; text that is not a diff gives no anchors.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from orchestrator.wire import FEEDBACK_MARK as _FEEDBACK_MARK

__all__ = [
    "FILE_FIELDS",
    "LINE_FIELDS",
    "QUOTE_FIELDS",
    "Anchor",
    "anchor_fields",
    "citable",
    "diff_anchors",
    "misplace_one_citation",
]

FILE_FIELDS = ("file", "path", "filename", "file_path")
LINE_FIELDS = ("line", "line_number", "lineno", "line_no")
QUOTE_FIELDS = ("quote", "snippet", "code", "excerpt")


@dataclass(frozen=True, slots=True)
class Anchor:
    """One line on the new side of a diff.

    Attributes:
        file: The file's path (``b/`` prefix removed).
        line: Its line number in the new file.
        text: The line's text, without the newline.
        added: Whether the diff adds it (else it is context).
    """

    file: str
    line: int
    text: str
    added: bool


def diff_anchors(text: str) -> list[Anchor]:
    """Return every new-side line of the unified diffs in ``text`` (none if there are none).

    Feedback about a previous attempt (a ``<previous_attempt`` block) is ignored.
    """
    text = text.split(_FEEDBACK_MARK, 1)[0]
    if "\n+++ " not in text or "\n@@ " not in text:
        return []
    try:
        patch = PatchSet(text)
    except UnidiffParseError:
        return []
    return [
        Anchor(patched.path, line.target_line_no, line.value.rstrip("\r\n"), line.is_added)
        for patched in patch
        for hunk in patched
        for line in hunk
        if line.target_line_no is not None
    ]


def citable(anchors: Sequence[Anchor]) -> list[Anchor]:
    """The anchors answers cite: non-blank added lines, else non-blank context lines."""
    added = [a for a in anchors if a.added and a.text.strip()]
    return added or [a for a in anchors if a.text.strip()]


def anchor_fields(properties: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """Return the (file, line, quote) property names of an object, or ``None``."""
    keys = {str(key).lower(): str(key) for key in properties}
    file_key = next((keys[name] for name in FILE_FIELDS if name in keys), None)
    line_key = next((keys[name] for name in LINE_FIELDS if name in keys), None)
    quote_key = next((keys[name] for name in QUOTE_FIELDS if name in keys), None)
    if file_key is None or line_key is None:
        return None
    return file_key, line_key, quote_key


def _cited_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        fields = anchor_fields(value)
        if fields is not None and isinstance(value.get(fields[1]), int):
            yield value
        for item in value.values():
            yield from _cited_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _cited_objects(item)


def misplace_one_citation(
    instance: Any, anchors: Sequence[Anchor], rng: random.Random
) -> str | None:
    """Move one citation of ``instance`` to a line not on the diff's new side.

    Returns:
        The flaw in words, or ``None`` if the instance cites no line.
    """
    cited = list(_cited_objects(instance))
    if not cited:
        return None
    target = cited[rng.randrange(len(cited))]
    file_key, line_key, _ = anchor_fields(target) or ("", "", None)
    path = str(target.get(file_key))
    lines = {a.line for a in anchors if a.file == path}
    wrong = max(lines, default=0) + 3 + rng.randrange(40)
    true_line = target[line_key]
    target[line_key] = wrong
    return f"cites {path}:{wrong}, not a line of the diff (the code is at line {true_line})"
