"""The KakaoTalk export layouts, as clients have written them over the years: their message,
notice and day lines, time stamps, header lines, media placeholders and system notices.

The facts (with examples of every layout) are in docs/korean.md. Each layout is one compiled
pattern run over the whole text (`finditer`): a match starts a message, a day line or a
time-stamped notice, and whatever lies between two matches is the rest of the message (its
continuation lines). Time stamps are parsed by `parse_date` / `parse_time`, whose results are
cached: an export repeats the same day and minute thousands of times.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from kotune.errors import DataError

# ------------------------------------------------------------------------------ time stamps

# iOS 17 writes a narrow no-break space before AM/PM; some editors turn spaces into no-break ones
_SP = r"[ \u00a0\u202f]"
_MERIDIEM = r"(?:오전|오후|午前|午後|[AaPp]\.?[Mm]\.?)"  # (午前/午後, 年月日, 曜日: Japanese UI)
TIME = rf"(?:{_MERIDIEM}{_SP}?)?\d{{1,2}}:\d{{2}}(?::\d{{2}})?(?:{_SP}?{_MERIDIEM})?"
KO_DATE = r"\d{4}[년年] ?\d{1,2}[월月] ?\d{1,2}[일日]"
DOT_DATE = r"\d{4}\. ?\d{1,2}\. ?\d{1,2}\.?"
ISO_DATE = r"\d{4}-\d{1,2}-\d{1,2}"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
EN_DATE = rf"(?:{_MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}})"
KO_WEEKDAY = r"(?:[월화수목금토일]요일|[月火水木金土日]曜日)"
EN_WEEKDAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_DATE_FORMS = (
    re.compile(r"(?P<y>\d{4})(?:년|年|\.|-|/) ?(?P<m>\d{1,2})(?:월|月|\.|-|/) ?(?P<d>\d{1,2})"),
    re.compile(r"(?P<mon>[A-Za-z]{3,9})\.? (?P<d>\d{1,2}),? (?P<y>\d{4})"),
    re.compile(r"(?P<d>\d{1,2}) (?P<mon>[A-Za-z]{3,9})\.?,? (?P<y>\d{4})"),
)
_TIME_FORM = re.compile(
    rf"(?:(?P<before>{_MERIDIEM}){_SP}?)?(?P<h>\d{{1,2}}):(?P<mi>\d{{2}})(?::(?P<s>\d{{2}}))?"
    rf"(?:{_SP}?(?P<after>{_MERIDIEM}))?"
)


def to_24h(hour: int, meridiem: str | None) -> int:
    """오전 12:xx is 00:xx and 오후 12:xx is 12:xx (AM/PM alike); no meridiem: 24-hour already."""
    if meridiem is None:
        return hour
    if meridiem in ("오전", "午前") or meridiem[0] in "Aa":
        return 0 if hour == 12 else hour
    return hour if hour == 12 else hour + 12


@lru_cache(maxsize=65536)
def parse_date(text: str) -> int:
    """The proleptic ordinal of a written date (2024년 3월 1일, 2024. 3. 1., March 1, 2024,
    1 March 2024, 2024-03-01); ValueError if it is none or does not exist."""
    for form in _DATE_FORMS:
        m = form.search(text)
        if m is None:
            continue
        groups = m.groupdict()
        month = int(groups["m"]) if "m" in groups else MONTHS.get(groups["mon"].lower())
        if month is None:
            raise ValueError(f"unknown month {groups['mon']!r}")
        return date(int(m.group("y")), month, int(m.group("d"))).toordinal()
    raise ValueError(f"no date in {text!r}")


@lru_cache(maxsize=8192)
def parse_time(text: str) -> int:
    """Seconds since midnight of a written time (오후 7:02, 7:02 PM, 8:34pm, 19:02, 19:02:11)."""
    m = _TIME_FORM.search(text)
    if m is None:
        raise ValueError(f"no time in {text!r}")
    hour, minute, second = int(m.group("h")), int(m.group("mi")), int(m.group("s") or 0)
    meridiem = m.group("before") or m.group("after")
    if minute > 59 or second > 59 or hour > (12 if meridiem else 23) or (meridiem and hour == 0):
        raise ValueError(f"no such time {m.group()!r}")
    return (to_24h(hour, meridiem) * 60 + minute) * 60 + second


# A day line's form: its words, its digits' places (`0년 0월 0일 0요일`, `0, 0 0, 0`). A client
# writes every day line of an export in one form, on the weekday it fell on: a date typed in a
# message in another form (`2024. 3. 15.`, no weekday) or with another weekday is text.
_DAY_PARTS = re.compile(
    rf"\d+|{_MONTH}|{EN_WEEKDAY}|[월화수목금토일月火水木金土日](?=요일|曜日)|{_MERIDIEM}"
)
_WEEKDAY = re.compile(rf"([월화수목금토일])요일|([月火水木金土日])曜日|({EN_WEEKDAY})")
_EN_WEEKDAYS = ("Mon", "Tues", "Wednes", "Thurs", "Fri", "Satur", "Sun")


def day_form(line: str) -> str:
    """The form of a day line: digits, months, weekdays and 오전/오후 all written as 0."""
    return _DAY_PARTS.sub("0", line.strip())


def weekday_ok(line: str) -> bool:
    """Whether the weekday a day line names (if any) is the one its date fell on."""
    m = _WEEKDAY.search(line)
    if m is None:
        return True
    ko, ja, en = m.groups()
    named = "월화수목금토일".index(ko) if ko else "月火水木金土日".index(ja) if ja else None
    if named is None:
        named = _EN_WEEKDAYS.index(en[:-3])
    try:
        return date.fromordinal(parse_date(line)).weekday() == named
    except ValueError:
        return True


# ------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class Layout:
    """One client's way of writing an export. `lines` runs over the whole text (MULTILINE): its
    groups are `msg` (with `date`/`time`, `speaker`), `day` (with `ddate`) and `notice`."""

    name: str
    lines: re.Pattern
    message: re.Pattern  # one message line alone: counts matches when the layout is detected
    day: re.Pattern  # this client's day lines (detection: breaks ties between look-alikes)
    day_line: re.Pattern  # every day line the parser accepts (group `ddate`), alone
    dated: bool  # messages carry their date (else the last day line gives it)
    bare_notices: bool  # notices have no time stamp (PC): told from text by phrase only


def _layout(name: str, stamp: str, days: str, style: str, notice: str | None, *, bracket=False):
    """`days`: every day line the parser accepts; `style`: the ones this client writes."""
    if bracket:  # [speaker] [time] text; a notice: no speaker (`[] [20:35] …`) or a bare line
        msg = rf"\[(?P<speaker>.+?)\] \[{stamp}\](?: |$)"
        notice = r"\[\] \[" + re.sub(r"\(\?P<\w+>", "(?:", stamp) + r"\](?: |$)"
    else:  # stamp, speaker : text
        msg = rf"{stamp}, (?P<speaker>.+?) :(?: |$)"
    parts = [rf"(?P<msg>{msg})", rf"(?P<day>{days})[ \t]*$", rf"(?P<notice>{notice})"]
    return Layout(
        name,
        re.compile("^(?:" + "|".join(parts) + ")", re.MULTILINE),
        re.compile(msg.replace("(?P<", "(?P<m_")),
        re.compile(rf"^(?:{style})[ \t]*$"),
        re.compile(rf"(?:{days})[ \t]*$"),  # .match(text, start, end) anchors it
        dated=stamp.startswith("(?P<date>") or ", (?P<date>" in stamp,
        bare_notices=bracket,
    )


_KO_WEEK_DAY = rf"{KO_DATE} {KO_WEEKDAY}"
_EN_WEEK_DAY = rf"{EN_WEEKDAY},? {EN_DATE}"
_KO_DAYS = rf"-* ?(?P<ddate>{KO_DATE}|{DOT_DATE})(?:,? {TIME}|,? {KO_WEEKDAY})? ?-*"
_EN_DAYS = rf"-* ?(?:{EN_WEEKDAY},? )?(?P<ddate>{EN_DATE})(?:(?:,| at) {TIME})? ?-*"
_ANY_DAYS = (
    rf"-* ?(?:{EN_WEEKDAY},? )?(?P<ddate>{KO_DATE}|{DOT_DATE}|{EN_DATE})(?:,? {KO_WEEKDAY})? ?-*"
)
# PC day lines always carry their dashes: a date someone typed on a line of its own is text
_PC_DAYS = (
    rf"-+ ?(?:{EN_WEEKDAY},? )?(?P<ddate>{KO_DATE}|{DOT_DATE}|{EN_DATE})(?:,? {KO_WEEKDAY})? ?-+"
)

LAYOUTS = (
    # 2024년 3월 1일 오후 7:02, 민지 : 오늘 뭐해?  (day line: the stamp alone; notice: no ` : `)
    _layout(
        "android_ko",
        rf"(?P<date>{KO_DATE}),? (?P<time>{TIME})",
        _KO_DAYS,
        rf"{KO_DATE},? {TIME}",
        rf"{KO_DATE},? {TIME}[,:] ",
    ),
    # 2024. 3. 1. 오후 7:02, 민지 : 오늘 뭐해?  (day line: 2024년 3월 1일 금요일; notice: `stamp: …`)
    _layout(
        "ios_ko",
        rf"(?P<date>{DOT_DATE}) (?P<time>{TIME})",
        _KO_DAYS,
        _KO_WEEK_DAY,
        rf"{DOT_DATE} {TIME}[,:] ",
    ),
    # March 1, 2024, 7:02 PM, 민지 : …  or  March 1, 2024 at 19:12, …  (day line: the stamp alone)
    _layout(
        "android_en",
        rf"(?P<date>{EN_DATE})(?:,| at) (?P<time>{TIME})",
        _EN_DAYS,
        rf"{EN_DATE}(?:,| at) {TIME}",
        rf"{EN_DATE}(?:,| at) {TIME}[,:] ",
    ),
    # Mar 1, 2024, 7:02 PM, 민지 : …  (day line: Friday, March 1, 2024)
    _layout(
        "ios_en",
        rf"(?P<date>{EN_DATE})(?:,| at) (?P<time>{TIME})",
        _EN_DAYS,
        _EN_WEEK_DAY,
        rf"{EN_DATE}(?:,| at) {TIME}[,:] ",
    ),
    # 8:34pm, July 9, 2015, 민지 : 안녕  (older Android, English UI: the time first)
    _layout(
        "android_en_time_first",
        rf"(?P<time>{TIME}), (?P<date>{EN_DATE})",
        rf"(?:{TIME}, )?(?:{EN_WEEKDAY},? )?(?P<ddate>{EN_DATE})",
        rf"{TIME}, {EN_DATE}",
        rf"{TIME}, {EN_DATE}[,:] ",
    ),
    # 2024년 3월 1일 금요일 / 오후 7:02, 민지 : …  (iOS: the time only, under a day line)
    _layout(
        "ios_time_only",
        rf"(?P<time>{TIME})",
        _ANY_DAYS,
        _ANY_DAYS.replace("(?P<ddate>", "(?:"),
        rf"{TIME}[,:] ",
    ),
    # --------------- 2024년 3월 1일 금요일 --------------- / [민지] [오후 7:02] …  (Windows, macOS)
    _layout(
        "pc_ko",
        rf"(?:(?P<date>{KO_DATE}|{DOT_DATE}|{ISO_DATE}),? )?(?P<time>{TIME})",
        _PC_DAYS,
        rf"-+ ?{_KO_WEEK_DAY} ?-+",
        None,
        bracket=True,
    ),
    # --------------- Friday, March 1, 2024 --------------- / [민지] [7:02 PM] …
    _layout(
        "pc_en",
        rf"(?:(?P<date>{EN_DATE}),? )?(?P<time>{TIME})",
        _PC_DAYS,
        rf"-+ ?{_EN_WEEK_DAY} ?-+",
        None,
        bracket=True,
    ),
)
LAYOUT_NAMES = [layout.name for layout in LAYOUTS] + ["csv"]
LAYOUTS_BY_NAME = {layout.name: layout for layout in LAYOUTS}

# The first lines of an export, before its first message (counted as header lines).
HEADERS = re.compile(
    r"^(?:.+ ?카카오톡 대화(?:-\d+)?(?:\.txt)?|"  # 민지 님과(의) …, 스터디방 (4명)과 …, a room's name
    r"KakaoTalk Chats with .+|.+ with KakaoTalk Chats|Talk_.+\.txt|KakaoTalk_?.+\.txt|"
    r"저장한 날짜 ?: ?.+|(?:Date Saved|Saved Date|Saved on) ?: ?.+)[ \t]*$"
)

# The line that says when an export was saved (also found mid-file, where exports were pasted
# one after another: with the title line before it, it is dropped there).
SAVED = re.compile(r"^(?:저장한 날짜|Date Saved|Saved Date|Saved on) ?: ?.+$", re.MULTILINE)

CSV_HEADERS = ({"date", "user", "message"}, {"날짜", "사용자", "메시지"})


def csv_header(line: str) -> list[str] | None:
    """The CSV export's column names, lower-cased, if `line` is its header (Date,User,Message)."""
    if line.count(",") != 2:
        return None
    cells = [cell.strip().lower() for cell in next(csv.reader([line.lstrip("\ufeff")]))]
    return cells if set(cells) in CSV_HEADERS else None


def detect_layout(head: list[str], source: str) -> Layout | None:
    """The layout whose message lines the first lines match most (its day lines break ties:
    Android and iOS English messages look alike); None for the CSV export. None matches: a
    DataError in one line naming every layout tried and the file's first line."""
    first_line = next((n for n, line in enumerate(head, 1) if line.strip()), 1)
    head = [line for line in head if line.strip()]
    if head and csv_header(head[0]):
        return None
    scores = []
    for rank, layout in enumerate(LAYOUTS):
        messages = sum(1 for line in head if layout.message.match(line))
        days = sum(1 for line in head if layout.day.match(line))
        scores.append((messages, days, -rank, layout))
    messages, _, _, layout = max(scores, key=lambda s: s[:3])
    if messages == 0:
        first = head[0][:60] if head else "(empty)"
        hint = ""
        if re.match(r"\s*[\[{]\s*(?:$|[\[{\"])", first):  # not `[12/25/23, …]` (WhatsApp)
            hint = " (it looks like JSON: is --format / persona.data.format right?)"
        raise DataError(
            f"{source}:{first_line}: not a KakaoTalk export in a known layout "
            f"(tried: {', '.join(LAYOUT_NAMES)}); first line: {first!r}{hint}"
        )
    return layout


def read_csv_rows(text: str) -> csv.reader:
    """Rows of the CSV export (quoted cells may hold newlines), header included."""
    return csv.reader(io.StringIO(text))
