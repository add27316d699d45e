"""Input formats: each a pure parser from the user's data to conversation records.

A conversation record (one JSON object a line after ingest; kotune.records.make_record builds it):
`{"id", "conversation_id", "messages": [{"role", "content"}], "meta": {...}}`.
What a parser receives depends on what the format reads (ingest reads it): `json` formats get the
loaded document of a `.json` file or a list of (line number, object) of a `.jsonl` file, `text`
formats the decoded text. Each parser also receives its typed options (checked once, by ingest)
and returns the records and counts of what it skipped (for metrics/ingest.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kotune.config import FORMAT_NAMES
from kotune.formats import alpaca, chat, kakaotalk, mencius, summarization

Parser = Callable[[Any, str, Any], tuple[list[dict[str, Any]], dict[str, int]]]


@dataclass(frozen=True)
class Format:
    name: str
    reads: Literal["json", "text"]
    suffixes: tuple[str, ...]  # what a folder is searched for; a file named alone may differ (text)
    parse: Parser
    options: type | None = None  # the options dataclass (None: the format takes none)
    # (document, source, options, workers) → (JSON lines, ids, counts), for a format that
    # writes its records itself, on several cores (else: parse, then one core encodes)
    convert: Callable | None = None


FORMATS = {
    f.name: f
    for f in (
        Format("mencius", "json", (".json",), mencius.parse),
        Format("summarization", "json", (".jsonl",), summarization.parse, summarization.Options),
        Format("alpaca", "json", (".json", ".jsonl"), alpaca.parse),
        Format("chat", "json", (".jsonl",), chat.parse),
        Format(
            "kakaotalk",
            "text",
            (".txt", ".csv"),
            kakaotalk.parse,
            kakaotalk.Options,
            kakaotalk.convert,
        ),
    )
}
if tuple(FORMATS) != FORMAT_NAMES:  # the one list of formats is kotune.config.FORMAT_NAMES
    raise ImportError(f"formats {tuple(FORMATS)} differ from config.FORMAT_NAMES {FORMAT_NAMES}")
