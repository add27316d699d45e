"""KakaoTalk exports: every layout (docs/korean.md) gives the same conversations; placeholders,
notices, names and encodings as real exports write them."""

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from kotune.errors import ConfigError, DataError
from kotune.formats import kakaotalk
from kotune.formats.kakaotalk_content import placeholder
from kotune.formats.kakaotalk_layouts import parse_date, parse_time, to_24h
from kotune.ingest import ingest
from kotune.records import count_messages

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kakaotalk"
# fixture → (layout detected, the name the exporting user has in it)
LAYOUTS = {
    "android_ko.txt": ("android_ko", "회원님"),
    "android_ko_24h.txt": ("android_ko", "회원님"),
    "android_en.txt": ("android_en", "You"),
    "android_en_at.txt": ("android_en", "You"),
    "android_en_time_first.txt": ("android_en_time_first", "you"),
    "ios_ko.txt": ("ios_ko", "준호"),
    "ios_ko_time_only.txt": ("ios_time_only", "준호"),
    "ios_en.txt": ("ios_en", "You"),
    "ios_en_at.txt": ("ios_en", "You"),
    "pc_ko.txt": ("pc_ko", "준호"),
    "pc_ko_24h.txt": ("pc_ko", "준호"),
    "pc_en.txt": ("pc_en", "준호"),
    "pc_en_24h.txt": ("pc_en", "준호"),
    "csv.csv": ("csv", "준호"),
    "csv_mac.csv": ("csv", "준호"),
}
EXPECTED = [
    [
        ("user", "오늘 뭐해?\n저녁 같이 먹을래?"),
        ("assistant", "좋아\n7시 반에 보자"),
        ("user", "여기 어때?\n\n을지로 3가 쪽"),
        ("assistant", "괜찮네 ㅋㅋ"),
    ],
    [("user", "자?"), ("assistant", "아직")],
    [("user", "점심 먹었어?"), ("assistant", "응 방금")],
]


def options(me, **more):
    return kakaotalk.Options(me=me, **more)


def parse(name, **more):
    path = FIXTURES / name
    text = path.read_bytes().decode("utf-8-sig")
    return kakaotalk.parse(text, name, options(LAYOUTS[name][1], **more))


def turns(records):
    return [[(m["role"], m["content"]) for m in r["messages"]] for r in records]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_gives_the_same_conversations(name):
    records, counts = parse(name)
    assert turns(records) == EXPECTED
    layout = LAYOUTS[name][0]
    assert counts[f"layout_{layout}"] == 1
    assert counts["skipped_system_notices"] == 1
    assert counts["skipped_photo"] == 1 and counts["skipped_deleted"] == 1
    assert counts["export_messages"] == 11
    # 오전 12:15 is 00:15; 오후 12:30 is 12:30 (24-hour exports say 0:15 and 12:30)
    assert [r["meta"]["start"][:16] for r in records] == [
        "2024-03-01T19:02",
        "2024-03-02T00:15",
        "2024-03-02T12:30",
    ]
    assert records[0]["meta"]["layout"] == layout
    stem = name.rsplit(".", 1)[0]
    assert records[0]["id"] == records[0]["conversation_id"] == f"{stem}-00001"
    assert counts.get("skipped_lines_before_first_message", 0) == 0  # headers are recognised


@pytest.mark.parametrize(
    ("hour", "meridiem", "hour24"),
    [
        (12, "오전", 0),
        (1, "오전", 1),
        (11, "오전", 11),
        (12, "오후", 12),
        (1, "오후", 13),
        (11, "오후", 23),
        (12, "AM", 0),
        (12, "PM", 12),
        (7, "PM", 19),
        (8, "pm", 20),
        (8, "p.m.", 20),
        (12, "a.m.", 0),
        (19, None, 19),
        (0, None, 0),
    ],
)
def test_to_24h(hour, meridiem, hour24):
    assert to_24h(hour, meridiem) == hour24


@pytest.mark.parametrize(
    ("written", "hh_mm_ss"),
    [
        ("오후 7:02", "19:02:00"),
        ("7:02 PM", "19:02:00"),
        ("7:02\u202fPM", "19:02:00"),  # iOS 17: a narrow no-break space before PM
        ("8:34pm", "20:34:00"),
        ("12:15 a.m.", "00:15:00"),
        ("0:15", "00:15:00"),
        ("19:02:11", "19:02:11"),
    ],
)
def test_times(written, hh_mm_ss):
    seconds = parse_time(written)
    assert f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" == hh_mm_ss


@pytest.mark.parametrize("written", ["25:00", "13:05 PM", "7:61", "0:30 AM"])
def test_impossible_times_are_refused(written):
    with pytest.raises(ValueError):
        parse_time(written)


@pytest.mark.parametrize(
    "written",
    [
        "2024년 3월 1일",
        "2024. 3. 1.",
        "2024.3.1",
        "2024-03-01",
        "March 1, 2024",
        "Mar 1, 2024",
        "1 March 2024",
        "Friday, March 1, 2024",
    ],
)
def test_dates(written):
    assert parse_date(written) == parse_date("2024-03-01")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("사진", "photo"),
        ("사진 3장", "photo"),
        ("<사진 읽지 않음>", "photo"),
        ("<사진>", "photo"),
        ("‹사진>", "photo"),
        ("(사진)", "photo"),
        ("photo", "photo"),
        ("Photo", "photo"),
        ("<Photo>", "photo"),
        ("3 photos", "photo"),
        ("동영상", "video"),
        ("이모티콘", "emoticon"),
        ("(이모티콘)", "emoticon"),
        ("(emoticon)", "emoticon"),
        ("파일: 발표.pdf", "file"),
        ("File: report.pdf", "file"),
        ("삭제된 메시지입니다.", "deleted"),
        ("삭제된 메시지입니다", "deleted"),  # some clients write no full stop
        ("메시지가 삭제되었습니다.", "deleted"),
        ("This message was deleted.", "deleted"),
        ("음성메시지", "voice"),
        ("보이스톡 해요.", "call"),
        ("보이스톡 12:03", "call"),
        ("사진 보내줘", None),
        ("이모티콘 귀엽다", None),
        ("photo 좀", None),
        ("파일", None),
        ("사진은 내일", None),
        ("샵검색: #강남역 맛집", "search"),
        ("샵검색 : #날씨", "search"),
        (
            "송금봉투가 도착했어요. 송금 받기 전까지 보낸 분은 내역 상세화면에서 취소할 수 있어요.",
            "pay",
        ),
        (
            "30,000원을 보냈어요.\n송금 받기 전까지 보낸 분은 내역 상세화면에서 취소할 수 있어요.",
            "pay",
        ),
        ("송금봉투를 받았어요. 받은 카카오페이머니는 송금 및 온/오프라인 결제도 가능해요.", "pay"),
        ("정산 내용을 확인해주세요.\n\n- 정산금액 : 30,000원\n- 요청인원 : 4명", "pay"),
        ("30,000원 보냈어", None),
        ("샵검색 해봐", None),
        ("정산 내용을 확인해주세요.", None),
    ],
)
def test_placeholders(text, kind):
    assert placeholder(text) == kind


def test_a_longer_gap_keeps_the_night_together():
    records, _ = parse("android_ko.txt", gap_minutes=400)  # 19:11 → 00:15 is 304 minutes
    assert len(records) == 2 and turns(records)[0][-2:] == [("user", "자?"), ("assistant", "아직")]


def test_media_can_be_kept_as_a_tag():
    records, counts = parse("android_ko.txt", media="tag")
    assert turns(records)[0][2] == ("user", "<사진>\n여기 어때?\n\n을지로 3가 쪽")
    assert counts["tagged_photo"] == 1 and counts["skipped_deleted"] == 1


def test_me_decides_who_is_the_assistant():
    text = (FIXTURES / "pc_ko.txt").read_text(encoding="utf-8")
    records, _ = kakaotalk.parse(text, "pc_ko.txt", options("민지"))
    assert turns(records)[0][0] == ("assistant", "오늘 뭐해?\n저녁 같이 먹을래?")


def test_group_chats_keep_who_said_what():
    text = (
        "[민지] [오후 7:02] 다들 어디야?\n"
        "[서연] [오후 7:03] 나 가는 중\n"
        "[준호] [오후 7:04] 곧 도착\n"
    )
    records, counts = kakaotalk.parse(
        "--------------- 2024년 3월 1일 금요일 ---------------\n" + text, "g.txt", options("준호")
    )
    assert turns(records) == [
        [("user", "민지: 다들 어디야?\n서연: 나 가는 중"), ("assistant", "곧 도착")]
    ]
    assert records[0]["meta"]["speakers"] == ["민지", "서연", "준호"] and counts["speakers"] == 3


def test_an_old_ios_group_export_with_a_name_holding_the_separator():
    records, counts = parse_file("ios_ko_group_2015.txt", "회원님", media="tag")
    assert counts["layout_ios_ko"] == 1 and counts["header_lines"] == 2
    assert counts["skipped_system_notices"] == 2
    assert turns(records) == [
        [
            ("user", "민지: 다들 스터디 언제 돼?\n서연: 난 주말\n지우 : 회사: 나도 주말!"),
            ("assistant", "그럼 토요일 2시\n어때"),
            ("user", "지우 : 회사: 좋아\n지우 : 회사: 장소는?"),
        ],
        [("assistant", "도착")],
    ]
    # the afternoon of only a photo and an emoticon has no typed text: dropped and counted
    assert counts["skipped_conversations_media_only"] == 1
    assert counts["tagged_photo"] == 1 and counts["tagged_emoticon"] == 1
    assert records[0]["meta"]["speakers"] == ["민지", "서연", "지우 : 회사", "회원님"]


def test_pc_names_with_brackets_and_bare_notices():
    records, counts = parse_file("pc_ko_names.txt", "준호")
    assert turns(records) == [
        [
            ("user", "민지 [회사]: 오늘 [중요] 회의 몇 시야?\n서연 (대학): 3시"),
            ("assistant", "[공지] 3시에 봐요\n2층 회의실"),
        ]
    ]
    assert counts["skipped_system_notices"] == 1 and counts["skipped_photo"] == 1


def parse_file(name, me, **more):
    text = (FIXTURES / name).read_bytes().decode("utf-8-sig")
    return kakaotalk.parse(text, name, options(me, **more))


def test_a_message_before_any_day_line_is_named():
    with pytest.raises(DataError, match=r"t.txt:1: a message before any day line"):
        kakaotalk.parse("오후 7:02, 민지 : 안녕\n오후 7:03, 준호 : 응\n", "t.txt", options("준호"))


def test_an_impossible_time_is_named_with_its_line():
    text = "2024년 3월 1일 오후 7:02, 민지 : 안녕\n2024년 3월 1일 오후 13:61, 준호 : 응\n"
    with pytest.raises(DataError, match=r"a.txt:2: no such time"):
        kakaotalk.parse(text, "a.txt", options("준호"))


def test_an_unknown_me_lists_the_speakers(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes((FIXTURES / "android_ko.txt").read_bytes())
    with pytest.raises(DataError) as error:
        ingest("kakaotalk", [path], {"me": "준호"})
    assert "persona.data.options.me is '준호', who never speaks in" in str(error.value)
    assert "speakers found: 민지 (6), 회원님 (5)" in str(error.value)
    with pytest.raises(DataError, match="^--me is '준호'"):
        ingest("kakaotalk", [path], {"me": "준호"}, {"me": "--me"})


def test_an_unknown_layout_is_one_line_naming_what_was_tried():
    with pytest.raises(DataError) as error:
        kakaotalk.parse("\n그냥 메모\n둘째 줄\n", "memo.txt", options("x"))
    message = str(error.value)
    assert message == (
        "memo.txt:2: not a KakaoTalk export in a known layout (tried: android_ko, ios_ko, "
        "android_en, ios_en, android_en_time_first, ios_time_only, pc_ko, pc_en, csv); "
        "first line: '그냥 메모'"
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ('Date,User,Message\n2024-03-01 19:02:00,"민지"\n', "bad.csv:2: expected 3 columns"),
        ('Date,User,Message\n어제,"민지","안녕"\n', "bad.csv:2: bad date '어제'"),
    ],
)
def test_bad_csv_rows_are_named(rows, message):
    with pytest.raises(DataError, match=message):
        kakaotalk.parse(rows, "bad.csv", options("민지"))


@pytest.mark.parametrize(
    ("given", "names", "message"),
    [
        ({}, None, "missing key persona.data.options.me"),
        ({"me": "a", "gap_minutes": 0}, None, "persona.data.options.gap_minutes must be > 0"),
        ({}, {"me": "--me"}, "missing --me"),
        ({"me": "a", "gap_minutes": 0}, {"gap_minutes": "--gap-minutes"}, "--gap-minutes must be"),
        ({"me": "a", "colour": 1}, None, "unknown key persona.data.options.colour"),
    ],
)
def test_options_are_checked_once_in_the_users_words(tmp_path, given, names, message):
    path = tmp_path / "chat.txt"
    path.write_bytes((FIXTURES / "pc_ko.txt").read_bytes())
    with pytest.raises(ConfigError, match=message):
        ingest("kakaotalk", [path], given, names)


@pytest.mark.parametrize(
    ("encoding", "counted"),
    [
        ("cp949", "cp949"),
        ("utf-16", "utf16"),
        ("utf-16-le", "utf16"),
        ("utf-16-be", "utf16"),
        ("utf-32", "utf32"),
        ("utf-32-le", "utf32"),
        ("utf-8-sig", "utf8"),
    ],
)
def test_exports_in_other_encodings_are_read_and_counted(tmp_path, encoding, counted):
    text = (FIXTURES / "pc_ko.txt").read_text(encoding="utf-8")
    path = tmp_path / "old_windows.txt"
    path.write_bytes(text.encode(encoding))  # utf-16/utf-32: with a BOM; -le/-be: without
    records, stats = ingest("kakaotalk", [path], {"me": "준호"})
    assert turns(records) == EXPECTED
    assert stats[f"files_{counted}"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not text but a PNG image"),
        (b"PK\x03\x04\x14\x00", "a ZIP archive"),
        (bytes(range(256)) * 4, "binary data, not text (a NUL byte at byte 0)"),
    ],
)
def test_binary_files_are_named_for_what_they_are(tmp_path, content, message):
    path = tmp_path / "chat.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest("kakaotalk", [path], {"me": "준호"})


def long_export(layout_file, days):
    """The fixture's two days repeated over `days` days (dates moved on), as one export."""
    text = (FIXTURES / layout_file).read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    header, body = text.split("\n\n", 1)
    out = [header, ""]
    for day in range(days):
        when = date(2024, 3, 1) + timedelta(days=2 * day)
        after = when + timedelta(days=1)
        out.append(
            body.replace("2024년 3월 1일", f"{when.year}년 {when.month}월 {when.day}일")
            .replace("2024년 3월 2일", f"{after.year}년 {after.month}월 {after.day}일")
            .replace("금요일", "\0요일")  # (in two steps: 금 may become 토)
            .replace("토요일", "\1요일")
            .replace("\0", "월화수목금토일"[when.weekday()])
            .replace("\1", "월화수목금토일"[after.weekday()])
            .replace("을지로 3가 쪽", f"을지로 3가 쪽 {day}")
        )
    return "\n".join(out)


@pytest.mark.parametrize("name", ["android_ko.txt", "ios_ko_time_only.txt", "pc_ko.txt"])
def test_the_records_are_the_same_on_one_core_or_many(name):
    text = long_export(name, 200)
    opts = options(LAYOUTS[name][1])
    one = kakaotalk.convert(text, "chat.txt", opts, 1)
    many = kakaotalk.convert(text, "chat.txt", opts, 3)
    assert one == many
    assert one[2]["conversations"] == 600 and len(set(one[1])) == 600
    counted = count_messages([json.loads(line) for line in one[0]])
    assert {key: one[2][key] for key in counted} == counted
    layout = kakaotalk.LAYOUTS_BY_NAME[LAYOUTS[name][0]]
    assert len(kakaotalk.cut_points(text, layout, 60, 3)) == 4  # three shards really ran


@pytest.mark.parametrize("name", ["ios_ko_time_only.txt", "pc_ko.txt"])
def test_dates_typed_in_messages_are_text_on_one_core_or_many(name):
    """Shards cut and start where the one-core parse would put the day: typed dates skipped."""
    text = long_export(name, 200)
    for day in range(0, 200, 7):  # a date typed on a line of its own, text after it
        text = text.replace(
            f"을지로 3가 쪽 {day}\n", f"을지로 3가 쪽 {day}\n2030년 1월 1일 화요일\n메모\n"
        )
    opts = options(LAYOUTS[name][1])
    one = kakaotalk.convert(text, "chat.txt", opts, 1)
    assert one == kakaotalk.convert(text, "chat.txt", opts, 3)
    assert one[2]["conversations"] == 600 and one[2]["day_lines"] == 400
    assert all(b'"2030-' not in line for line in one[0])  # no message dated by a typed date
    assert sum(line.count("2030년 1월 1일 화요일".encode()) for line in one[0]) == 29  # kept


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("ios_ko_time_only.txt", ["2030년 1월 1일", "2030. 1. 1.", "2030년 1월 1일 수요일"]),
        (
            "pc_ko.txt",
            [
                "----- 2030년 1월 1일 화요일 -----",
                "--------------- 2030년 1월 1일 수요일 ---------------",
            ],
        ),
    ],
)
def test_dates_typed_just_before_a_message_are_text_on_one_core_or_many(name, typed):
    """A date typed on a message's last line, the next message right after it: not in the form
    of the export's own day lines, or not on the weekday named, it is text, on any core."""
    text = long_export(name, 200)
    for day in range(0, 200, 7):
        line = typed[day % len(typed)]
        text = text.replace(f"을지로 3가 쪽 {day}\n", f"을지로 3가 쪽 {day}\n{line}\n")
    opts = options(LAYOUTS[name][1])
    one = kakaotalk.convert(text, "chat.txt", opts, 1)
    assert one == kakaotalk.convert(text, "chat.txt", opts, 3)
    assert one[2]["conversations"] == 600 and one[2]["day_lines"] == 400
    assert all(b'"2030-' not in line for line in one[0])
    assert sum(line.count(b"2030") for line in one[0]) == 29  # each typed line kept, once


def test_pc_notices_without_a_speaker_and_in_older_words():
    text = (
        "하늘 님과 카카오톡 대화\n저장한 날짜 : 2021-12-18 19:17:00\n\n"
        "--------------- 2021년 12월 29일 수요일 ---------------\n"
        "[하늘] [20:36] 안녕\n"
        "이어지는 줄\n"
        "[] [20:37] 채팅방 알림\n"  # a system line: no speaker
        "수아님을 초대하였습니다.\n"  # older clients: 하였습니다
        "하늘님이 나갔습니다.\n"
        "[도윤] [20:38] 반가워\n"
    )
    records, counts = kakaotalk.parse(text, "pc.txt", options("도윤"))
    assert turns(records) == [[("user", "안녕\n이어지는 줄"), ("assistant", "반가워")]]
    assert counts["skipped_system_notices"] == 3 and counts["export_messages"] == 2


def test_a_notice_keeps_its_own_lines():
    """An open chat's entry notice runs over several lines: none of them joins a turn."""
    text = (
        "독서 모임 카카오톡 대화\n저장한 날짜 : 2024년 3월 2일 오후 9:15\n\n"
        "2024년 3월 1일 오후 7:01, 민지 : 안녕하세요\n"
        "2024년 3월 1일 오후 7:02, 회원님 : 반가워요\n"
        "2024년 3월 1일 오후 7:04, 서연님이 들어왔습니다.\n"
        "운영정책을 위반한 메시지로 신고 접수 시 카카오톡 이용에 제한이 있을 수 있습니다.\n"
        "타인, 기관 등의 사칭에 유의해 주세요. 금전 또는 개인정보를 요구 받을 경우 신고해 주시기 "
        "바랍니다.\n"
        "2024년 3월 1일 오후 7:05, 서연 : 저도 왔어요\n"
    )
    records, counts = kakaotalk.parse(text, "open.txt", options("회원님"))
    assert turns(records) == [
        [("user", "민지: 안녕하세요"), ("assistant", "반가워요"), ("user", "서연: 저도 왔어요")]
    ]
    assert counts["skipped_system_notices"] == 1 and counts["skipped_notice_lines"] == 2
    assert counts["header_lines"] == 2  # a room's name is a header too


def test_a_day_line_with_a_policy_line_after_it_is_still_a_day_line():
    text = (
        "2024년 3월 1일 오후 7:00\n2024년 3월 1일 오후 7:01, 민지 : 안녕하세요\n"
        "2024년 3월 1일 오후 7:02, 회원님 : 반가워요\n"
        "2024년 3월 2일 오전 9:00\n"
        "운영정책을 위반한 메시지로 신고 접수 시 카카오톡 이용에 제한이 있을 수 있습니다.\n"
        "2024년 3월 2일 오전 9:01, 민지 : 좋은 아침\n2024년 3월 2일 오전 9:02, 회원님 : 굿모닝\n"
    )
    records, counts = kakaotalk.parse(text, "open.txt", options("회원님"))
    assert turns(records) == [
        [("user", "안녕하세요"), ("assistant", "반가워요")],
        [("user", "좋은 아침"), ("assistant", "굿모닝")],
    ]
    assert counts["day_lines"] == 2 and counts["skipped_system_notices"] == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "민지 님과 카카오톡 대화\n저장한 날짜 : 2024-03-02 21:15:00\n\n"
            "--------------- 2024년 3월 1일 금요일 ---------------\n"
            "[민지] [오후 7:02] 안녕\n[준호] [오후 7:03] 응\n",
            "민지 님과 카카오톡 대화\n저장한 날짜 : 2024-03-09 21:15:00\n\n"
            "--------------- 2024년 3월 8일 금요일 ---------------\n"
            "[민지] [오후 7:02] 또 안녕\n[준호] [오후 7:03] 또 응\n",
        ),
        (
            "Talk_2024.3.2 21:15-1.txt\n저장한 날짜 : 2024. 3. 2. 오후 9:15\n\n"
            "2024년 3월 1일 금요일\n"
            "2024. 3. 1. 오후 7:02, 민지 : 안녕\n2024. 3. 1. 오후 7:03, 준호 : 응\n",
            "Talk_2024.3.9 21:15-1.txt\n저장한 날짜 : 2024. 3. 9. 오후 9:15\n"
            "2024년 3월 8일 금요일\n"
            "2024. 3. 8. 오후 7:02, 민지 : 또 안녕\n2024. 3. 8. 오후 7:03, 준호 : 또 응\n",
        ),
    ],
)
def test_exports_pasted_one_after_another(first, second):
    """A later export's header lines are no part of the message before them."""
    records, counts = kakaotalk.parse(first + second, "all.txt", options("준호"))
    assert turns(records) == [
        [("user", "안녕"), ("assistant", "응")],
        [("user", "또 안녕"), ("assistant", "또 응")],
    ]
    assert counts["header_lines"] == 4


@pytest.mark.parametrize(
    ("text", "typed"),
    [
        # iOS: the export's day lines name their weekday; this one does not, or names another
        (
            "2024년 3월 1일 금요일\n오후 7:02, 민지 : 다음 일정\n2024년 3월 15일\n"
            "오후 7:03, 준호 : 알겠어\n",
            "2024년 3월 15일",
        ),
        (
            "2024년 3월 1일 금요일\n오후 7:02, 민지 : 다음 일정\n2024년 3월 15일 월요일\n"
            "오후 7:03, 준호 : 알겠어\n",
            "2024년 3월 15일 월요일",
        ),
        (
            "2024년 3월 1일 금요일\n오후 7:02, 민지 : 다음 일정\n2024. 3. 15.\n"
            "오후 7:03, 준호 : 알겠어\n",
            "2024. 3. 15.",
        ),
        (
            "Friday, March 1, 2024\n7:02 PM, 민지 : 다음 일정\nMarch 15, 2024\n"
            "7:03 PM, 준호 : 알겠어\n",
            "March 15, 2024",
        ),
        # PC: dashes of another length than the export's own
        (
            "--------------- 2024년 3월 1일 금요일 ---------------\n"
            "[민지] [오후 7:02] 다음 일정\n---- 2024년 3월 15일 금요일 ----\n"
            "[준호] [오후 7:03] 알겠어\n",
            "---- 2024년 3월 15일 금요일 ----",
        ),
        # Android: the export's day lines are a stamp alone
        (
            "2024년 3월 1일 오후 7:02\n"
            "2024년 3월 1일 오후 7:02, 민지 : 다음 일정\n2024년 3월 15일 금요일\n"
            "2024년 3월 1일 오후 7:03, 준호 : 알겠어\n",
            "2024년 3월 15일 금요일",
        ),
    ],
)
def test_a_date_typed_just_before_a_message_stays_text(text, typed):
    records, counts = kakaotalk.parse(text, "t.txt", options("준호"))
    assert len(records) == 1 and counts["day_lines"] == 1
    said = turns(records)[0]
    assert said == [("user", f"다음 일정\n{typed}"), ("assistant", "알겠어")]
    assert records[0]["meta"]["end"] == "2024-03-01T19:03:00"


@pytest.mark.parametrize(
    "text",
    [
        "2024년 3월 1일 금요일\n오후 7:02, 민지 : 안녕\n2024년 3월 2일 토요일\n오후 7:03, 준호 : 응\n",
        "Friday, March 1, 2024\n7:02 PM, 민지 : 안녕\nSaturday, March 2, 2024\n7:03 PM, 준호 : 응\n",
        "--------------- 2024년 3월 1일 금요일 ---------------\n[민지] [오후 7:02] 안녕\n"
        "--------------- 2024년 3월 2일 토요일 ---------------\n[준호] [오후 7:03] 응\n",
    ],
)
def test_real_day_lines_in_the_exports_own_form_are_days(text):
    records, counts = kakaotalk.parse(text, "t.txt", options("준호"))
    assert counts["day_lines"] == 2
    assert records[-1]["meta"]["end"] == "2024-03-02T19:03:00"


@pytest.mark.parametrize(
    "text",
    [
        "--------------- 2024년 3월 1일 금요일 ---------------\n"
        "[민지] [오후 7:02] 다음 일정\n2024년 3월 15일 금요일\n- 10시 회의\n"
        "[준호] [오후 7:03] 알겠어\n",
        # iOS: only the time on message lines; a typed date followed by text, or going back
        "2024년 3월 1일 금요일\n"
        "오후 7:02, 민지 : 다음 일정\n2024년 3월 15일 금요일\n- 10시 회의\n"
        "오후 7:03, 준호 : 알겠어\n",
        # Android: dated messages, but the line was taken for a day line and lost
        "2024년 3월 1일 금요일\n"
        "2024년 3월 1일 오후 7:02, 민지 : 다음 일정\n2024년 3월 15일 금요일\n- 10시 회의\n"
        "2024년 3월 1일 오후 7:03, 준호 : 알겠어\n",
    ],
)
def test_a_date_typed_in_a_message_stays_text(text):
    records, counts = kakaotalk.parse(text, "t.txt", options("준호"))
    assert len(records) == 1 and counts["day_lines"] == 1
    said = turns(records)[0]
    assert said[0] == ("user", "다음 일정\n2024년 3월 15일 금요일\n- 10시 회의")
    assert said[1] == ("assistant", "알겠어")
    assert records[0]["meta"]["end"] == "2024-03-01T19:03:00"


def test_kakaopay_cards_and_search_shares_are_no_turns():
    text = (
        "2026년 1월 13일 화요일\n"
        "2026. 1. 13. 08:26, 하늘 : 정산 내용을 확인해주세요.\n\n\n- 정산금액 : 30,000원\n"
        "- 요청인원 : 4명\n\n7,500원을 송금해주세요.\n"
        "2026. 1. 13. 08:40, 도윤 : 송금봉투가 도착했어요. 송금 받기 전까지 보낸 분은 내역 "
        "상세화면에서 취소할 수 있어요.\n"
        "2026. 1. 13. 08:41, 도윤 : 보냈어\n"
        "2026. 1. 13. 08:42, 하늘 : 샵검색: #을지로 맛집\n"
        "2026. 1. 13. 08:43, 하늘 : 고마워\n"
    )
    records, counts = kakaotalk.parse(text, "pay.txt", options("도윤", media="tag"))
    assert counts["tagged_pay"] == 2 and counts["tagged_search"] == 1
    assert turns(records) == [
        [("user", "<송금>"), ("assistant", "<송금>\n보냈어"), ("user", "<샵검색>\n고마워")]
    ]
    records, counts = kakaotalk.parse(text, "pay.txt", options("도윤"))
    assert turns(records) == [[("assistant", "보냈어"), ("user", "고마워")]]
    assert counts["skipped_pay"] == 2 and counts["skipped_search"] == 1


@pytest.mark.parametrize(
    ("text", "json_hint"),
    [
        ("[12/25/23, 10:30:45 PM] Minji: hi\n", False),  # WhatsApp: brackets, but no JSON
        ("12/25/23, 22:30 - Minji: hi\n", False),
        ('{"id": "a", "messages": []}\n', True),
        ('[\n  {"instruction": "a"}\n]\n', True),
    ],
)
def test_other_exports_are_refused_in_one_line(text, json_hint):
    with pytest.raises(DataError, match=r"^other.txt:1: not a KakaoTalk export") as error:
        kakaotalk.parse(text, "other.txt", options("x"))
    assert ("it looks like JSON" in str(error.value)) is json_hint
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "layout"),
    [
        (
            "2024年3月1日 午後7:02, 민지 : 今何してる?\n2024年3月1日 午後7:05, 준호 : ひま\n"
            "2024年3月2日 午前12:15, 민지 : 寝た?\n2024年3月2日 午前12:20, 준호 : まだ\n",
            "android_ko",
        ),
        (
            "--------------- 2024年3月1日 金曜日 ---------------\n"
            "[민지] [午後 7:02] 今何してる?\n[준호] [午後 7:05] ひま\n"
            "--------------- 2024年3月2日 土曜日 ---------------\n"
            "[민지] [午前 12:15] 寝た?\n[준호] [午前 12:20] まだ\n",
            "pc_ko",
        ),
    ],
)
def test_japanese_ui_dates_and_times(text, layout):
    """年月日 dates, 午前/午後 times and 曜日 day lines read as their Korean counterparts."""
    records, counts = kakaotalk.parse(text, "jp.txt", options("준호"))
    assert counts[f"layout_{layout}"] == 1
    assert turns(records) == [
        [("user", "今何してる?"), ("assistant", "ひま")],
        [("user", "寝た?"), ("assistant", "まだ")],
    ]
    assert [r["meta"]["start"] for r in records] == ["2024-03-01T19:02:00", "2024-03-02T00:15:00"]


def test_an_emoticon_sent_with_words_keeps_the_words():
    text = (
        'Date,User,Message\n2024-03-01 19:02:00,"민지","(이모티콘) 고마워"\n'
        '2024-03-01 19:03:00,"준호","(이모티콘) "\n2024-03-01 19:04:00,"준호","이모티콘 귀엽다"\n'
    )
    records, counts = kakaotalk.parse(text, "mac.csv", options("준호"))
    assert turns(records) == [[("user", "고마워"), ("assistant", "이모티콘 귀엽다")]]
    assert counts["skipped_emoticon"] == 2
    records, counts = kakaotalk.parse(text, "mac.csv", options("준호", media="tag"))
    assert turns(records)[0][0] == ("user", "<이모티콘>\n고마워")


def _ko_time(t):
    return ("오전" if t.hour < 12 else "오후") + f" {t.hour % 12 or 12}:{t.minute:02d}"


def _en_time(t):
    return f"{t.hour % 12 or 12}:{t.minute:02d} " + ("AM" if t.hour < 12 else "PM")


def _ko_date(t):
    return f"{t.year}년 {t.month}월 {t.day}일"


def _en_date(t):
    return f"{t:%B} {t.day}, {t.year}"


# layout → (day line, message line, notice line, the exporting user), as each client writes them
WRITERS = {
    "android_ko": (
        lambda t: f"{_ko_date(t)} {_ko_time(t)}",
        lambda t, who, text: f"{_ko_date(t)} {_ko_time(t)}, {who} : {text}",
        lambda t, text: f"{_ko_date(t)} {_ko_time(t)}, {text}",
        "회원님",
    ),
    "ios_ko": (
        lambda t: f"{_ko_date(t)} {'월화수목금토일'[t.weekday()]}요일",
        lambda t, who, text: f"{t.year}. {t.month}. {t.day}. {_ko_time(t)}, {who} : {text}",
        lambda t, text: f"{t.year}. {t.month}. {t.day}. {_ko_time(t)}: {text}",
        "준호",
    ),
    "android_en": (
        lambda t: f"{_en_date(t)}, {_en_time(t)}",
        lambda t, who, text: f"{_en_date(t)}, {_en_time(t)}, {who} : {text}",
        lambda t, text: f"{_en_date(t)}, {_en_time(t)}, {text}",
        "You",
    ),
    "ios_time_only": (
        lambda t: f"{_ko_date(t)} {'월화수목금토일'[t.weekday()]}요일",
        lambda t, who, text: f"{_ko_time(t)}, {who} : {text}",
        lambda t, text: f"{_ko_time(t)}: {text}",
        "준호",
    ),
    "pc_ko": (
        lambda t: (
            f"--------------- {_ko_date(t)} {'월화수목금토일'[t.weekday()]}요일 ---------------"
        ),
        lambda t, who, text: f"[{who}] [{_ko_time(t)}] {text}",
        lambda t, text: text,
        "준호",
    ),
    "pc_en": (
        lambda t: f"--------------- {t:%A}, {_en_date(t)} ---------------",
        lambda t, who, text: f"[{who}] [{_en_time(t)}] {text}",
        lambda t, text: text,
        "준호",
    ),
}


@pytest.mark.parametrize("layout", list(WRITERS))
def test_generated_exports_keep_every_message_and_nothing_else(layout):
    """A seeded month of group chat in each layout: every typed line reaches a turn of the right
    side, in order, with its writer's name; no notice, placeholder or header ever does; the same
    on one core or three."""
    import random

    rng = random.Random(14)
    day_line, message, notice, me = WRITERS[layout]
    words = [
        "오늘",
        "내일",
        "밥",
        "먹자",
        "어디야",
        "좋아",
        "ㅋㅋ",
        "응",
        "진짜",
        "회의",
        "끝나고",
        "연락해",
        "주말에",
        "영화",
        "볼래",
    ]
    gone = [
        "사진",
        "이모티콘",
        "삭제된 메시지입니다.",
        "사진 3장",
        "파일: 회의록.pdf",
        "샵검색: #맛집",
    ]
    left = "다은 left this chatroom." if layout.endswith("en") else "다은님이 나갔습니다."
    lines = ["단톡방 카카오톡 대화", "저장한 날짜 : 2023-06-01 10:00:00", ""]
    said, t, today = [], datetime(2023, 5, 1, 8, 0), None
    for i in range(300):
        t += timedelta(minutes=rng.choice([0, 1, 2, 5, 30, 200, 900]))
        if today != t.date():
            lines.append(day_line(t))
            today = t.date()
        who, roll = rng.choice(["민지", me, "서연"]), rng.random()
        if roll < 0.08:
            lines.append(notice(t, left))
        elif roll < 0.16:
            lines.append(message(t, who, rng.choice(gone)))
        else:
            body = [
                f"{' '.join(rng.sample(words, 3))} #{i}.{k}"
                for k in range(rng.choice([1, 1, 2, 3]))
            ]
            if len(body) > 1 and rng.random() < 0.2:  # a date typed on a line of its own
                body.insert(1, f"{_ko_date(t + timedelta(days=40))} 금요일")
            lines += [message(t, who, body[0]), *body[1:]]
            said.append((who, body))
    text = "\n".join(lines) + "\n"
    opts = options(me)
    one = kakaotalk.convert(text, "g.txt", opts, 1)
    assert one == kakaotalk.convert(text, "g.txt", opts, 3)
    records = [json.loads(line) for line in one[0]]
    turns_said = [(m["role"], m["content"]) for r in records for m in r["messages"]]
    flat = "\n".join(content for _, content in turns_said)
    position = 0
    for who, body in said:  # in order, whole, on the right side
        shown = "\n".join(body) if who == me else "\n".join([f"{who}: {body[0]}", *body[1:]])
        position = flat.index(shown, position)
        role = next(role for role, content in turns_said if shown in content)
        assert role == ("assistant" if who == me else "user")
    for never in [
        "나갔습니다",
        "left this",
        "삭제된",
        "사진",
        "이모티콘",
        "파일:",
        "샵검색",
        "저장한",
    ]:
        assert never not in flat
    assert [r["meta"]["start"] for r in records] == sorted(r["meta"]["start"] for r in records)
    assert one[2][f"layout_{layout}"] == 1 and one[2]["skipped_system_notices"] > 10
