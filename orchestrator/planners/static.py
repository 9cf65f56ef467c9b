"""The static planner: a plan from a JSON or YAML file, validated like any other.

A plan file is untrusted input, so reading one is bounded before anything is built from
it: at most :data:`MAX_PLAN_BYTES` bytes of UTF-8 text, mappings and lists nested at most
:data:`MAX_PLAN_DEPTH` levels deep (checked before a recursive parser sees the text). A
JSON file holds no more than its size; a YAML file may hold more, through aliases
(``*name``), so its values (every mapping, list, key and scalar) are counted as the
aliases expand them, without expanding them: at most :data:`MAX_PLAN_VALUES`, and at most
:data:`ALIAS_EXPANSION` times the values written out plus :data:`ALIAS_ALLOWANCE`. An
alias bomb ("billion laughs") is refused by name, in ``validate`` as in ``run``, instead
of exhausting memory when the run serialises it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import anyio
import yaml
from yaml.events import CollectionStartEvent
from yaml.nodes import CollectionNode, MappingNode, Node, SequenceNode

from orchestrator.dag import validate_plan
from orchestrator.exceptions import PlanValidationError, UserError
from orchestrator.plan import Plan, parse_plan

__all__ = [
    "ALIAS_ALLOWANCE",
    "ALIAS_EXPANSION",
    "MAX_PLAN_BYTES",
    "MAX_PLAN_DEPTH",
    "MAX_PLAN_VALUES",
    "StaticPlanner",
    "load_plan_file",
    "plan_file_schema",
]

MAX_PLAN_BYTES = 64 * 1024 * 1024
"""Largest plan file read (64 MiB; a JSON plan of 100,000 small tasks takes about 11)."""
MAX_PLAN_DEPTH = 100
"""Deepest nesting of mappings and lists (the plan itself takes 4 levels)."""
MAX_PLAN_VALUES = 5_000_000
"""Most values (mappings, lists, keys, scalars) in a YAML plan, its aliases expanded."""
ALIAS_EXPANSION = 10
"""YAML aliases may expand a file to at most this many times the values it writes..."""
ALIAS_ALLOWANCE = 10_000
"""...plus this many."""


class _PlanFileError(Exception):
    """A plan file is out of bounds; the message says how (the caller adds the file)."""


def load_plan_file(path: str | Path) -> Plan:
    """Read a plan from ``.json``, ``.yaml`` or ``.yml``.

    Raises:
        UserError: Naming the file, when it cannot be read or parsed, is out of bounds
            (size, nesting, YAML alias expansion), or is not a plan.
    """
    path = Path(path)
    raw = _read_bytes(path)
    text = _decode(path, raw)
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            data = _load_yaml(text)
            if not isinstance(data, dict):
                raise UserError(f"{path}: a plan file holds a mapping with 'goal' and 'tasks'")
            return parse_plan(data)
        _check_json_depth(raw)  # JSON has no aliases: its size bounds what it holds
        return parse_plan(text)
    except _PlanFileError as exc:
        raise UserError(f"{path}: {exc}") from None
    except PlanValidationError as exc:
        raise UserError(f"{path}: {exc}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PLAN_BYTES + 1)
    except IsADirectoryError:
        raise UserError(f"cannot read plan file {path}: it is a directory") from None
    except OSError as exc:
        raise UserError(f"cannot read plan file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise UserError(f"{path}: plan file larger than {MAX_PLAN_BYTES // 2**20} MiB")
    return raw


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the plan file as UTF-8"
        ) from None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


def _check_json_depth(raw: bytes) -> None:
    """Refuse JSON nested too deep, before a parser recurses into it (strings skipped)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > MAX_PLAN_DEPTH:
                raise _PlanFileError(_too_deep())
        else:
            depth -= 1


def _too_deep(where: str = "") -> str:
    return (
        f"nested more than {MAX_PLAN_DEPTH} levels deep{where}; a plan file may nest "
        f"mappings and lists at most {MAX_PLAN_DEPTH} levels"
    )


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing to compose mappings and lists nested too deep."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_PLAN_DEPTH:
            mark = event.start_mark
            raise _PlanFileError(_too_deep(f" (line {mark.line + 1})" if mark else ""))
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _load_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _PlanFileError(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _check_expansion(root: Node) -> None:
    """Refuse a YAML document whose aliases expand it too far (or into a loop)."""
    expanded, depth, written = _measure_nodes(root)
    if depth > MAX_PLAN_DEPTH:
        raise _PlanFileError(_too_deep(" once its YAML aliases are expanded"))
    limit = min(MAX_PLAN_VALUES, ALIAS_EXPANSION * written + ALIAS_ALLOWANCE)
    if expanded > limit:
        raise _PlanFileError(
            f"YAML aliases (*name) expand the plan to {expanded:,} values from {written:,} "
            f"written; at most {limit:,} (an alias bomb?): write the values out instead"
        )


def _measure_nodes(root: Node) -> tuple[int, int, int]:
    """Return (values once aliases are expanded, nesting so expanded, distinct nodes).

    An alias is the very node its anchor names, so the node graph is walked once, each
    node's expanded size and depth computed from its children's (no recursion).
    """
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()  # the nodes on the path from the root: a loop if met again
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes = [measured[id(child)] for child in _children(node)]
            values = 1 + sum(size for size, _ in sizes)
            depth = 1 + max((depth for _, depth in sizes), default=0)
            measured[key] = (values, depth if isinstance(node, CollectionNode) else 0)
        elif key in open_nodes:
            line = node.start_mark.line + 1
            raise _PlanFileError(f"a YAML alias refers to the node holding it (line {line})")
        elif key not in measured:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    values, depth = measured[id(root)]
    return values, depth, len(measured)


def _children(node: Node) -> Iterable[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return ()


_PYTHON_WORDS = {"``None``": "null", "``True``": "true", "``False``": "false"}


def plan_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a plan file, derived from :class:`Plan`.

    What a plan file may hold field by field: the same models :func:`load_plan_file`
    validates with, so the two cannot drift. What a schema cannot say, the graph (unique
    ids, known dependencies and tools, no cycles, one output), ``orchestrator validate``
    checks. Each verifier spec requires its ``kind`` (the discriminator), as parsing does.
    """
    schema = Plan.model_json_schema()
    for spec in _discriminated(schema):
        spec["required"] = ["kind", *(name for name in spec.get("required", ()) if name != "kind")]
    for definition in schema["$defs"].values():  # the user-facing paragraph only
        definition["description"] = definition.get("description", "").split("\n\n")[0]
    _json_words(schema)
    described = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Plan file",
        "description": "A plan for `orchestrator run --plan FILE` (JSON or YAML): a goal and "
        "the tasks that reach it. See docs/plan-files.md.",
    }
    return described | {key: value for key, value in schema.items() if key not in described}


def _discriminated(schema: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The definitions a discriminated union (the verifier specs) refers to."""
    found: dict[str, dict[str, Any]] = {}
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for ref in value.get("discriminator", {}).get("mapping", {}).values():
                name = ref.rsplit("/", 1)[-1]
                found[name] = schema["$defs"][name]
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found.values()


def _json_words(value: Any) -> None:
    """Descriptions in JSON's words (``None`` -> null) and Markdown's backticks."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "description" and isinstance(item, str):
                words = item
                for python, json_word in _PYTHON_WORDS.items():
                    words = words.replace(python, json_word)
                value[key] = words.replace("``", "`")
            else:
                _json_words(item)
    elif isinstance(value, list):
        for item in value:
            _json_words(item)


class StaticPlanner:
    """Returns the plan stored in a file (the goal may be overridden).

    Args:
        path: The plan file (JSON or YAML).
        known_tools: Tool names that exist, for validation; ``None`` skips the tool check.
    """

    def __init__(self, path: str | Path, *, known_tools: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self.known_tools = known_tools

    async def plan(self, goal: str | None = None, context: str | None = None) -> Plan:
        """Load, optionally re-goal, and validate the plan (file reading off the loop)."""
        plan = await anyio.to_thread.run_sync(load_plan_file, self.path)
        if goal:
            plan = plan.model_copy(update={"goal": goal})
        validate_plan(plan, known_tools=self.known_tools)
        return plan
