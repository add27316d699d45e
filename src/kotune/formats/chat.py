"""Chat JSONL: `{"messages": [{role, content}]}` (OpenAI style) or ShareGPT
`{"conversations": [{from, value}]}`; one conversation a line."""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError
from kotune.formats.fields import numbered_items, record_id, stem, text_field

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
        raise DataError(f"{where}: field '{key}' must be a non-empty list")
    messages = []
    for k, turn in enumerate(turns):
        at = f"{where} {key}[{k}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at}: must be an object")
        role = SHAREGPT_ROLES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise DataError(
                f"{at}: field '{role_key}' must be one of {', '.join(SHAREGPT_ROLES)}, "
                f"got {turn.get(role_key)!r}"
            )
        messages.append({"role": role, "content": text_field(turn, text_key, at)})
    return messages


def parse(document: Any, source: str, options: dict[str, Any]) -> tuple[list[dict], dict[str, int]]:
    if options:
        raise DataError(f"persona.data.options: the chat format takes none, got {sorted(options)}")
    records = []
    for n, (where, item) in enumerate(numbered_items(document, source), start=1):
        item_id = record_id(item, f"{stem(source)}-{n}")
        records.append(
            {
                "id": item_id,
                "conversation_id": item_id,
                "messages": _messages(item, f"{where} (id {item_id})"),
                "meta": {"kind": "chat", "file": source},
            }
        )
    return records, {}
