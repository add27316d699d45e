"""The clean step: normalise text, mask personal data, drop empty/over-long turns, conversations
left without an answer and duplicates, and count every drop.

Runs on every core: each shard of the input (kotune.parallel) normalises its records and finds
their PII spans; the people are then numbered in file order (so `<PERSON1>` is the same on one
core or many); each shard masks, filters and encodes its records; this process drops duplicates
in file order and writes. The output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kotune.config import CleanConfig, PiiConfig
from kotune.errors import DataError
from kotune.files import atomic_file, open_input, paused_gc
from kotune.masking import (
    Pseudonyms,
    apply_spans,
    kiwi_person_names,
    leaks,
    people,
    person_key,
)
from kotune.parallel import Shards, default_workers
from kotune.pii import find_pii, may_hold_pii, name_forms, names_pattern
from kotune.profiling import turn_codes
from kotune.records import ROLES, read_records

_SPACES = re.compile(r"[ \t\u00a0\u3000\u200b\ufeff]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Anything normalize_text would change besides the Unicode form (most chat lines: nothing)
_UNTIDY = re.compile(r"[\t\r\u00a0\u3000\u200b\ufeff]|  |^ | $|\n\n\n", re.MULTILINE)
_ROLE = {role: role for role in ROLES}  # one string object per role for millions of turns


def normalize_text(text: str, form: str = "NFC") -> str:
    """Unicode normalisation (NFC joins decomposed jamo), spaces collapsed, lines trimmed."""
    if unicodedata.is_normalized(form, text) and not _UNTIDY.search(text):
        return text.strip()
    text = unicodedata.normalize(form, text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def filter_turns(messages: list[dict[str, str]], cfg: CleanConfig, counts: Counter) -> list:
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
    if not bad:
        return messages
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


def conversation_key(messages: list[dict[str, str]]) -> bytes:
    """Identity for exact-duplicate detection: the sequence of (role, content)."""
    parts = [f"{m['role']}\x1f{len(m['content'])}\x1f{m['content']}" for m in messages]
    return hashlib.sha256("\x1e".join(parts).encode()).digest()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Emitted:
    """One shard's cleaned records: (dedupe key, JSON line, turn codes, characters) each, and
    its audit lines, counts and leaks."""

    records: list[tuple[bytes, bytes, tuple]] = field(default_factory=list)
    audit: list[bytes] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    leaks: list[dict[str, Any]] = field(default_factory=list)


class CleanShard:
    """Some records of the input, cleaned in three steps (see the module docstring)."""

    def __init__(self, records: Iterable[dict[str, Any]], clean: CleanConfig, pii: PiiConfig):
        self.clean, self.kinds = clean, frozenset(pii.kinds)
        self.kiwi_names = pii.kiwi_names
        self.records: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        for record in records:
            messages = []
            for message in record["messages"]:
                content = normalize_text(message["content"], clean.normalization)
                self.counts["normalized_turns_changed"] += content != message["content"]
                messages.append((_ROLE[message["role"]], content))  # a tuple: a third of a dict
            self.counts["conversations_in"] += 1
            self.counts["turns_in"] += len(messages)
            record["messages"] = messages
            meta = record.get("meta")
            if isinstance(meta, dict) and isinstance(meta.get("speakers"), list):
                speakers = [
                    unicodedata.normalize(clean.normalization, str(s)) for s in meta["speakers"]
                ]
                record["meta"] = {**meta, "speakers": speakers}
            self.records.append(record)
        self.spans: dict[int, dict[int, list]] = {}  # record → message → its spans

    @classmethod
    def from_file(cls, path: Path, start: int, end: int, lineno: int, clean, pii) -> CleanShard:
        return cls(read_records(path, start, end, lineno), clean, pii)

    def names(self) -> list[str]:
        """People named in this shard, first seen first: speakers, and with kiwi_names the proper
        nouns Kiwi finds before a person cue (all on the normalised text)."""
        found: dict[str, None] = {}
        for record in self.records:
            for name in record.get("meta", {}).get("speakers", []):
                found.setdefault(name, None)
        if self.kiwi_names and "PERSON" in self.kinds:
            from kiwipiepy import Kiwi

            texts = (content for r in self.records for _, content in r["messages"])
            found.update(dict.fromkeys(kiwi_person_names(texts, Kiwi())))
        return list(found)

    def detect(self, forms: list[str]) -> list[str]:
        """Find every span; return the people met, first met first (spans, then speakers)."""
        self.forms = forms = names_pattern(forms)
        met: dict[str, None] = {}
        for r, record in enumerate(self.records):
            for k, (_, content) in enumerate(record["messages"]):
                if not may_hold_pii(content, forms):
                    continue
                spans = [s for s in find_pii(content, forms) if s.kind in self.kinds]
                if spans:
                    self.spans.setdefault(r, {})[k] = spans
                    for span in spans:
                        if span.kind == "PERSON":
                            met.setdefault(person_key(content[span.start : span.end]), None)
            if "PERSON" in self.kinds:
                for speaker in record.get("meta", {}).get("speakers", []):
                    met.setdefault(person_key(speaker), None)
        return list(met)

    def emit(self, pseudonyms: dict[str, str]) -> Emitted:
        """Mask, filter, scan for leaks and encode every record of this shard."""
        out = Emitted(counts=self.counts)
        counts, stand_ins = out.counts, Pseudonyms(dict(pseudonyms))
        self.records.reverse()  # popped from the end: each is freed once encoded
        for r in range(len(self.records)):
            record = self.records.pop()
            messages = [{"role": role, "content": content} for role, content in record["messages"]]
            for k, spans in self.spans.get(r, {}).items():
                message = messages[k]
                message["content"] = apply_spans(message["content"], spans, stand_ins)
                for span in spans:
                    counts[f"masked_{span.kind.lower()}"] += 1
                    entry = {"id": record["id"], "message": k, "kind": span.kind}
                    entry |= {"start": span.start, "end": span.end}
                    out.audit.append(_dumps(entry).encode() + b"\n")
                for span in leaks(message["content"], self.forms, self.kinds):
                    entry = {"id": record["id"], "message": k, "kind": span.kind}
                    out.leaks.append(entry | {"start": span.start, "end": span.end})
            meta = record.get("meta")
            if isinstance(meta, dict) and "speakers" in meta and "PERSON" in self.kinds:
                record["meta"] = {
                    **meta,
                    "speakers": [stand_ins.register(s) for s in meta["speakers"]],
                }
            messages = filter_turns(messages, self.clean, counts)
            if not any(m["role"] == "assistant" for m in messages):
                counts["dropped_conversations_no_answer"] += 1
                continue
            record["messages"] = messages
            line = (_dumps(record) + "\n").encode()
            key = conversation_key(messages) if self.clean.dedupe else b""
            sizes = [len(m["content"]) for m in messages]
            codes = turn_codes([m["role"] for m in messages], sizes)
            out.records.append((key, line, codes, sum(sizes)))
        return out


COUNTED = (
    "conversations_in",
    "conversations_out",
    "turns_in",
    "turns_out",
    "normalized_turns_changed",
    "dropped_turns_empty",
    "dropped_turns_too_long",
    "dropped_turns_unpaired",
    "dropped_conversations_no_answer",
    "dropped_conversations_duplicate",
)


@dataclass
class Cleaned:
    """What clean wrote, for the metrics and the data picture."""

    stats: dict[str, int]
    lengths: Counter  # kotune.profiling.turn_code(role, length) → turns
    sizes: list[int]  # characters of each kept conversation, in order
    offsets: list[int]  # byte offset of each kept conversation's line in the output


def _numbered(shards: Shards, extra_names: list[str], kinds: frozenset[str]) -> dict[str, str]:
    """Find every span; number the people in file order (the same order on any number of cores)."""
    found = [name for names in shards.ask("names") for name in names]
    forms = name_forms(people(found, extra_names)) if "PERSON" in kinds else []
    pseudonyms = Pseudonyms()
    for met in shards.ask("detect", forms):
        for key in met:
            pseudonyms.register(key)
    return pseudonyms.names


def clean_file(
    source: Path,
    out: Path,
    audit: Path,
    clean: CleanConfig,
    pii: PiiConfig,
    names: Iterable[str] = (),
    workers: int | None = None,
) -> Cleaned:
    """The clean stage's whole job on `source` (conversation JSONL), writing `out` and the
    masking `audit` (record, message, kind, offsets: never the values). Before anything is
    written, the masked text is scanned again with the same detectors and every original name:
    anything found fails the step, as does an output left empty.

    `workers`: processes to use (default: every core, one per 4 MB of input at most)."""
    source = Path(source)
    open_input(source).close()  # a missing file or a folder: one line naming it
    workers = workers or default_workers(source)
    extra = [unicodedata.normalize(clean.normalization, n) for n in names]
    kinds = frozenset(pii.kinds)
    stats: Counter = Counter({key: 0 for key in COUNTED})
    stats.update({f"masked_{kind.lower()}": 0 for kind in kinds})
    lengths: Counter = Counter()
    sizes, offsets, audit_lines, left = [], [], [], []
    seen: set[bytes] = set()
    with (
        paused_gc(),
        Shards.of_file(CleanShard.from_file, source, workers, (clean, pii)) as shards,
        atomic_file(out) as tmp,
        tmp.open("wb") as handle,
    ):
        pseudonyms = _numbered(shards, extra, kinds)
        for emitted in shards.ask_each("emit", pseudonyms):
            stats.update(emitted.counts)
            audit_lines += emitted.audit
            left += emitted.leaks
            for key, line, codes, size in emitted.records:
                if clean.dedupe:
                    if key in seen:
                        stats["dropped_conversations_duplicate"] += 1
                        continue
                    seen.add(key)
                offsets.append(handle.tell())
                handle.write(line)
                lengths.update(codes)
                sizes.append(size)
                stats["turns_out"] += len(codes)
        stats["conversations_out"] = len(offsets)
        _refuse(left, dict(stats), clean)
    with atomic_file(audit) as tmp:
        tmp.write_bytes(b"".join(audit_lines))
    stats["pii_leaks_after_masking"] = 0
    return Cleaned(dict(sorted(stats.items())), lengths, sizes, offsets)


def _refuse(left: list[dict[str, Any]], stats: dict[str, int], clean: CleanConfig) -> None:
    """Nothing is written if PII is left or if every conversation was dropped."""
    if left:
        first = left[0]
        raise DataError(
            f"clean: {len(left)} PII spans left after masking (first: {first['kind']} in record "
            f"{first['id']} message {first['message']} at {first['start']}-{first['end']}); "
            f"nothing written"
        )
    if not stats["conversations_in"]:
        raise DataError("clean: the input holds no conversations; nothing written")
    if not stats["conversations_out"]:
        raise DataError(
            f"clean: every one of the {stats['conversations_in']} conversations was dropped "
            f"({describe(stats, clean)}); nothing written"
        )


def describe(stats: dict[str, int], clean: CleanConfig) -> str:
    """What was dropped, in words, for the summary line on stderr and for errors."""
    words = {
        "dropped_turns_empty": f"turns shorter than clean.min_chars ({clean.min_chars})",
        "dropped_turns_too_long": f"turns longer than clean.max_chars ({clean.max_chars})",
        "dropped_turns_unpaired": "turns whose question or answer was dropped",
        "dropped_conversations_no_answer": "conversations left without an answer",
        "dropped_conversations_duplicate": "duplicate conversations",
    }
    said = [f"{stats[key]} {text}" for key, text in words.items() if stats.get(key)]
    return "dropped " + ", ".join(said) if said else "nothing dropped"


def clean_dataset(
    records: list[dict[str, Any]],
    clean: CleanConfig,
    pii: PiiConfig,
    names: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    """clean_file on records in memory (one core): the kept records, the counts for
    metrics/clean.json and the masking audit."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        source, out, audit = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl", Path(tmp) / "a.jsonl"
        source.write_text("".join(_dumps(r) + "\n" for r in records), encoding="utf-8")
        cleaned = clean_file(source, out, audit, clean, pii, names, workers=1)
        kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        trail = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    return kept, cleaned.stats, trail
