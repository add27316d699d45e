"""Field checks shared by the JSON-based formats: messages name the record and the field."""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError
from kotune.records import json_type


def text_field(item: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    if key not in item:
        if required:
            raise DataError(f"{where}: missing field '{key}'")
        return ""
    value = item[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {json_type(value)}")
    return value


def record_id(item: dict[str, Any], fallback: str) -> str:
    """The item's own `id` if it has one, else a stable one from its file and position."""
    value = item.get("id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
        return str(value)
    return fallback


def numbered_items(document: Any, source: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, item) for a JSON array (`file: [i]`) or JSONL lines (`file:line`)."""
    if isinstance(document, list) and all(isinstance(x, tuple) for x in document):
        return [(f"{source}:{lineno}", obj) for lineno, obj in document]
    if isinstance(document, list):
        items = []
        for index, item in enumerate(document):
            if not isinstance(item, dict):
                raise DataError(f"{source}: [{index}] must be an object, got {json_type(item)}")
            items.append((f"{source}: [{index}]", item))
        return items
    raise DataError(
        f"{source}: expected a JSON array of objects or JSON lines, got {json_type(document)}"
    )


def stem(source: str) -> str:
    return source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
