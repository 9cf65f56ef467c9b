"""The deterministic half of the classifier: the public definitions a diff touches."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from .diffs import FileDiff, ParsedDiff

_DEFINITION = re.compile(r"^(?P<indent>\s*)(?:async\s+)?(?P<kind>def|class)\s+(?P<name>\w+)")
_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*$|[^/]*_test\.py$)")
Decision = Literal["analysis", "model", "local"]


class InterfaceChange(BaseModel):
    """A public definition the diff adds, changes or removes."""

    id: str
    """``module.name`` or ``module.Class.method``, e.g. ``shopfront.pricing.price_for``."""
    file: str
    symbol: str
    kind: Literal["changed", "removed", "added"]
    before: str | None
    after: str | None
    used_in: list[str]
    """Other files of the diff that mention it (any hunk line)."""
    decision: Decision
    """``analysis``: crosses an interface, shown by the diff; ``model``: a model judges;
    ``local``: a new definition nothing else in the diff uses."""

    def describe(self) -> str:
        """The change in a few lines, for prompts."""
        users = ", ".join(self.used_in) or "none"
        return (
            f"Public `{self.symbol}` in {self.file} was {self.kind}.\n"
            f"Before: {self.before or '(absent)'}\nAfter: {self.after or '(absent)'}\n"
            f"Other files of the diff that mention it: {users}"
        )


def _signatures(file: FileDiff, side: str) -> dict[str, str]:
    """Definitions on the ``+`` or ``-`` lines of a file: qualified name -> signature."""
    visible = [line for line in file.lines if line.kind in (side, " ")]
    found: dict[str, str] = {}
    owner = ""
    for index, line in enumerate(visible):
        match = _DEFINITION.match(line.text)
        if match is None:
            continue
        if not match["indent"]:
            owner = match["name"] if match["kind"] == "class" else ""
        if line.kind != side:
            continue
        parts = [line.text.strip()]
        for after in visible[index + 1 : index + 8]:  # a signature over several lines
            if parts[-1].endswith(":"):
                break
            parts.append(after.text.strip())
        name = match["name"]
        if match["indent"]:
            section = re.match(r"class\s+(\w+)", line.section)
            name = f"{owner or (section[1] if section else '?')}.{name}"
        found[name] = " ".join(parts)
    return found


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _users(diff: ParsedDiff, path: str, symbol: str) -> list[str]:
    last = symbol.rsplit(".", 1)[-1]
    pattern = rf"\.{re.escape(last)}\s*\(" if "." in symbol else rf"\b{re.escape(last)}\b"
    found = re.compile(pattern)
    return sorted(
        other.path
        for other in diff.files.values()
        if other.path != path and any(found.search(line.text) for line in other.lines)
    )


def find_interface_changes(diff: ParsedDiff) -> list[InterfaceChange]:
    """Public definitions the diff adds, changes or removes, and who else uses them.

    Only definition lines the diff touches are seen: a signature change on a continuation
    line of a multi-line ``def``, or a changed dataclass field, is left to the reviews.
    """
    changes = []
    for file in diff.files.values():
        if _TEST_FILE.search(file.path) or not file.path.endswith(".py"):
            continue
        before, after = _signatures(file, "-"), _signatures(file, "+")
        module = file.path.removesuffix(".py").replace("/", ".")
        for symbol in sorted(before.keys() | after.keys(), key=list(after | before).index):
            old, new = before.get(symbol), after.get(symbol)
            if not _public(symbol) or old == new:
                continue
            kind: Literal["changed", "removed", "added"] = (
                "added" if old is None else "removed" if new is None else "changed"
            )
            used_in = _users(diff, file.path, symbol)
            decision: Decision = (
                "local" if kind == "added" and not used_in
                else "analysis" if kind != "added" and used_in
                else "model"
            )  # fmt: skip
            change = InterfaceChange(
                id=f"{module}.{symbol}", file=file.path, symbol=symbol, kind=kind,
                before=old, after=new, used_in=used_in, decision=decision,
            )  # fmt: skip
            changes.append(change)
    return changes
