"""KakaoTalk chat exports (Android, iOS, Windows and macOS in Korean or English, from 2015 on, and
the CSV export) into conversations: `me` is the assistant the bot learns to be, everyone else the
user side. The layouts themselves are in kakaotalk_layouts.py; the layout is detected per file.

Media placeholders and deleted messages are not text (dropped, or kept as a tag, and counted);
system notices are dropped and counted. Consecutive messages of one side form one turn; a silence
longer than `gap_minutes` starts a new conversation, and a conversation left with no typed text
(only placeholders) is dropped and counted. In group chats the user side keeps who said what
(`민지: …`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kotune.errors import DataError, OptionError
from kotune.files import dumps_jsonl_line
from kotune.formats.fields import stem
from kotune.formats.kakaotalk_content import TAGS, emoticon_prefix, placeholder
from kotune.formats.kakaotalk_layouts import LAYOUTS_BY_NAME, Layout, detect_layout, parse_date
from kotune.formats.kakaotalk_lines import (
    DAY_SECONDS,
    Message,
    day_before,
    export_day_form,
    name_prefixes,
    nth_line_end,
    parse_csv_export,
    parse_text_export,
    split_names,
    stamp_of,
    typed_day,
)
from kotune.parallel import Shards
from kotune.records import ROLES, make_record


@dataclass(frozen=True)
class Options:
    me: str  # the exporting user as the export names them: 회원님 (KO), You (EN) or a nickname
    gap_minutes: int = field(default=60, metadata={"gt": 0})  # a longer silence: a new conversation
    media: Literal["drop", "tag"] = "drop"  # tag: keep a photo as `<사진>` etc. in the turn


def _stamp(seconds: int) -> str:
    day = datetime.fromordinal(seconds // DAY_SECONDS)
    return (day + timedelta(seconds=seconds % DAY_SECONDS)).isoformat()


class ExportShard:
    """The messages of an export between two offsets of its text, turned into records in three
    steps, asked of every shard in turn (kotune.parallel): `summary` (who speaks), `split` (into
    conversations, once split names are known), `encode` (once the first record number is known).
    Shards start where a silence starts a conversation, so no conversation spans two."""

    def __init__(self, messages: list[Message], counts: Counter, source: str, layout: str, opts):
        self.messages, self.counts = messages, counts
        self.source, self.layout, self.opts = source, layout, opts

    @classmethod
    def from_text(cls, text: str, start: int, end: int, layout: str, source: str, opts):
        counts: Counter = Counter()
        found = parse_text_export(text, LAYOUTS_BY_NAME[layout], source, counts, start, end)
        return cls(found, counts, source, layout, opts)

    def summary(self) -> tuple[Counter, dict[str, tuple[int, str | None]]]:
        return Counter(speaker for _, speaker, _ in self.messages), name_prefixes(self.messages)

    def split(self, fixes: dict[str, str]) -> int:
        """Put split names together, drop placeholders (or tag them), and cut the messages at
        every silence longer than gap_minutes; returns the conversations kept."""
        opts, counts = self.opts, self.counts
        gap, previous = opts.gap_minutes * 60, None
        self.conversations: list[list[tuple[str, str, str, int, bool]]] = []
        self.messages.reverse()  # popped from the end: each is freed once used
        while self.messages:
            when, speaker, body = self.messages.pop()
            if speaker in fixes:
                speaker, body = f"{speaker} : {fixes[speaker]}", body[len(fixes[speaker]) + 3 :]
            if previous is None or when - previous > gap:
                self.conversations.append([])
            previous = when
            text, typed = body.strip("\n"), True
            kind = placeholder(text) if len(text) <= 120 else None
            if kind is not None:
                if TAGS[kind] is None or opts.media == "drop":
                    counts[f"skipped_{kind}"] += 1
                    continue
                counts[f"tagged_{kind}"] += 1
                text, typed = TAGS[kind], False
            elif not text.strip():
                counts["skipped_empty"] += 1
                continue
            elif cut := emoticon_prefix(text):  # `(이모티콘) 고마워`: the words are kept
                tagged = opts.media == "tag"
                counts["tagged_emoticon" if tagged else "skipped_emoticon"] += 1
                text = (TAGS["emoticon"] + "\n" if tagged else "") + text[cut:]
            role = "assistant" if speaker == opts.me else "user"
            self.conversations[-1].append((role, speaker, text, when, typed))
        kept = []
        for turns in self.conversations:
            if not turns:
                continue
            if any(typed for *_, typed in turns):
                kept.append(turns)
            else:
                counts["skipped_conversations_media_only"] += 1
        self.conversations = kept
        return len(kept)

    def encode(self, group: bool, first_number: int) -> tuple[list[bytes], list[str], Counter]:
        """The records as JSON lines, their ids, and counts for metrics/ingest.json."""
        counts, lines, ids = self.counts, [], []
        turns_total = assistant_turns = assistant_turns_first = 0
        name = stem(self.source)
        self.conversations.reverse()  # popped from the end: each is freed once encoded
        for n in range(first_number, first_number + len(self.conversations)):
            turns = self.conversations.pop()
            merged: list[dict[str, str]] = []
            for role, speaker, text, _, _ in turns:
                shown = f"{speaker}: {text}" if group and role == "user" else text
                if merged and merged[-1]["role"] == role:
                    merged[-1]["content"] += "\n" + shown
                else:
                    merged.append({"role": role, "content": shown})
            meta = {
                "kind": "kakaotalk",
                "file": self.source,
                "layout": self.layout,
                "start": _stamp(turns[0][3]),
                "end": _stamp(turns[-1][3]),
                "speakers": sorted({speaker for _, speaker, *_ in turns}),
            }
            record = make_record(f"{name}-{n:05d}", merged, meta)
            lines.append(dumps_jsonl_line(record).encode())
            ids.append(record["id"])
            roles = [m["role"] for m in merged]
            turns_total += len(roles)
            assistant_turns += roles.count("assistant")
            if roles[0] == "assistant":  # every assistant turn but a first one answers a user turn
                assistant_turns_first += 1
        counts["conversations"] += len(ids)
        counts["messages"] += turns_total
        counts["assistant_turns"] += assistant_turns
        counts["user_turns"] += turns_total - assistant_turns
        counts["examples"] += assistant_turns - assistant_turns_first
        counts["system_turns"] += 0
        return lines, ids, counts


def cut_points(text: str, layout: Layout, gap_minutes: int, parts: int) -> list[int]:
    """Where to cut the text into about `parts` shards: at a message line that follows the one
    before it by more than `gap_minutes` (a new conversation on any number of shards)."""
    cuts = [0]
    for i in range(1, parts):
        pos = text.find("\n", max(len(text) * i // parts, cuts[-1])) + 1
        if pos == 0:
            break
        day = None if layout.dated else day_before(text, pos, layout)
        form = export_day_form(text, layout)
        previous = None
        matches = layout.lines.finditer(text, pos, min(len(text), pos + len(text) // parts))
        m = next(matches, None)
        while m is not None:
            following = next(matches, None)
            if m.lastgroup == "day":  # (not a date typed in a message: as parse_text_export)
                rest = text[m.end() : following.start() if following else None]
                if not typed_day(rest, m.group("day"), form):
                    day = parse_date(m.group("ddate"))
            elif m.lastgroup == "msg" and (layout.dated or day is not None):
                seconds = stamp_of(m, day, text, "")
                if previous is not None and seconds - previous > gap_minutes * 60:
                    cuts.append(m.start())
                    break
                previous = seconds
            m = following
    return [*cuts, len(text)]


def convert(
    text: str, source: str, opts: Options, workers: int = 1, write=None
) -> tuple[list[bytes], list[str], dict[str, int]]:
    """One export's decoded text as conversation records: JSON lines, their ids and counts.
    With `write`, each shard's lines go to it as they come (and none are returned)."""
    if not isinstance(text, str):
        raise DataError(f"{source}: a KakaoTalk export is text, got {type(text).__name__}")
    text = text.lstrip("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    head = text[: nth_line_end(text, 400)].split("\n")
    layout = detect_layout(head, source)
    if layout is None:
        counts: Counter = Counter()
        pieces = [(parse_csv_export(text, source, counts), counts, source, "csv", opts)]
        factory, layout_name = ExportShard, "csv"
    else:
        cuts = (
            cut_points(text, layout, opts.gap_minutes, workers) if workers > 1 else [0, len(text)]
        )
        pieces = [(text, a, b, layout.name, source, opts) for a, b in zip(cuts, cuts[1:])]
        factory, layout_name = ExportShard.from_text, layout.name
    with Shards(factory, pieces) as shards:
        summaries = shards.ask("summary")
        fixes = split_names([prefixes for _, prefixes in summaries], opts.me)
        speakers: Counter = Counter()
        for counted, _ in summaries:
            for speaker, n in counted.items():
                speakers[f"{speaker} : {fixes[speaker]}" if speaker in fixes else speaker] += n
        if opts.me not in speakers:
            found = ", ".join(f"{name} ({n})" for name, n in speakers.most_common(10)) or "none"
            raise OptionError(
                "me", f"is {opts.me!r}, who never speaks in {source}; speakers found: {found}"
            )
        group = len([s for s in speakers if s != opts.me]) > 1
        firsts, number = [], 1
        for kept in shards.ask("split", fixes):
            firsts.append(number)
            number += kept
        encoded = shards.ask_each_with("encode", [(group, first) for first in firsts])
        data, ids, counts = [], [], Counter()
        for lines, shard_ids, shard_counts in encoded:
            if write is None:
                data += lines
            else:
                write(lines)
            ids += shard_ids
            counts.update(shard_counts)
    counts["export_messages"] = sum(speakers.values())
    counts["speakers"] = len(speakers)
    counts[f"layout_{layout_name}"] = 1
    counts["kind_kakaotalk"] = len(ids)
    return data, ids, dict(counts)


def parse(text: str, source: str, opts: Options) -> tuple[list[dict], dict[str, int]]:
    """Records and counts (for metrics/ingest.json) of one export's decoded text, in memory."""
    data, _, counts = convert(text, source, opts)
    records = [json.loads(line) for line in data]
    for key in (
        "conversations",
        "messages",
        "examples",
        "kind_kakaotalk",
        *(f"{r}_turns" for r in ROLES),
    ):
        counts.pop(key, None)
    return records, counts
