"""Pictures of the data: the most frequent nouns (Kiwi) and turn lengths per role, as small
tables that dvc.yaml declares as bar plots."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Any

# Turn-length buckets in characters: chat lines, sentences, paragraphs, abstracts.
LENGTH_BUCKETS = (10, 20, 50, 100, 200, 500, 1000)


def sample_every(sizes: list[int], max_chars: int) -> list[int]:
    """Indices of every k-th item (a conversation of `sizes[i]` characters) so that about
    `max_chars` characters remain, spread over the whole data (deterministic: no random state);
    0: all of them. Whole conversations, so only those are read back."""
    total = sum(sizes)
    if max_chars <= 0 or total <= max_chars:
        return list(range(len(sizes)))
    return list(range(0, len(sizes), math.ceil(total / max_chars)))


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


ROLE_CODES = ("system", "user", "assistant")
_ROLE_INDEX = {role: i for i, role in enumerate(ROLE_CODES)}


def turn_code(role: str, size: int) -> int:
    """A turn's length bucket and role in one small number (a byte: millions of turns are counted
    in other processes and sent back)."""
    return bisect.bisect_right(LENGTH_BUCKETS, size) * len(ROLE_CODES) + _ROLE_INDEX[role]


def turn_codes(roles: list[str], sizes: list[int]) -> bytes:
    """turn_code of each turn of a conversation, as bytes."""
    bucket, index, n = bisect.bisect_right, _ROLE_INDEX, len(ROLE_CODES)
    return bytes(
        [bucket(LENGTH_BUCKETS, size) * n + index[role] for role, size in zip(roles, sizes)]
    )


def turn_length_table(codes: Counter) -> list[dict[str, Any]]:
    """Rows of (length bucket, user turns, assistant turns), shortest bucket first, from a count
    of turn_code()s."""
    counts: Counter = Counter()
    for code, n in codes.items():
        bucket, role = divmod(code, len(ROLE_CODES))
        lower = LENGTH_BUCKETS[bucket - 1] if bucket else 0
        counts[(length_bucket(lower), ROLE_CODES[role])] += n
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
