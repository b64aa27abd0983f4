"""The JSON Schema subset the admin API declares, and the one checker that enforces it.

Request bodies are declared once, in :mod:`broker.admin.routes`, and that very schema
is both published (:mod:`broker.admin.openapi`) and checked here, so the document
and the server cannot disagree.  Supported keywords: ``type`` (one or a list),
``properties``, ``required``, ``additionalProperties`` (true or false), ``items``,
``minItems``/``maxItems``, ``minLength``/``maxLength``, ``minimum``/``maximum``,
``enum`` and ``pattern``.  The first fault raises :class:`BadRequest` naming the field
(``a.b[2].c``) and what was expected.

:func:`clean` refuses what JSON allows but the registry cannot keep: strings with NUL
(PostgreSQL text cannot hold it) or lone surrogates (not UTF-8), and nesting deeper
than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broker.admin.errors import BadRequest

MAX_DEPTH = 40
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _child(where: str, name: Any) -> str:
    """The field name of member ``name`` of ``where`` (the body's own members are named bare)."""
    return (str(name) if where == "body" else f"{where}.{name}")[:200]


def _describe(schema: Mapping[str, Any]) -> str:
    if "description" in schema:
        return str(schema["description"])
    kinds = schema.get("type", "any value")
    return " or ".join(kinds) if isinstance(kinds, list) else f"{'an' if kinds[0] in 'aeiou' else 'a'} {kinds}"


def check(schema: Mapping[str, Any], value: Any, where: str = "body") -> None:
    """Raise :class:`BadRequest` unless ``value`` matches ``schema`` (the subset above)."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is(value, k) for k in kinds):
            raise BadRequest(where, _describe(schema))
    if "enum" in schema and value not in schema["enum"]:
        raise BadRequest(where, "one of " + ", ".join(map(str, schema["enum"])))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 30):
            raise BadRequest(where, f"{_describe(schema)} ({schema.get('minLength', 0)}-"
                                    f"{schema.get('maxLength', 'any')} characters)")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise BadRequest(where, _describe(schema))
    if _is(value, "number"):
        if value < schema.get("minimum", float("-inf")) or value > schema.get("maximum", float("inf")):
            raise BadRequest(where, f"a number from {schema.get('minimum')} to {schema.get('maximum')}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 30):
            raise BadRequest(where, f"a list of {schema.get('minItems', 0)} to {schema.get('maxItems', 'any')} items")
        if "items" in schema:
            for index, item in enumerate(value):
                check(schema["items"], item, f"{where}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise BadRequest(_child(where, name), _describe(properties.get(name, {})))
        for name, item in value.items():
            field = _child(where, name)
            if name in properties:
                check(properties[name], item, field)
            elif schema.get("additionalProperties", True) is False:
                raise BadRequest(field, "one of the fields " + ", ".join(sorted(properties)) if properties
                                 else "no fields")


def clean(value: Any, where: str = "body", depth: int = 0) -> None:
    """Refuse NUL, lone surrogates and deep nesting anywhere in ``value`` (see the module documentation)."""
    if depth > MAX_DEPTH:
        raise BadRequest(where, f"at most {MAX_DEPTH} levels of nesting")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(where, "text without NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(where, "text in UTF-8 (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            clean(key, where, depth + 1)
            clean(item, _child(where, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            clean(item, f"{where}[{index}]"[:200], depth + 1)
