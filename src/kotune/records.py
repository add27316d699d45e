"""The conversation record: checks and the training examples it yields."""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError

ROLES = ("system", "user", "assistant")


def check_record(record: dict[str, Any], where: str) -> None:
    """Raise DataError naming `where` and the field if `record` is not a conversation record."""
    for key in ("id", "conversation_id", "messages"):
        if key not in record:
            raise DataError(f"{where}: missing field '{key}'")
    for key in ("id", "conversation_id"):
        if not isinstance(record[key], str) or not record[key]:
            raise DataError(f"{where}: field '{key}' must be a non-empty string")
    messages = record["messages"]
    if not isinstance(messages, list):
        raise DataError(f"{where}: field 'messages' must be a list")
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: messages[{k}] must be an object")
        if message.get("role") not in ROLES:
            raise DataError(
                f"{where}: messages[{k}].role must be one of {', '.join(ROLES)}, "
                f"got {message.get('role')!r}"
            )
        if not isinstance(message.get("content"), str):
            raise DataError(f"{where}: messages[{k}].content must be a string")
    if "meta" in record and not isinstance(record["meta"], dict):
        raise DataError(f"{where}: field 'meta' must be an object")


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
    counts["examples"] = sum(len(training_examples(r)) for r in records)
    return counts
