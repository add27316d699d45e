"""The conversation record: its one constructor, its checks, the checked reader every stage
uses, and the training examples it yields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kotune.errors import DataError
from kotune.files import not_utf8, open_input, read_jsonl

ROLES = ("system", "user", "assistant")


def json_type(value: Any) -> str:
    """A JSON value's type as the user wrote it (null, not NoneType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def make_record(
    record_id: str,
    messages: list[dict[str, str]],
    meta: dict[str, Any],
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """A conversation record, keys in their canonical order (every format builds them here)."""
    return {
        "id": record_id,
        "conversation_id": conversation_id or record_id,
        "messages": messages,
        "meta": meta,
    }


def check_record(record: dict[str, Any], where: str) -> None:
    """Raise DataError naming `where` and the field if `record` is not a conversation record."""
    for key in ("id", "conversation_id", "messages"):
        if key not in record:
            raise DataError(f"{where}: missing field '{key}'")
    for key in ("id", "conversation_id"):
        if not isinstance(record[key], str) or not record[key]:
            got = json_type(record[key]) if record[key] != "" else "an empty string"
            raise DataError(f"{where}: field '{key}' must be a non-empty string, got {got}")
    messages = record["messages"]
    if not isinstance(messages, list):
        raise DataError(f"{where}: field 'messages' must be a list, got {json_type(messages)}")
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: messages[{k}] must be an object, got {json_type(message)}")
        if message.get("role") not in ROLES:
            raise DataError(
                f"{where}: messages[{k}].role must be one of {', '.join(ROLES)}, "
                f"got {message.get('role')!r}"
            )
        if not isinstance(message.get("content"), str):
            got = json_type(message["content"]) if "content" in message else "nothing"
            raise DataError(f"{where}: messages[{k}].content must be a string, got {got}")
    if "meta" in record and not isinstance(record["meta"], dict):
        raise DataError(f"{where}: field 'meta' must be an object, got {json_type(record['meta'])}")


def read_records(
    path: str | Path, start: int = 0, end: int | None = None, first_lineno: int = 1
) -> Iterator[dict[str, Any]]:
    """Conversation records from a JSONL file (or the lines between two byte offsets of it),
    each checked: a bad one is a DataError naming the file, the line and the field. Every stage
    that reads records reads them here."""
    if start == 0 and end is None:
        for lineno, record in read_jsonl(path):
            check_record(record, f"{path}:{lineno}")
            yield record
        return
    path = Path(path)
    with open_input(path) as handle:
        handle.seek(start)
        data = handle.read((end if end is not None else 1 << 62) - start)
    if start == 0:
        data = data.removeprefix(b"\xef\xbb\xbf")
    for lineno, raw in enumerate(data.split(b"\n"), start=first_lineno):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(not_utf8(path, lineno, raw, error)) from None
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: invalid JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {json_type(record)}")
        check_record(record, where)
        yield record


def training_examples(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every assistant turn that answers a user turn, with all earlier turns as its context.

    A 3-step dialogue gives 3 examples; the third carries the first two question/answer pairs.
    """
    examples = []
    messages = record["messages"]
    for k, message in enumerate(messages):
        if message["role"] != "assistant" or k == 0 or messages[k - 1]["role"] != "user":
            continue
        examples.append(
            {
                "id": f"{record['id']}#{k}",
                "conversation_id": record["conversation_id"],
                "context": [dict(m) for m in messages[:k]],
                "answer": message["content"],
            }
        )
    return examples


def count_messages(records: list[dict[str, Any]]) -> dict[str, int]:
    """Conversation, message and per-role counts for metrics."""
    counts = {"conversations": len(records), "messages": 0}
    for role in ROLES:
        counts[f"{role}_turns"] = 0
    for record in records:
        counts["messages"] += len(record["messages"])
        for message in record["messages"]:
            counts[f"{message['role']}_turns"] += 1
    counts["examples"] = sum(count_examples(r) for r in records)
    return counts


def count_examples(record: dict[str, Any]) -> int:
    """len(training_examples(record)), without building them."""
    messages = record["messages"]
    return sum(
        1
        for k in range(1, len(messages))
        if messages[k]["role"] == "assistant" and messages[k - 1]["role"] == "user"
    )
