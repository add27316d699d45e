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

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kotune.errors import DataError, OptionError
from kotune.formats.fields import stem
from kotune.formats.kakaotalk_layouts import (
    HEADERS,
    TAGS,
    Layout,
    detect_layout,
    is_notice,
    parse_date,
    parse_time,
    placeholder,
    read_csv_rows,
)
from kotune.records import make_record


@dataclass(frozen=True)
class Options:
    me: str  # the exporting user as the export names them: 회원님 (KO), You (EN) or a nickname
    gap_minutes: int = field(default=60, metadata={"gt": 0})  # a longer silence: a new conversation
    media: Literal["drop", "tag"] = "drop"  # tag: keep a photo as `<사진>` etc. in the turn


# A message: (seconds since 0001-01-01, speaker, text). Tuples: an export has millions.
Message = tuple[int, str, str]
DAY_SECONDS = 86_400


def _nth_line_end(text: str, n: int) -> int:
    """Where the first `n` lines end (without copying a 93 MB text to split it)."""
    pos = 0
    for _ in range(n):
        pos = text.find("\n", pos) + 1
        if pos == 0:
            return len(text)
    return pos


def _lineno(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _when(m, day: int | None, text: str, source: str) -> int:
    """The message's time stamp; a date it lacks comes from the last day line (`day`)."""
    try:
        date = m.group("date") if m.re.groupindex.get("date") else None
        ordinal = parse_date(date) if date else day
        if ordinal is None:
            raise ValueError("a message before any day line")
        return ordinal * DAY_SECONDS + parse_time(m.group("time"))
    except ValueError as error:
        line = text[m.start() : text.find("\n", m.start())][:80]
        raise DataError(f"{source}:{_lineno(text, m.start())}: {error}: {line!r}") from None


def _append(messages: list[Message], more: str, counts: Counter) -> None:
    """Continuation lines belong to the message before them."""
    if messages:
        when, speaker, body = messages[-1]
        messages[-1] = (when, speaker, body + "\n" + more)
        counts["continuation_lines"] += more.count("\n") + 1
    else:
        counts["skipped_lines_before_first_message"] += sum(
            1 for line in more.split("\n") if line.strip()
        )


def _drop_bare_notices(body: str, counts: Counter) -> str:
    """PC exports write notices as bare lines: take them out of the message they follow."""
    lines = body.split("\n")
    kept = [lines[0]] + [line for line in lines[1:] if not is_notice(line)]
    counts["skipped_system_notices"] += len(lines) - len(kept)
    return "\n".join(kept)


def parse_text_export(text: str, layout: Layout, source: str, counts: Counter) -> list[Message]:
    """Messages in file order. `text` has `\\n` line ends only."""
    messages: list[Message] = []
    day: int | None = None
    matches = layout.lines.finditer(text)
    first = next(matches, None)
    if first is None:
        return messages
    for line in text[: first.start()].split("\n"):  # before the first message: the header
        if line.strip():
            known = HEADERS.match(line)
            counts["header_lines" if known else "skipped_lines_before_first_message"] += 1
    m = first
    while m is not None:
        following = next(matches, None)
        end = following.start() - 1 if following is not None else len(text)
        kind = m.lastgroup
        if kind == "msg":
            body = text[m.end() : end]
            if layout.bare_notices and "\n" in body:
                body = _drop_bare_notices(body, counts)
            messages.append((_when(m, day, text, source), m.group("speaker").strip(), body))
        else:
            rest = text[m.end() : end]
            if kind == "day":
                try:
                    day = parse_date(m.group("ddate"))
                except ValueError as error:
                    raise DataError(f"{source}:{_lineno(text, m.start())}: {error}") from None
                counts["day_lines"] += 1
            else:
                counts["skipped_system_notices"] += 1
                rest = rest.split("\n", 1)[1] if "\n" in rest else ""
            if layout.bare_notices and rest.strip():
                rest = _drop_bare_notices("\n" + rest.lstrip("\n"), counts)
            if rest.strip():  # lines after a day line or notice that are no new message
                _append(messages, rest.lstrip("\n"), counts)
        m = following
    return messages


def parse_csv_export(text: str, source: str, counts: Counter) -> list[Message]:
    rows = read_csv_rows(text)
    columns = next(row for row in rows if any(cell.strip() for cell in row))
    columns = [cell.strip().lower() for cell in columns]
    date_col, user_col, text_col = (
        columns.index(name) if name in columns else columns.index(ko)
        for name, ko in (("date", "날짜"), ("user", "사용자"), ("message", "메시지"))
    )
    messages: list[Message] = []
    for row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{source}:{rows.line_num}"
        if len(row) != 3:
            raise DataError(f"{where}: expected 3 columns (Date, User, Message), got {len(row)}")
        stamp, user, body = row[date_col].strip(), row[user_col].strip(), row[text_col]
        if not user or is_notice(body):
            counts["skipped_system_notices"] += 1
            continue
        try:
            when = parse_date(stamp) * DAY_SECONDS + parse_time(stamp)
        except ValueError:
            raise DataError(f"{where}: bad date {stamp!r} (expected YYYY-MM-DD HH:MM:SS)") from None
        messages.append((when, user, body.replace("\r\n", "\n")))
    return messages


def _repair_split_names(messages: list[Message], me: str) -> list[Message]:
    """A name holding ` : ` (`A : B`) splits early: `A` speaks, every text starts `B : `. Such a
    speaker is put back together when all its messages (3 or more, or any if `A : B` is `me`)
    share that start."""
    texts: dict[str, list[str]] = {}
    for _, speaker, body in messages:
        texts.setdefault(speaker, []).append(body)
    fixes = {}
    for speaker, bodies in texts.items():
        first = bodies[0].split(" : ", 1)[0] if " : " in bodies[0] else None
        if first is None or not all(b.startswith(first + " : ") for b in bodies):
            continue
        if len(bodies) >= 3 or f"{speaker} : {first}" == me:
            fixes[speaker] = first
    if not fixes:
        return messages
    cut = {speaker: len(rest) + 3 for speaker, rest in fixes.items()}
    return [
        (w, f"{s} : {fixes[s]}", b[cut[s] :]) if s in fixes else (w, s, b) for w, s, b in messages
    ]


def _stamp(seconds: int) -> str:
    day = datetime.fromordinal(seconds // DAY_SECONDS)
    return (day + timedelta(seconds=seconds % DAY_SECONDS)).isoformat()


def to_conversations(
    messages: list[Message], opts: Options, source: str, layout: str, counts: Counter
) -> list[dict]:
    """Split at silences longer than `opts.gap_minutes`, merge each side's consecutive messages
    into one turn, and make one record per conversation that has typed text."""
    group = len({speaker for _, speaker, _ in messages if speaker != opts.me}) > 1
    gap = opts.gap_minutes * 60
    conversations: list[list[tuple[str, str, str, int, bool]]] = []
    previous: int | None = None
    for when, speaker, body in messages:
        text = body.strip("\n")
        typed = True
        kind = placeholder(text)
        if kind is not None:
            if TAGS[kind] is None or opts.media == "drop":
                counts[f"skipped_{kind}"] += 1
                continue
            counts[f"tagged_{kind}"] += 1
            text, typed = TAGS[kind], False
        elif not text.strip():
            counts["skipped_empty"] += 1
            continue
        if previous is None or when - previous > gap:
            conversations.append([])
        previous = when
        role = "assistant" if speaker == opts.me else "user"
        conversations[-1].append((role, speaker, text, when, typed))
    records = []
    name = stem(source)
    for turns in conversations:
        if not any(typed for *_, typed in turns):
            counts["skipped_conversations_media_only"] += 1
            continue
        merged: list[dict[str, str]] = []
        for role, speaker, text, _, _ in turns:
            shown = f"{speaker}: {text}" if group and role == "user" else text
            if merged and merged[-1]["role"] == role:
                merged[-1]["content"] += "\n" + shown
            else:
                merged.append({"role": role, "content": shown})
        meta = {
            "kind": "kakaotalk",
            "file": source,
            "layout": layout,
            "start": _stamp(turns[0][3]),
            "end": _stamp(turns[-1][3]),
            "speakers": sorted({speaker for _, speaker, *_ in turns}),
        }
        records.append(make_record(f"{name}-{len(records) + 1:05d}", merged, meta))
    return records


def parse(text: str, source: str, opts: Options) -> tuple[list[dict], dict[str, int]]:
    """Records and counts (for metrics/ingest.json) of one export's decoded text."""
    if not isinstance(text, str):
        raise DataError(f"{source}: a KakaoTalk export is text, got {type(text).__name__}")
    text = text.lstrip("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    counts: Counter = Counter()
    head = text[: _nth_line_end(text, 400)].split("\n")
    layout = detect_layout(head, source)
    if layout is None:
        messages, layout_name = parse_csv_export(text, source, counts), "csv"
    else:
        messages, layout_name = parse_text_export(text, layout, source, counts), layout.name
    messages = _repair_split_names(messages, opts.me)
    speakers = Counter(speaker for _, speaker, _ in messages)
    if opts.me not in speakers:
        found = ", ".join(f"{name} ({n})" for name, n in speakers.most_common(10)) or "none"
        raise OptionError(
            "me", f"is {opts.me!r}, who never speaks in {source}; speakers found: {found}"
        )
    counts["export_messages"] = len(messages)
    counts["speakers"] = len(speakers)
    counts[f"layout_{layout_name}"] = 1
    records = to_conversations(messages, opts, source, layout_name, counts)
    return records, dict(counts)
