"""KakaoTalk chat exports (Android, iOS and Windows PC in Korean or English, and the CSV export)
into conversations: `me` is the assistant the bot learns to be, everyone else the user side.

A line that matches no pattern continues the previous message. Media placeholders and deleted
messages are not text (dropped, or kept as a tag, and counted); system notices are dropped and
counted. Consecutive messages of one side form one turn; a silence longer than `gap_minutes`
starts a new conversation. In group chats the user side keeps who said what (`민지: …`).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kotune.config import bounded, build_section
from kotune.errors import DataError
from kotune.formats.fields import stem


@dataclass(frozen=True)
class Options:
    me: str  # the exporting user as the export names them: 회원님 (KO), You (EN) or a nickname
    gap_minutes: int = bounded(60, gt=0)  # a longer silence starts a new conversation
    media: Literal["drop", "tag"] = "drop"  # tag: keep a photo as `<사진>` etc. in the turn


# ------------------------------------------------------------------------------ time stamps

MONTHS = {
    name.lower(): number
    for number, names in enumerate(
        [
            ("January", "Jan"),
            ("February", "Feb"),
            ("March", "Mar"),
            ("April", "Apr"),
            ("May", "May"),
            ("June", "Jun"),
            ("July", "Jul"),
            ("August", "Aug"),
            ("September", "Sep", "Sept"),
            ("October", "Oct"),
            ("November", "Nov"),
            ("December", "Dec"),
        ],
        start=1,
    )
    for name in names
}


def to_24h(hour: int, meridiem: str | None) -> int:
    """오전 12:xx is 00:xx and 오후 12:xx is 12:xx (AM/PM alike); no meridiem: 24-hour already."""
    if meridiem in ("오전", "AM", "am"):
        return 0 if hour == 12 else hour
    if meridiem in ("오후", "PM", "pm"):
        return hour if hour == 12 else hour + 12
    return hour


def _date(m: re.Match) -> tuple[int, int, int]:
    numeric = "m" in m.re.groupindex and m.group("m")
    month = int(numeric) if numeric else MONTHS[m.group("mon").lower()]
    return int(m.group("y")), month, int(m.group("d"))


def _stamp(m: re.Match, day: datetime | None) -> datetime:
    year = m.group("y") if "y" in m.re.groupindex else None
    if year:
        date = _date(m)
    elif day is not None:
        date = (day.year, day.month, day.day)
    else:
        raise ValueError("a message before any date line")
    meridiem = m.group("ampm") if "ampm" in m.re.groupindex else None
    seconds = m.group("s") if "s" in m.re.groupindex else None
    return datetime(
        *date, to_24h(int(m.group("h")), meridiem), int(m.group("mi")), int(seconds or 0)
    )


# ------------------------------------------------------------------------------ layouts

KO_TS = r"(?P<y>\d{4})년 (?P<m>\d{1,2})월 (?P<d>\d{1,2})일 (?P<ampm>오전|오후) (?P<h>\d{1,2}):(?P<mi>\d{2})"
IOS_KO_TS = r"(?P<y>\d{4})\. (?P<m>\d{1,2})\. (?P<d>\d{1,2})\. (?:(?P<ampm>오전|오후) )?(?P<h>\d{1,2}):(?P<mi>\d{2})"
EN_TS = r"(?P<mon>[A-Z][a-z]{2,8}) (?P<d>\d{1,2}), (?P<y>\d{4}),? (?P<h>\d{1,2}):(?P<mi>\d{2}) (?P<ampm>AM|PM)"
KO_DAY = r"(?P<y>\d{4})년 (?P<m>\d{1,2})월 (?P<d>\d{1,2})일 [월화수목금토일]요일"
EN_DAY = r"[A-Z][a-z]+day, (?P<mon>[A-Z][a-z]+) (?P<d>\d{1,2}), (?P<y>\d{4})"
SPEAKER_TEXT = r"(?P<speaker>.+?) : (?P<text>.*)"

# System notices without a time stamp (PC exports) are told from continuations by phrase only.
SYSTEM_PHRASES = re.compile(
    r"(님이 들어왔습니다\.|님이 나갔습니다\.|님을 내보냈습니다\.|님을 초대했습니다\.|"
    r"님이 .+님을 초대했습니다\.|채팅방 관리자가 메시지를 가렸습니다\.|"
    r"운영정책을 위반한 메시지로 신고 접수 시|"
    r" invited .+\.$| left this chatroom\.$| has left\.$| joined this chatroom\.$|"
    r" kicked .+ from this chatroom\.$)"
)


@dataclass(frozen=True)
class Layout:
    name: str
    message: re.Pattern  # time stamp (or time only), speaker, text
    system: re.Pattern | None = None  # a time-stamped system notice
    days: tuple[re.Pattern, ...] = ()  # date lines (set the day for time-only messages)
    header: tuple[re.Pattern, ...] = field(default_factory=tuple)


LAYOUTS = (
    Layout(
        "android_ko",
        re.compile(rf"^{KO_TS}, {SPEAKER_TEXT}$"),
        system=re.compile(rf"^{KO_TS}, (?P<text>.*)$"),
        days=(re.compile(rf"^{KO_TS}$"), re.compile(rf"^{KO_DAY}$")),
        header=(re.compile(r"^.+ 님과 카카오톡 대화$"), re.compile(r"^저장한 날짜 : \d{4}년 .+$")),
    ),
    Layout(
        "ios_ko",
        re.compile(rf"^{IOS_KO_TS}, {SPEAKER_TEXT}$"),
        system=re.compile(rf"^{IOS_KO_TS}: (?P<text>.*)$"),
        days=(re.compile(rf"^{KO_DAY}$"),),
        header=(re.compile(r"^Talk_.+\.txt$"), re.compile(r"^저장한 날짜 : \d{4}\. .+$")),
    ),
    Layout(
        "android_en",
        re.compile(rf"^{EN_TS}, {SPEAKER_TEXT}$"),
        system=re.compile(rf"^{EN_TS}, (?P<text>.*)$"),
        days=(re.compile(rf"^{EN_TS}$"),),
        header=(re.compile(r"^KakaoTalk Chats with .+$"), re.compile(r"^Date Saved : .+$")),
    ),
    Layout(
        "ios_en",
        re.compile(rf"^{EN_TS}, {SPEAKER_TEXT}$"),
        system=re.compile(rf"^{EN_TS}: (?P<text>.*)$"),
        days=(re.compile(rf"^{EN_DAY}$"),),
        header=(re.compile(r"^Date Saved : .+$"),),
    ),
    Layout(
        "pc_ko",
        re.compile(
            r"^\[(?P<speaker>[^\]]+)\] \[(?P<ampm>오전|오후) (?P<h>\d{1,2}):(?P<mi>\d{2})\] (?P<text>.*)$"
        ),
        days=(re.compile(rf"^-+ {KO_DAY} -+$"),),
        header=(
            re.compile(r"^.+ 님과 카카오톡 대화$"),
            re.compile(r"^저장한 날짜 : \d{4}-\d{2}-\d{2} .+$"),
        ),
    ),
    Layout(
        "pc_en",
        re.compile(
            r"^\[(?P<speaker>[^\]]+)\] \[(?P<h>\d{1,2}):(?P<mi>\d{2}) (?P<ampm>AM|PM)\] (?P<text>.*)$"
        ),
        days=(re.compile(rf"^-+ {EN_DAY} -+$"),),
        header=(re.compile(r"^.+KakaoTalk Chats$"), re.compile(r"^Date Saved : .+$")),
    ),
)
LAYOUT_NAMES = [layout.name for layout in LAYOUTS] + ["csv"]
CSV_HEADER = re.compile(r"^\ufeff?Date,User,Message\s*$")
CSV_DATE = re.compile(
    r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?$"
)


def detect_layout(lines: list[str], source: str) -> Layout | None:
    """The layout whose lines the first 60 lines best match (day lines break ties: Android and
    iOS English messages look alike); None for the CSV export. Unknown: a DataError."""
    head = [line for line in lines[:60] if line.strip()]
    if head and CSV_HEADER.match(head[0]):
        return None
    scores = []
    for layout in LAYOUTS:
        messages = sum(1 for line in head if layout.message.match(line))
        days = sum(1 for line in head if any(d.match(line) for d in layout.days))
        headers = sum(1 for line in head[:3] for h in layout.header if h.match(line))
        scores.append((messages, headers + days, layout))
    messages, support, layout = max(scores, key=lambda s: (s[0], s[1]))
    if messages == 0:
        shown = "\n  ".join(head[:5]) or "(empty)"
        raise DataError(
            f"{source}: not a KakaoTalk export in a known layout (tried: {', '.join(LAYOUT_NAMES)}); "
            f"first lines:\n  {shown}"
        )
    return layout


# ------------------------------------------------------------------------------ placeholders

PLACEHOLDERS = [
    (re.compile(r"^(사진|사진 \d+장|<사진 읽지 않음>|Photo|\d+ photos)$"), "photo", "<사진>"),
    (re.compile(r"^(동영상|Video)$"), "video", "<동영상>"),
    (re.compile(r"^(이모티콘|\(이모티콘\)|Emoticon)$"), "emoticon", "<이모티콘>"),
    (re.compile(r"^(파일|File): .+$"), "file", "<파일>"),
    (re.compile(r"^(음성메시지|보이스톡 해요\.|Voice Message)$"), "voice", "<음성>"),
    (
        re.compile(
            r"^(삭제된 메시지입니다\.|메시지가 삭제되었습니다\.|The message has been deleted\.)$"
        ),
        "deleted",
        None,
    ),
]


_ANY_PLACEHOLDER = re.compile(
    "|".join(f"(?P<{kind}>{pattern.pattern})" for pattern, kind, _ in PLACEHOLDERS)
)
_TAGS = {kind: tag for _, kind, tag in PLACEHOLDERS}


def placeholder(text: str) -> tuple[str, str | None] | None:
    """(kind, tag) if the whole message is a placeholder rather than typed text."""
    if len(text) > 200:  # placeholders are short (a file name at most): skip the pattern
        return None
    m = _ANY_PLACEHOLDER.match(text.strip())
    return (m.lastgroup, _TAGS[m.lastgroup]) if m else None


# ------------------------------------------------------------------------------ parsing


@dataclass(slots=True)  # an export has millions: no per-object dict
class Message:
    when: datetime
    speaker: str
    body: str

    @property
    def text(self) -> str:
        return self.body.strip("\n")


def iter_lines(text: str) -> Iterator[str]:
    """Lines without their ends (CRLF, CR or LF), one at a time: no list of millions."""
    for line in io.StringIO(text.lstrip("\ufeff"), newline=None):
        yield line[:-1] if line.endswith("\n") else line


def parse_text_export(
    lines: Iterable[str], layout: Layout, source: str, counts: Counter
) -> list[Message]:
    messages: list[Message] = []
    day: datetime | None = None
    started = False
    stamps: dict[tuple, datetime] = {}  # lines of one minute share a time stamp: parse it once
    for lineno, line in enumerate(lines, start=1):
        if not started and any(h.match(line) for h in layout.header):
            counts["header_lines"] += 1
            continue
        if m := layout.message.match(line):
            started = True
            key = (day, line[: m.start("speaker")], line[m.end("speaker") : m.start("text")])
            when = stamps.get(key)
            if when is None:
                try:
                    when = stamps[key] = _stamp(m, day)
                except (ValueError, KeyError) as error:
                    raise DataError(f"{source}:{lineno}: {error}: {line[:80]!r}") from None
            messages.append(Message(when, m.group("speaker").strip(), m.group("text")))
            continue
        day_match = next((m for d in layout.days if (m := d.match(line))), None)
        if day_match:
            day = datetime(*_date(day_match))
            started = True
            continue
        if layout.system and layout.system.match(line):
            counts["skipped_system_notices"] += 1
            started = True
            continue
        if not line.strip() and not messages:
            continue
        if layout.system is None and SYSTEM_PHRASES.search(line):
            counts["skipped_system_notices"] += 1
            continue
        if messages:
            messages[-1].body += "\n" + line
            counts["continuation_lines"] += 1
        elif line.strip():
            counts["skipped_lines_before_first_message"] += 1
    return messages


def parse_csv_export(text: str, source: str, counts: Counter) -> list[Message]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    next(reader, None)  # Date,User,Message
    messages = []
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{source}:{reader.line_num}"
        if len(row) != 3:
            raise DataError(f"{where}: expected 3 columns (Date, User, Message), got {len(row)}")
        stamp, user, body = row
        m = CSV_DATE.match(stamp.strip())
        if not m:
            raise DataError(f"{where}: bad date {stamp!r} (expected YYYY-MM-DD HH:MM:SS)")
        if not user.strip() or SYSTEM_PHRASES.search(body):
            counts["skipped_system_notices"] += 1
            continue
        messages.append(Message(_stamp(m, None), user.strip(), body.replace("\r\n", "\n")))
    return messages


def _to_conversations(
    messages: list[Message], opts: Options, source: str, layout: str, counts: Counter
) -> list[dict[str, Any]]:
    group = len({m.speaker for m in messages if m.speaker != opts.me}) > 1
    conversations: list[list[tuple[str, str, str, datetime]]] = []
    previous: datetime | None = None
    for message in messages:
        text = message.text
        found = placeholder(text)
        if found:
            kind, tag = found
            if kind == "deleted" or opts.media == "drop":
                counts[f"skipped_{kind}"] += 1
                continue
            counts[f"tagged_{kind}"] += 1
            text = tag
        if not text.strip():
            counts["skipped_empty"] += 1
            continue
        if previous is None or (message.when - previous).total_seconds() > opts.gap_minutes * 60:
            conversations.append([])
        previous = message.when
        role = "assistant" if message.speaker == opts.me else "user"
        conversations[-1].append((role, message.speaker, text, message.when))
    records = []
    for n, turns in enumerate(conversations, start=1):
        merged: list[dict[str, str]] = []
        for role, speaker, text, _ in turns:
            shown = f"{speaker}: {text}" if group and role == "user" else text
            if merged and merged[-1]["role"] == role:
                merged[-1]["content"] += "\n" + shown
            else:
                merged.append({"role": role, "content": shown})
        record_id = f"{stem(source)}-{n:05d}"
        records.append(
            {
                "id": record_id,
                "conversation_id": record_id,
                "messages": merged,
                "meta": {
                    "kind": "kakaotalk",
                    "file": source,
                    "layout": layout,
                    "start": turns[0][3].isoformat(),
                    "end": turns[-1][3].isoformat(),
                    "speakers": sorted({speaker for _, speaker, _, _ in turns}),
                },
            }
        )
    return records


def parse(text: str, source: str, options: dict[str, Any]) -> tuple[list[dict], dict[str, int]]:
    opts = build_section(Options, options, "persona.data.options")
    counts: Counter = Counter()
    head = list(itertools.islice(iter_lines(text), 60))
    layout = detect_layout(head, source)
    if layout is None:
        messages, layout_name = parse_csv_export(text, source, counts), "csv"
    else:
        messages = parse_text_export(iter_lines(text), layout, source, counts)
        layout_name = layout.name
    speakers = Counter(m.speaker for m in messages)
    if opts.me not in speakers:
        found = ", ".join(f"{name} ({n})" for name, n in speakers.most_common(10)) or "none"
        raise DataError(
            f"{source}: persona.data.options.me is {opts.me!r}, who never speaks here; "
            f"speakers found: {found}"
        )
    counts["export_messages"] = len(messages)
    counts["speakers"] = len(speakers)
    counts[f"layout_{layout_name}"] = 1
    records = _to_conversations(messages, opts, source, layout_name, counts)
    return records, dict(counts)
