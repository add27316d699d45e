"""Summarisation JSONL `{text, summary}` (the parentcare seed): the persona's instruction and
the text are the question, the summary is the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kotune.formats.fields import numbered_items, record_id, stem, text_field
from kotune.records import make_record


@dataclass(frozen=True)
class Options:
    instruction: str = "다음 글을 핵심만 담아 2~3문장으로 요약하세요."


def parse(document: Any, source: str, opts: Options) -> tuple[list[dict], dict[str, int]]:
    records = []
    for n, (where, item) in enumerate(numbered_items(document, source), start=1):
        item_id = record_id(item, f"{stem(source)}-{n}")
        text = text_field(item, "text", f"{where} (id {item_id})")
        summary = text_field(item, "summary", f"{where} (id {item_id})")
        messages = [
            {"role": "user", "content": f"{opts.instruction}\n\n{text}"},
            {"role": "assistant", "content": summary},
        ]
        records.append(make_record(item_id, messages, {"kind": "summarization", "file": source}))
    return records, {}
