"""Pictures of the data: the most frequent nouns (Kiwi) and turn lengths per role, as small
tables that dvc.yaml declares as bar plots."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

# Turn-length buckets in characters: chat lines, sentences, paragraphs, abstracts.
LENGTH_BUCKETS = (10, 20, 50, 100, 200, 500, 1000)


def sample_texts(texts: list[str], max_chars: int) -> list[str]:
    """Every k-th text so that about `max_chars` characters remain, spread over the whole data
    (deterministic: no random state)."""
    total = sum(len(t) for t in texts)
    if max_chars <= 0 or total <= max_chars:
        return texts
    stride = math.ceil(total / max_chars)
    return texts[::stride]


def top_nouns(texts: list[str], n: int, kiwi: Any) -> list[tuple[str, int]]:
    """The `n` most frequent common nouns (Kiwi NNG, two syllables or more), ties by noun."""
    counts: Counter = Counter()
    for tokens in kiwi.tokenize(texts):
        counts.update(t.form for t in tokens if t.tag == "NNG" and len(t.form) >= 2)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def length_bucket(size: int) -> str:
    """A category label, `20-49` or `1000+` (drawn as categories in data order, not numbers)."""
    lower = 0
    for upper in LENGTH_BUCKETS:
        if size < upper:
            return f"{lower}-{upper - 1}"
        lower = upper
    return f"{lower}+"


def turn_length_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of (length bucket, user turns, assistant turns), shortest bucket first."""
    counts: Counter = Counter()
    for record in records:
        for message in record["messages"]:
            counts[(length_bucket(len(message["content"])), message["role"])] += 1
    buckets = sorted(
        {bucket for bucket, _ in counts}, key=lambda b: int(b.split("-")[0].rstrip("+"))
    )
    return [
        {
            "length": bucket,
            "user": counts[(bucket, "user")],
            "assistant": counts[(bucket, "assistant")],
        }
        for bucket in buckets
    ]
