"""The clean step: normalise text, drop empty/over-long turns and duplicates, count every drop.

Order per conversation: normalise → mask PII → filter turns → drop conversations with nothing left
to learn. Duplicates are removed last, over the whole dataset. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kotune.config import CleanConfig, PiiConfig
from kotune.errors import DataError
from kotune.pii import build_masker, leak_report

_SPACES = re.compile(r"[ \t\u00a0\u3000\u200b\ufeff]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# A masker (kotune.pii.RecordMasker) takes a conversation record and returns it masked plus
# counts per PII kind; it runs after normalisation and before filtering and dedupe.
Masker = Callable[[dict[str, Any]], tuple[dict[str, Any], Counter]]


def normalize_text(text: str, form: str = "NFC") -> str:
    """Unicode normalisation (NFC joins decomposed jamo), spaces collapsed, lines trimmed."""
    text = unicodedata.normalize(form, text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _filter_turns(messages: list[dict[str, str]], cfg: CleanConfig, counts: Counter) -> list:
    """Drop empty and over-long turns; a dropped question takes its answer along and vice versa,
    so every kept answer still follows the question it answers."""
    bad = set()
    for k, message in enumerate(messages):
        size = len(message["content"])
        if size < cfg.min_chars:
            bad.add(k)
            counts["dropped_turns_empty"] += 1
        elif size > cfg.max_chars:
            bad.add(k)
            counts["dropped_turns_too_long"] += 1
    partners = set()
    for k in bad:
        role = messages[k]["role"]
        if role == "assistant" and k > 0 and messages[k - 1]["role"] == "user":
            partners.add(k - 1)
        if role == "user" and k + 1 < len(messages) and messages[k + 1]["role"] == "assistant":
            partners.add(k + 1)
    partners -= bad
    counts["dropped_turns_unpaired"] += len(partners)
    return [m for k, m in enumerate(messages) if k not in bad | partners]


def conversation_key(messages: list[dict[str, str]]) -> str:
    """Identity for exact-duplicate detection: the sequence of (role, content)."""
    payload = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def clean_conversations(
    records: Iterable[dict[str, Any]], cfg: CleanConfig, masker: Masker | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Clean records; returns the kept records and flat counts for metrics/clean.json."""
    counts: Counter = Counter()
    for key in (
        "dropped_turns_empty",
        "dropped_turns_too_long",
        "dropped_turns_unpaired",
        "dropped_conversations_no_answer",
        "dropped_conversations_duplicate",
        "normalized_turns_changed",
    ):
        counts[key] = 0
    for kind in getattr(masker, "kinds", ()):
        counts[f"masked_{kind.lower()}"] = 0
    kept, seen = [], set()
    for record in records:
        counts["conversations_in"] += 1
        counts["turns_in"] += len(record["messages"])
        messages = []
        for message in record["messages"]:
            content = normalize_text(message["content"], cfg.normalization)
            counts["normalized_turns_changed"] += content != message["content"]
            messages.append({"role": message["role"], "content": content})
        record = {**record, "messages": messages}
        if masker is not None:
            record, masked = masker(record)
            for kind, n in masked.items():
                counts[f"masked_{kind}"] += n
        messages = _filter_turns(record["messages"], cfg, counts)
        if not any(m["role"] == "assistant" for m in messages):
            counts["dropped_conversations_no_answer"] += 1
            continue
        if cfg.dedupe:
            key = conversation_key(messages)
            if key in seen:
                counts["dropped_conversations_duplicate"] += 1
                continue
            seen.add(key)
        kept.append({**record, "messages": messages})
        counts["turns_out"] += len(messages)
    counts["conversations_out"] = len(kept)
    return kept, dict(sorted(counts.items()))


def clean_dataset(
    records: list[dict[str, Any]],
    clean: CleanConfig,
    pii: PiiConfig,
    names: list[str] = (),
    kiwi: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    """The clean stage's whole job: mask PII (speaker names from the data, `names`, Kiwi names
    if `kiwi` is given), clean, then scan the result: any PII the detectors still
    find, or any original name, fails the step before anything is written.

    Returns the kept records, the counts for metrics/clean.json and the masking audit."""
    masker = build_masker(records, pii.kinds, list(names), kiwi)
    kept, stats = clean_conversations(records, clean, masker)
    left = leak_report(kept, masker.forms, masker.kinds)
    if left:
        first = left[0]
        raise DataError(
            f"clean: {len(left)} PII spans left after masking (first: {first['kind']} in record "
            f"{first['id']} message {first['message']} at {first['start']}-{first['end']}); "
            f"nothing written"
        )
    return kept, {**stats, "pii_leaks_after_masking": 0}, masker.audit
