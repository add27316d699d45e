"""The Mencius seed's JSON: single-turn QA items and 3-step deep dialogues.

Accepted shapes: `{"qa": [...], "dialogues": [...]}` or one list mixing both. A QA item is
`{id, source?, question, answer}`; a dialogue is `{id, source?, topic?, turns: [{question, answer}, …]}`
and becomes one conversation with sequential turns, so each answer later carries the earlier turns.
"""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError
from kotune.records import json_type, make_record


def _text(item: dict[str, Any], key: str, where: str) -> str:
    if key not in item:
        raise DataError(f"{where}: missing field '{key}'")
    value = item[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {json_type(value)}")
    return value


def _item_id(item: dict[str, Any], where: str) -> str:
    value = item.get("id")
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise DataError(f"{where}: missing field 'id' (a non-empty string)")
    return str(value)


def _qa_record(item: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    item_id = _item_id(item, where)
    where = f"{where} (id {item_id})"
    messages = [
        {"role": "user", "content": _text(item, "question", where)},
        {"role": "assistant", "content": _text(item, "answer", where)},
    ]
    meta = {"kind": "qa", "passage": item.get("source", ""), "file": source}
    return make_record(item_id, messages, meta)


def _dialogue_record(item: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    item_id = _item_id(item, where)
    where = f"{where} (id {item_id})"
    turns = item["turns"]
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: field 'turns' must be a non-empty list, got {json_type(turns)}")
    messages = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: turns[{k}] must be an object, got {json_type(turn)}")
        messages.append({"role": "user", "content": _text(turn, "question", f"{where} turns[{k}]")})
        messages.append(
            {"role": "assistant", "content": _text(turn, "answer", f"{where} turns[{k}]")}
        )
    meta = {
        "kind": "dialogue",
        "passage": item.get("source", ""),
        "topic": item.get("topic", ""),
        "file": source,
    }
    return make_record(item_id, messages, meta)


def parse(document: Any, source: str, options: None) -> tuple[list[dict], dict[str, int]]:
    """Turn one loaded Mencius JSON document into conversation records (in file order)."""
    if isinstance(document, dict):
        unknown = sorted(set(document) - {"qa", "dialogues"})
        if unknown:
            raise DataError(
                f"{source}: unknown top-level key '{unknown[0]}' (expected qa, dialogues)"
            )
        groups = [(name, document.get(name, [])) for name in ("qa", "dialogues")]
    elif isinstance(document, list):
        groups = [("items", document)]
    else:
        raise DataError(
            f"{source}: expected an object with qa/dialogues or a list of items, "
            f"got {json_type(document)}"
        )
    records = []
    for group, items in groups:
        if not isinstance(items, list):
            raise DataError(f"{source}: '{group}' must be a list, got {json_type(items)}")
        for index, item in enumerate(items):
            where = f"{source}: {group}[{index}]"
            if not isinstance(item, dict):
                raise DataError(f"{where}: expected an object, got {json_type(item)}")
            build = _dialogue_record if "turns" in item else _qa_record
            records.append(build(item, where, source))
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            raise DataError(f"{source}: duplicate id '{record['id']}'")
        seen.add(record["id"])
    return records, {}
