"""Input formats: each a pure parser from the user's data to conversation records.

A conversation record (one JSON object a line after ingest):
`{"id", "conversation_id", "messages": [{"role", "content"}], "meta": {...}}`.
What a parser receives depends on the file's suffix (ingest reads it): `.json` → the loaded
document, `.jsonl` → a list of (line number, object), `.txt`/`.csv` → the decoded text. A parser
returns the records and counts of what it skipped (for metrics/ingest.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kotune.formats import alpaca, chat, kakaotalk, mencius, summarization

Parser = Callable[[Any, str, dict[str, Any]], tuple[list[dict[str, Any]], dict[str, int]]]


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    parse: Parser


FORMATS = {
    f.name: f
    for f in (
        Format("mencius", (".json",), mencius.parse),
        Format("summarization", (".jsonl",), summarization.parse),
        Format("alpaca", (".json", ".jsonl"), alpaca.parse),
        Format("chat", (".jsonl",), chat.parse),
        Format("kakaotalk", (".txt", ".csv"), kakaotalk.parse),
    )
}
