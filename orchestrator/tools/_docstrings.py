"""A small parser for Google-style docstrings: the prose and the ``Args:`` section."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ["ParsedDocstring", "parse_docstring"]

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns?|Yields?|"
    r"Raises|Examples?|Notes?|Attributes|See Also|Warnings?|Todo|References)\s*:\s*$"
)
_ARG_SECTIONS = frozenset({"Args", "Arguments", "Parameters", "Params"})
_ARG_ENTRY = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class ParsedDocstring:
    """What a tool needs from a docstring.

    Attributes:
        description: The prose before the first section (summary and extended description).
        params: Parameter name to its description, from the ``Args:`` section.
    """

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Parse a Google-style docstring.

    Args:
        doc: The raw docstring (indentation is cleaned here), or ``None``.

    Returns:
        The prose description and the per-parameter descriptions.
    """
    if not doc:
        return ParsedDocstring()
    lines = inspect.cleandoc(doc).splitlines()
    prose: list[str] = []
    params: dict[str, str] = {}
    i = 0
    while i < len(lines) and not _SECTION.match(lines[i]):
        prose.append(lines[i])
        i += 1
    while i < len(lines):
        header = _SECTION.match(lines[i])
        assert header is not None
        body, i = _section_body(lines, i + 1)
        if header.group(1) in _ARG_SECTIONS:
            params.update(_parse_args(body))
    return ParsedDocstring(_join_prose(prose), params)


def _section_body(lines: list[str], start: int) -> tuple[list[str], int]:
    """The indented (or blank) lines after a section header, and where the next one starts."""
    end = start
    while end < len(lines) and not _SECTION.match(lines[end]):
        end += 1
    return lines[start:end], end


def _parse_args(body: list[str]) -> dict[str, str]:
    indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
    if not indents:
        return {}
    entry_indent = min(indents)
    params: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry = _ARG_ENTRY.match(line.strip()) if indent == entry_indent else None
        if entry is not None:
            current = params.setdefault(entry.group("name"), [])
            current.append(entry.group("text").strip())
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(part for part in parts if part) for name, parts in params.items()}


def _join_prose(lines: list[str]) -> str:
    """The prose as written (line breaks kept, so lists survive), trimmed."""
    return "\n".join(line.rstrip() for line in lines).strip()
