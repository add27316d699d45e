"""Chat JSONL: `{"messages": [{role, content}]}` (OpenAI style) or ShareGPT
`{"conversations": [{from, value}]}`; one conversation a line."""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError
from kotune.formats.fields import numbered_items, record_id, stem, text_field
from kotune.records import json_type, make_record

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


def _messages(item: dict[str, Any], where: str) -> list[dict[str, str]]:
    if "messages" in item:
        key, role_key, text_key = "messages", "role", "content"
    elif "conversations" in item:
        key, role_key, text_key = "conversations", "from", "value"
    else:
        raise DataError(f"{where}: missing field 'messages' (or ShareGPT 'conversations')")
    turns = item[key]
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: field '{key}' must be a non-empty list, got {json_type(turns)}")
    messages = []
    for k, turn in enumerate(turns):
        at = f"{where} {key}[{k}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at}: must be an object, got {json_type(turn)}")
        role = SHAREGPT_ROLES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise DataError(
                f"{at}: field '{role_key}' must be one of {', '.join(SHAREGPT_ROLES)}, "
                f"got {turn.get(role_key)!r}"
            )
        messages.append({"role": role, "content": text_field(turn, text_key, at)})
    return messages


def parse(document: Any, source: str, options: None) -> tuple[list[dict], dict[str, int]]:
    records = []
    for n, (where, item) in enumerate(numbered_items(document, source), start=1):
        item_id = record_id(item, f"{stem(source)}-{n}")
        messages = _messages(item, f"{where} (id {item_id})")
        records.append(make_record(item_id, messages, {"kind": "chat", "file": source}))
    return records, {}
