"""Structured output: a deterministic JSON instance of a JSON schema.

Handles what SDK-transformed schemas contain: ``object`` / ``array`` / ``string`` /
``integer`` / ``number`` / ``boolean`` / ``null``, ``enum`` and ``const``, ``anyOf`` /
``oneOf`` / ``allOf``, type lists, ``$ref`` into ``$defs`` (or ``definitions``), and the
usual bounds. Every property is filled (required or not). Strings are chosen by property
name and ``format`` and drawn from the instruction's key terms, so content is plausible.
The flaw for structured output (:func:`empty_one_field`) keeps the instance schema-valid.
With diff anchors (:mod:`.diffs`), objects with a file and a line field cite a real line of
the diff's new side, rotating through the anchors from one array item to the next.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_sim.diffs import Anchor, anchor_fields

__all__ = ["FillContext", "empty_one_field", "fill", "resolve", "twist_one_field"]

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "duration": "PT1H",
    "email": "someone@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_FILLER = ("result", "approach", "outcome")
_SCALARS: dict[str, Any] = {"boolean": True, "null": None}
_PROSE_NAMES = ("reason", "summary", "description", "explanation", "answer", "text", "content")
_TITLE_NAMES = ("title", "name", "heading", "label", "topic")


@dataclass(frozen=True, slots=True)
class FillContext:
    """What the instance is drawn from.

    Attributes:
        root: The whole schema (``$ref`` targets).
        terms: Key terms of the instruction.
        rng: Seeded choices.
        anchors: Diff lines that objects with file and line fields cite (may be empty).
    """

    root: Mapping[str, Any]
    terms: Sequence[str]
    rng: random.Random
    anchors: Sequence[Anchor] = ()


def resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow ``$ref`` (local ``#/...`` pointers only) until a schema without one."""
    for _ in range(_MAX_DEPTH):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        schema = target if isinstance(target, Mapping) else {}
    return schema


def _type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        options = [k for k in kind if k != "null"] or kind
        return str(options[0]) if options else None
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


def fill(schema: Mapping[str, Any], ctx: FillContext, name: str = "", depth: int = 0) -> Any:
    """Return a value valid against ``schema`` (``name`` is the property it is for)."""
    schema = resolve(schema, ctx.root)
    if depth > _MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        variants = schema.get(key)
        if isinstance(variants, list) and variants:
            return fill(_pick_variant(variants, ctx), ctx, name, depth + 1)
    return _by_type(schema, ctx, name, depth)


def _pick_variant(variants: Sequence[Any], ctx: FillContext) -> Mapping[str, Any]:
    for variant in variants:
        if isinstance(variant, Mapping) and resolve(variant, ctx.root).get("type") != "null":
            return variant
    first = variants[0]
    return first if isinstance(first, Mapping) else {}


def _by_type(schema: Mapping[str, Any], ctx: FillContext, name: str, depth: int) -> Any:
    kind = _type(schema)
    if kind == "object":
        return _object(schema, ctx, depth)
    if kind == "array":
        return _array(schema, ctx, name, depth)
    if kind == "integer":
        return math.ceil(_number(schema, 3))
    if kind == "number":
        return _number(schema, 0.8)
    if kind in _SCALARS:
        return _SCALARS[kind]
    return _string(schema, ctx, name)


def _object(schema: Mapping[str, Any], ctx: FillContext, depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    instance = {key: fill(sub, ctx, key, depth + 1) for key, sub in properties.items()}
    fields = anchor_fields(properties) if ctx.anchors else None
    if fields is not None and isinstance(instance[fields[1]], int):
        file_key, line_key, quote_key = fields
        anchor = ctx.anchors[0]
        instance[file_key], instance[line_key] = anchor.file, anchor.line
        if quote_key is not None and isinstance(instance[quote_key], str):
            instance[quote_key] = anchor.text.strip()
    return instance


def _array(schema: Mapping[str, Any], ctx: FillContext, name: str, depth: int) -> list[Any]:
    low = int(schema.get("minItems", 0))
    high = schema.get("maxItems")
    count = max(low, 2) if depth < _MAX_DEPTH // 2 else low  # recursive schemas end
    if isinstance(high, int):
        count = min(count, high)
    items = schema.get("items")
    item_schema = items if isinstance(items, Mapping) else {"type": "string"}
    singular = name[:-1] if name.endswith("s") else name
    return [fill(item_schema, _shifted(ctx, i), singular, depth + 1) for i in range(count)]


def _shifted(ctx: FillContext, offset: int) -> FillContext:
    terms = list(dict.fromkeys([*ctx.terms, *_FILLER]))
    anchors = list(ctx.anchors)
    turn = offset % len(anchors) if anchors else 0
    offset %= len(terms)
    return FillContext(
        ctx.root, terms[offset:] + terms[:offset], ctx.rng, anchors[turn:] + anchors[:turn]
    )


def _number(schema: Mapping[str, Any], default: float) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = default
    if isinstance(low, int | float) and value <= low:
        value = low + 1 if isinstance(low, int) else low + 0.1
    if isinstance(high, int | float) and value >= high:
        value = (low + high) / 2 if isinstance(low, int | float) else high - 0.1
    return value


def _string(schema: Mapping[str, Any], ctx: FillContext, name: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    terms = [*ctx.terms, *_FILLER]
    lowered = name.lower()
    if lowered == "id" or lowered.endswith("_id"):
        text = "_".join(terms[:2])
    elif any(word in lowered for word in _TITLE_NAMES):
        text = " ".join(term.capitalize() for term in terms[:3])
    elif any(word in lowered for word in _PROSE_NAMES):
        text = f"{terms[0].capitalize()} is addressed with attention to {terms[1]} and {terms[2]}."
    else:
        text = terms[0]
    limit = schema.get("maxLength")
    return text[:limit] if isinstance(limit, int) else text


def _can_be_empty(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    schema = resolve(schema, root)
    kind = _type(schema)
    if "enum" in schema or "const" in schema or "anyOf" in schema:
        return None
    if kind == "array" and int(schema.get("minItems", 0)) == 0:
        return "list"
    if kind == "string" and int(schema.get("minLength", 0)) == 0 and "format" not in schema:
        return "string"
    return None


def empty_one_field(
    instance: dict[str, Any], schema: Mapping[str, Any], rng: random.Random
) -> str | None:
    """Empty one required list or string of the top-level object, keeping it schema-valid.

    Returns:
        The flaw in words, or ``None`` if no field could be emptied.
    """
    root = resolve(schema, schema)
    properties = root.get("properties")
    if not isinstance(properties, Mapping):
        return None
    required = [k for k in root.get("required", list(properties)) if k in properties]
    candidates = [(k, _can_be_empty(properties[k], schema)) for k in required]
    usable = [(key, kind) for key, kind in candidates if kind is not None]
    if not usable:
        return None
    key, kind = usable[rng.randrange(len(usable))]
    instance[key] = [] if kind == "list" else ""
    return f"required field '{key}' is empty"


def twist_one_field(
    instance: dict[str, Any], schema: Mapping[str, Any], terms: Sequence[str]
) -> str | None:
    """Make one top-level value plausible but wrong (a subtle flaw), keeping it valid.

    Flips the first boolean, or else rewrites the first free-text string to claim the
    opposite. Returns the flaw in words, or ``None`` if nothing could be twisted.
    """
    root = resolve(schema, schema)
    properties = root.get("properties")
    if not isinstance(properties, Mapping):
        return None
    for key, sub in properties.items():
        if _type(resolve(sub, schema)) == "boolean" and isinstance(instance.get(key), bool):
            instance[key] = not instance[key]
            return f"field '{key}' states the opposite of what the task's inputs support"
    for key, sub in properties.items():
        if _can_be_empty(sub, schema) == "string" and isinstance(instance.get(key), str):
            subject = terms[0] if terms else "the main factor"
            instance[key] = f"{subject.capitalize()} has no bearing on the outcome."
            return f"field '{key}' claims the opposite of its source"
    return None
