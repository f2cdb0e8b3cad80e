"""Generate a small, deterministic instance that validates against a JSON schema.

The fake model API uses this to answer forced tool calls and ``json_schema`` structured-output requests
with a document the caller's own validation accepts, without any model. The generator is deliberately
minimal: required properties only (plus optional ones when ``minProperties`` demands), the first enum
value, the smallest number inside the bounds, the shortest string that satisfies the length limits.

Supported keywords: ``$ref`` (local ``#/...`` pointers), ``const``, ``enum``, ``type`` (single or list),
``allOf`` (merged), ``anyOf`` / ``oneOf`` (first branch), ``properties`` / ``required`` /
``minProperties``, ``items`` / ``prefixItems`` / ``minItems`` / ``uniqueItems``, ``minimum`` /
``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum`` / ``multipleOf``, ``minLength`` /
``maxLength`` / ``format`` and, on a best-effort basis, ``pattern`` (a few candidates are tried).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["generate_instance"]

# Recursion guard for self-referencing schemas ($ref cycles): deeper optional structure is cut off.
_MAX_DEPTH = 32

_FORMAT_EXAMPLES: dict[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "duration": "PT1S",
}


def generate_instance(schema: dict[str, Any] | bool, root: dict[str, Any] | None = None) -> Any:
    """Return a minimal instance valid against ``schema`` (``root`` resolves ``$ref``; defaults to it)."""
    if isinstance(schema, bool):
        return None
    return _gen(schema, root if root is not None else schema, 0, 0)


def _resolve_ref(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref pointers are supported, got {ref!r}")
    node: Any = root
    for raw in ref.lstrip("#").split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point at a schema object")
    return node


def _merge_all_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Flatten ``allOf`` into one schema: properties merged, required lists unioned, other keys layered."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for sub in schema.get("allOf", []):
        if not isinstance(sub, dict):
            continue
        sub_schema = _resolve_ref(sub["$ref"], root) if "$ref" in sub else sub
        if "allOf" in sub_schema:
            sub_schema = _merge_all_of(sub_schema, root)
        for key, value in sub_schema.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _infer_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    if isinstance(declared, list) and declared:
        non_null = [t for t in declared if t != "null"]
        return str(non_null[0] if non_null else declared[0])
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
        return "string"
    return "null"


def _gen(schema: dict[str, Any], root: dict[str, Any], depth: int, variant: int) -> Any:
    """``variant`` makes sibling array items differ so ``uniqueItems`` holds."""
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        target = _resolve_ref(str(schema["$ref"]), root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if rest else target
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        options = list(schema["enum"])
        return options[variant % len(options)]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next(
                (b for b in branches if isinstance(b, dict) and b.get("type") != "null"), branches[0]
            )
            base = {k: v for k, v in schema.items() if k != key}
            return _gen({**base, **chosen}, root, depth + 1, variant)
    kind = _infer_type(schema)
    if kind == "object":
        return _gen_object(schema, root, depth)
    if kind == "array":
        return _gen_array(schema, root, depth)
    if kind == "string":
        return _gen_string(schema, variant)
    if kind == "integer":
        return int(_gen_number(schema, integer=True, variant=variant))
    if kind == "number":
        return _gen_number(schema, integer=False, variant=variant)
    if kind == "boolean":
        return variant % 2 == 1
    return None


def _gen_object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {}) or {}
    names = list(dict.fromkeys(schema.get("required", []) or []))
    minimum = int(schema.get("minProperties", 0) or 0)
    for name in properties:
        if len(names) >= minimum:
            break
        if name not in names:
            names.append(name)
    result: dict[str, Any] = {}
    for name in names:
        sub = properties.get(name)
        if sub is None:
            extra = schema.get("additionalProperties")
            sub = extra if isinstance(extra, dict) else {"type": "string"}
        result[name] = _gen(sub, root, depth + 1, 0) if isinstance(sub, dict) else None
    return result


def _gen_array(schema: dict[str, Any], root: dict[str, Any], depth: int) -> list[Any]:
    prefix: list[Any] = schema.get("prefixItems", []) or []
    items = schema.get("items")
    count = max(int(schema.get("minItems", 0) or 0), 0)
    result: list[Any] = []
    for index in range(count):
        if index < len(prefix) and isinstance(prefix[index], dict):
            result.append(_gen(prefix[index], root, depth + 1, index))
        elif isinstance(items, dict):
            result.append(_gen(items, root, depth + 1, index))
        else:
            result.append(index)
    return result


def _gen_string(schema: dict[str, Any], variant: int) -> str:
    min_len = int(schema.get("minLength", 0) or 0)
    max_len = schema.get("maxLength")
    fmt = schema.get("format")
    pattern = schema.get("pattern")
    base = _FORMAT_EXAMPLES.get(str(fmt), "example") if fmt else "example"
    if variant:
        base = f"{base}{variant}" if not fmt else base
    candidates = [base]
    if pattern:
        candidates += ["a", "A", "0", "a1", "A1", "abc", "ABC", "123", "example", "", "x" * max(min_len, 1)]
    for candidate in candidates:
        text = candidate
        if len(text) < min_len:
            text = text + "x" * (min_len - len(text))
        if isinstance(max_len, int) and len(text) > max_len:
            text = text[:max_len]
        if pattern is None or re.search(str(pattern), text):
            return text
    return candidates[0]


def _gen_number(schema: dict[str, Any], *, integer: bool, variant: int) -> float | int:
    lower: float | None = None
    upper: float | None = None
    step = 1.0 if integer else 0.5
    if isinstance(schema.get("minimum"), int | float):
        lower = float(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        candidate = float(schema["exclusiveMinimum"]) + (1 if integer else step / 2)
        lower = candidate if lower is None else max(lower, candidate)
    if isinstance(schema.get("maximum"), int | float):
        upper = float(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        candidate = float(schema["exclusiveMaximum"]) - (1 if integer else step / 2)
        upper = candidate if upper is None else min(upper, candidate)
    value = 0.0 if lower is None else lower
    if integer:
        value = float(math.ceil(value))
    value += variant
    if upper is not None and value > upper:
        value = upper if lower is None else max(lower, upper - 0.0)
        if integer:
            value = float(math.floor(value))
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = math.ceil(value / multiple) * float(multiple)
        if upper is not None and value > upper:
            value = math.floor(upper / multiple) * float(multiple)
    if integer or value.is_integer():
        return int(value)
    return value
