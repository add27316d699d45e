"""KakaoTalk exports line by line: messages (time stamp, speaker, text) out of the text of any
layout (kakaotalk_layouts.py) or the CSV export, with continuation lines, day lines, notices and
names that hold the separator handled; errors name the file and line."""

from __future__ import annotations

from collections import Counter

from kotune.errors import DataError
from kotune.formats.kakaotalk_content import is_notice
from kotune.formats.kakaotalk_layouts import (
    HEADERS,
    SAVED,
    Layout,
    day_form,
    parse_date,
    parse_time,
    read_csv_rows,
    weekday_ok,
)

# A message: (seconds since 0001-01-01, speaker, text). Tuples: an export has millions.
Message = tuple[int, str, str]
DAY_SECONDS = 86_400


def nth_line_end(text: str, n: int) -> int:
    """Where the first `n` lines end (without copying a 93 MB text to split it)."""
    pos = 0
    for _ in range(n):
        pos = text.find("\n", pos) + 1
        if pos == 0:
            return len(text)
    return pos


def _lineno(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def stamp_of(m, day: int | None, text: str, source: str) -> int:
    """The message's time stamp; a date it lacks comes from the last day line (`day`). Dates and
    times are parsed through caches: an export repeats each day and each minute many times."""
    date, time = m.group("date", "time") if "date" in m.re.groupindex else (None, m.group("time"))
    try:
        ordinal = parse_date(date) if date else day
        if ordinal is None:
            raise ValueError("a message before any day line")
        return ordinal * DAY_SECONDS + parse_time(time)
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


def _drop_headers(body: str, counts: Counter) -> str:
    """Exports pasted one after another: a later export's header lines (its title and `저장한
    날짜 : …`) are no part of the message they follow."""
    lines = body.split("\n")
    kept: list[str] = []
    for line in lines:
        if SAVED.match(line):
            if len(kept) > 1 and HEADERS.match(kept[-1]):  # the title line before it
                kept.pop()
            continue
        kept.append(line)
    counts["header_lines"] += len(lines) - len(kept)
    return "\n".join(kept)


def typed_day(rest: str, line: str | None = None, form: str | None = None) -> bool:
    """Whether a day line was typed in a message: `rest`, the lines after it up to the next
    message or notice, holds text (a real day line is followed by a message, or a notice, at
    once); or the `line` itself names a weekday its date did not fall on, or is not in the
    `form` of the export's own day lines (export_day_form). The first day line of a file is a
    day line whatever follows it."""
    if any(text.strip() and not is_notice(text) for text in rest.split("\n")):
        return True
    if line is None:
        return False
    return (form is not None and day_form(line) != form) or not weekday_ok(line)


def export_day_form(text: str, layout: Layout) -> str | None:
    """The form of the export's day lines: its first line the layout knows, if a day line
    (before any message: no date typed in a message can be it); None otherwise."""
    m = layout.lines.search(text)
    return day_form(m.group("day")) if m is not None and m.lastgroup == "day" else None


def day_before(text: str, pos: int, layout: Layout) -> int | None:
    """The date of the last day line before `pos` (a shard starting mid-file needs it), as
    parse_text_export would have it: not one typed in a message, unless it is the file's first."""
    end, first, form = pos - 1, None, export_day_form(text, layout)
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        m = layout.day_line.match(text, start, end)
        if m:
            following = layout.lines.search(text, end + 1)
            if not typed_day(text[end : following.start() if following else pos], m.group(), form):
                return parse_date(m.group("ddate"))
            first = m.group("ddate")
        end = start - 1
    return parse_date(first) if first else None


def parse_text_export(
    text: str, layout: Layout, source: str, counts: Counter, start: int = 0, end: int | None = None
) -> list[Message]:
    """Messages in file order, of the whole text or of the lines in [start, end) (a shard: it
    begins at a message line). `text` has `\\n` line ends only."""
    end = len(text) if end is None else end
    messages: list[Message] = []
    day = day_before(text, start, layout) if start and not layout.dated else None
    matches = layout.lines.finditer(text, start, end)
    first = next(matches, None)
    if first is None:
        return messages
    for line in text[start : first.start()].split("\n"):  # before the first message: the header
        if line.strip():
            known = HEADERS.match(line)
            counts["header_lines" if known else "skipped_lines_before_first_message"] += 1
    m, names, continued, form = first, {}, 0, None
    dated = "date" in layout.lines.groupindex
    while m is not None:
        following = next(matches, None)
        stop = following.start() - 1 if following is not None else end - (end < len(text))
        kind = m.lastgroup
        if kind == "msg":
            body = text[m.end() : stop]
            if "\n" in body:
                if layout.bare_notices:
                    body = _drop_bare_notices(body, counts)
                if SAVED.search(body):
                    body = _drop_headers(body, counts)
                continued += body.count("\n")
            # the common case inline (an export has millions of lines); stamp_of says what is wrong
            date, time, speaker = (
                m.group("date", "time", "speaker")
                if dated
                else (
                    None,
                    *m.group("time", "speaker"),
                )
            )
            try:
                stamp = (parse_date(date) if date else day) * DAY_SECONDS + parse_time(time)
            except (TypeError, ValueError):
                stamp = stamp_of(m, day, text, source)
            speaker = speaker.strip()
            speaker = names.setdefault(speaker, speaker)  # one string per person, not per line
            messages.append((stamp, speaker, body))
        else:
            rest = text[m.end() : stop]
            if SAVED.search(rest):
                rest = _drop_headers(rest, counts)
            if kind == "day":
                try:
                    new_day = parse_date(m.group("ddate"))
                except ValueError as error:
                    raise DataError(f"{source}:{_lineno(text, m.start())}: {error}") from None
                if form is None:
                    form = export_day_form(text, layout) or ""
                # a date typed in a message
                if (messages or start) and typed_day(rest, m.group("day"), form or None):
                    _append(messages, text[m.start() : stop], counts)
                    m = following
                    continue
                day = new_day
                counts["day_lines"] += 1
            else:  # a notice; the lines after it, up to the next message, are the notice's
                counts["skipped_system_notices"] += 1
                more = rest.split("\n")[1:]
                if layout.bare_notices:  # PC: bare notice lines are notices of their own
                    more = _drop_bare_notices("\n".join(["", *more]), counts).split("\n")
                lines = sum(1 for line in more if line.strip())
                if lines:
                    counts["skipped_notice_lines"] += lines
                rest = ""
            if rest.strip():  # notices written bare after a day line (PC; an open chat's policy)
                rest = _drop_bare_notices("\n" + rest.lstrip("\n"), counts)
            if rest.strip():  # lines after a day line that are no new message
                _append(messages, rest.lstrip("\n"), counts)
        m = following
    counts["continuation_lines"] += continued
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
            seconds = parse_date(stamp) * DAY_SECONDS + parse_time(stamp)
        except ValueError:
            raise DataError(f"{where}: bad date {stamp!r} (expected YYYY-MM-DD HH:MM:SS)") from None
        messages.append((seconds, user, body.replace("\r\n", "\n")))
    return messages


def name_prefixes(messages: list[Message]) -> dict[str, tuple[int, str | None]]:
    """Per speaker: messages, and the `B` every one of their texts starts with as `B : ` (None
    if they do not all). A name holding ` : ` (`A : B`) splits early, and shows so."""
    found: dict[str, tuple[int, str | None]] = {}
    for _, speaker, body in messages:
        n, prefix = found.get(speaker, (0, ""))
        if prefix == "":  # the speaker's first message
            prefix = body.split(" : ", 1)[0] if " : " in body else None
        elif prefix is not None and not body.startswith(prefix + " : "):
            prefix = None
        found[speaker] = (n + 1, prefix)
    return found


def split_names(prefixes: list[dict[str, tuple[int, str | None]]], me: str) -> dict[str, str]:
    """Speakers to put back together (`A` → `A : B`): all their messages (3 or more, or any if
    `A : B` is `me`), over every shard, start with the same `B : `."""
    total: dict[str, tuple[int, str | None]] = {}
    for shard in prefixes:
        for speaker, (n, prefix) in shard.items():
            m, seen = total.get(speaker, (0, prefix))
            total[speaker] = (m + n, prefix if prefix == seen else None)
    return {
        speaker: prefix
        for speaker, (n, prefix) in total.items()
        if prefix is not None and (n >= 3 or f"{speaker} : {prefix}" == me)
    }
