"""Input formats: each a pure parser from the user's data to conversation records.

A conversation record (one JSON object a line after ingest):
`{"id", "conversation_id", "messages": [{"role", "content"}], "meta": {...}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kotune.formats import mencius

# format name -> (file suffixes it reads, parser(document, source name, options) -> records)
PARSERS: dict[str, tuple[tuple[str, ...], Callable[[Any, str, dict[str, Any]], list[dict]]]] = {
    "mencius": ((".json",), mencius.parse),
}
