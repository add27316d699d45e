"""KakaoTalk exports: every layout in KOREAN_NOTES.md gives the same conversations."""

from pathlib import Path

import pytest

from kotune.errors import ConfigError, DataError
from kotune.formats import kakaotalk
from kotune.formats.kakaotalk import placeholder, to_24h
from kotune.ingest import ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kakaotalk"
# layout file → the name the exporting user has in it
LAYOUTS = {
    "android_ko.txt": "회원님",
    "android_en.txt": "You",
    "ios_ko.txt": "준호",
    "ios_en.txt": "You",
    "pc_ko.txt": "준호",
    "pc_en.txt": "준호",
    "csv.csv": "준호",
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


def parse(name, **options):
    path = FIXTURES / name
    text = path.read_bytes().decode("utf-8-sig")
    return kakaotalk.parse(text, name, {"me": LAYOUTS[name], **options})


def turns(records):
    return [[(m["role"], m["content"]) for m in r["messages"]] for r in records]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_gives_the_same_conversations(name):
    records, counts = parse(name)
    assert turns(records) == EXPECTED
    layout = name.rsplit(".", 1)[0]
    assert counts[f"layout_{layout}"] == 1
    assert counts["skipped_system_notices"] == 1
    assert counts["skipped_photo"] == 1 and counts["skipped_deleted"] == 1
    assert counts["export_messages"] == 11
    # 오전 12:15 is 00:15; 오후 12:30 is 12:30 (the 24-hour iOS day says 0:15 and 12:30)
    assert [r["meta"]["start"] for r in records] == [
        "2024-03-01T19:02:00",
        "2024-03-02T00:15:00",
        "2024-03-02T12:30:00",
    ]
    assert records[0]["meta"]["layout"] == layout
    assert records[0]["id"] == records[0]["conversation_id"] == f"{layout}-00001"


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
        (19, None, 19),
        (0, None, 0),
    ],
)
def test_to_24h(hour, meridiem, hour24):
    assert to_24h(hour, meridiem) == hour24


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("사진", "photo"),
        ("사진 3장", "photo"),
        ("<사진 읽지 않음>", "photo"),
        ("3 photos", "photo"),
        ("동영상", "video"),
        ("이모티콘", "emoticon"),
        ("(이모티콘)", "emoticon"),
        ("파일: 발표.pdf", "file"),
        ("삭제된 메시지입니다.", "deleted"),
        ("메시지가 삭제되었습니다.", "deleted"),
        ("음성메시지", "voice"),
        ("보이스톡 해요.", "voice"),
        ("사진 보내줘", None),
        ("이모티콘 귀엽다", None),
        ("파일", None),
    ],
)
def test_placeholders(text, kind):
    found = placeholder(text)
    assert (found[0] if found else None) == kind


def test_a_longer_gap_keeps_the_night_together():
    records, _ = parse("android_ko.txt", gap_minutes=400)  # 19:11 → 00:15 is 304 minutes
    assert len(records) == 2 and turns(records)[0][-2:] == [("user", "자?"), ("assistant", "아직")]


def test_media_can_be_kept_as_a_tag():
    records, counts = parse("android_ko.txt", media="tag")
    assert turns(records)[0][2] == ("user", "<사진>\n여기 어때?\n\n을지로 3가 쪽")
    assert counts["tagged_photo"] == 1 and counts["skipped_deleted"] == 1


def test_me_decides_who_is_the_assistant():
    records, _ = kakaotalk.parse(
        (FIXTURES / "pc_ko.txt").read_text(encoding="utf-8"), "pc_ko.txt", {"me": "민지"}
    )
    assert turns(records)[0][0] == ("assistant", "오늘 뭐해?\n저녁 같이 먹을래?")


def test_group_chats_keep_who_said_what():
    text = (
        "[민지] [오후 7:02] 다들 어디야?\n"
        "[서연] [오후 7:03] 나 가는 중\n"
        "[준호] [오후 7:04] 곧 도착\n"
    )
    records, counts = kakaotalk.parse(
        "--------------- 2024년 3월 1일 금요일 ---------------\n" + text, "g.txt", {"me": "준호"}
    )
    assert turns(records) == [
        [("user", "민지: 다들 어디야?\n서연: 나 가는 중"), ("assistant", "곧 도착")]
    ]
    assert records[0]["meta"]["speakers"] == ["민지", "서연", "준호"] and counts["speakers"] == 3


def test_an_unknown_me_lists_the_speakers():
    with pytest.raises(DataError) as error:
        parse("android_ko.txt", me="준호")
    assert (
        "persona.data.options.me is '준호', who never speaks here; speakers found: 민지 (6), 회원님 (5)"
        in str(error.value)
    )


def test_an_unknown_layout_lists_what_was_tried_and_shows_the_first_lines():
    with pytest.raises(DataError) as error:
        kakaotalk.parse("그냥 메모\n둘째 줄\n", "memo.txt", {"me": "x"})
    message = str(error.value)
    assert message.startswith(
        "memo.txt: not a KakaoTalk export in a known layout (tried: android_ko, ios_ko, android_en, ios_en, pc_ko, pc_en, csv)"
    )
    assert "그냥 메모" in message


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ('Date,User,Message\n2024-03-01 19:02:00,"민지"\n', "bad.csv:2: expected 3 columns"),
        ('Date,User,Message\n어제,"민지","안녕"\n', "bad.csv:2: bad date '어제'"),
    ],
)
def test_bad_csv_rows_are_named(rows, message):
    with pytest.raises(DataError, match=message):
        kakaotalk.parse(rows, "bad.csv", {"me": "민지"})


def test_options_are_checked():
    with pytest.raises(ConfigError, match="missing key persona.data.options.me"):
        kakaotalk.parse("", "x.txt", {})
    with pytest.raises(ConfigError, match="persona.data.options.gap_minutes must be > 0"):
        kakaotalk.parse("", "x.txt", {"me": "a", "gap_minutes": 0})


def test_cp949_exports_are_read_and_counted(tmp_path):
    text = (FIXTURES / "pc_ko.txt").read_text(encoding="utf-8")
    path = tmp_path / "old_windows.txt"
    path.write_bytes(text.encode("cp949"))
    records, stats = ingest("kakaotalk", [path], {"me": "준호"})
    assert turns(records) == EXPECTED and stats["files_cp949"] == 1
