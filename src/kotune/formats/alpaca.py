"""Alpaca `{instruction, input, output}` as a JSON array or JSONL (the menu seed, and any
self-instruct data): instruction (+ input) is the question, output the answer."""

from __future__ import annotations

from typing import Any

from kotune.errors import DataError
from kotune.formats.fields import numbered_items, record_id, stem, text_field


def parse(document: Any, source: str, options: dict[str, Any]) -> tuple[list[dict], dict[str, int]]:
    if options:
        raise DataError(
            f"persona.data.options: the alpaca format takes none, got {sorted(options)}"
        )
    records = []
    for n, (where, item) in enumerate(numbered_items(document, source), start=1):
        item_id = record_id(item, f"{stem(source)}-{n}")
        where = f"{where} (id {item_id})"
        instruction = text_field(item, "instruction", where)
        extra = text_field(item, "input", where, required=False)
        question = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        records.append(
            {
                "id": item_id,
                "conversation_id": item_id,
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": text_field(item, "output", where)},
                ],
                "meta": {"kind": "alpaca", "file": source},
            }
        )
    return records, {}
