"""Alpaca `{instruction, input, output}` as a JSON array or JSONL (the menu seed, and any
self-instruct data): instruction (+ input) is the question, output the answer."""

from __future__ import annotations

from typing import Any

from kotune.formats.fields import numbered_items, record_id, stem, text_field
from kotune.records import make_record


def parse(document: Any, source: str, options: None) -> tuple[list[dict], dict[str, int]]:
    records = []
    for n, (where, item) in enumerate(numbered_items(document, source), start=1):
        item_id = record_id(item, f"{stem(source)}-{n}")
        where = f"{where} (id {item_id})"
        instruction = text_field(item, "instruction", where)
        extra = text_field(item, "input", where, required=False)
        question = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": text_field(item, "output", where)},
        ]
        records.append(make_record(item_id, messages, {"kind": "alpaca", "file": source}))
    return records, {}
