"""Masking: pseudonyms, the leak scan, the people looked for, and `kotune mask`."""

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from kotune.masking import (
    Pseudonyms,
    leak_report,
    mask_text,
    people,
    person_key,
    speaker_names,
)
from kotune.pii import name_core, name_forms

FORMS = name_forms(["민지", "김민지", "준호"])


def test_given_names_and_full_names_are_one_person():
    pseudonyms = Pseudonyms()
    assert mask_text("김민지랑 민지, @민지", FORMS, pseudonyms)[0] == (
        "<PERSON1>랑 <PERSON1>, <PERSON1>"
    )


@pytest.mark.parametrize(
    ("nickname", "text", "masked"),
    [
        ("김민지🌸", "민지야 김민지🌸 왔어?", "<PERSON1>야 <PERSON1> 왔어?"),
        ("준호(회사)", "준호 오늘 와?", "<PERSON1> 오늘 와?"),
        ("♡서연♡", "서연아 뭐해", "<PERSON1>아 뭐해"),
        ("[공지]지훈", "지훈이랑 가", "<PERSON1>이랑 가"),
        ("박준호/마케팅", "준호 씨 오늘", "<PERSON1> 씨 오늘"),
        # no one name inside: the nickname stays whole, its words are not taken for a name
        ("오늘도 화이팅", "오늘도 비 와", "오늘도 비 와"),
        ("공부하는 민지", "공부하는 중", "공부하는 중"),
    ],
)
def test_a_decorated_nickname_masks_the_name_inside_it(nickname, text, masked):
    """KakaoTalk nicknames carry emoji, teams and notes around the name people call them by."""
    assert mask_text(text, name_forms([nickname]), Pseudonyms())[0] == masked
    assert person_key(nickname) == person_key(name_core(nickname))


def test_the_leak_scan_finds_what_masking_missed():
    records = [
        {"id": "c", "messages": [{"role": "user", "content": "<PERSON1> 번호 010-9999-8888"}]}
    ]
    report = leak_report(records, FORMS, {"PHONE", "PERSON"})
    assert report == [{"id": "c", "message": 0, "kind": "PHONE", "start": 13, "end": 26}]
    assert leak_report(
        [{"id": "c", "messages": [{"role": "user", "content": "민지 안녕"}]}], FORMS, {"PERSON"}
    )


def test_the_leak_scan_sees_a_unit_or_lot_number_left_alone():
    for text in (
        "<ADDRESS> 한빛타워 1804호",
        "ㅇㅇ 502호",
        "<ADDRESS> 12-3번지",
        "정자일로 88 101동",
    ):
        records = [{"id": "c", "messages": [{"role": "user", "content": text}]}]
        assert [r["kind"] for r in leak_report(records, [], {"ADDRESS"})] == ["ADDRESS"], text


def test_speaker_names_come_from_the_data_and_owner_labels_are_not_names():
    records = [{"meta": {"speakers": ["회원님", "민지"]}}, {"meta": {"speakers": ["서연", "민지"]}}]
    assert people(speaker_names(records), ["지훈", "You"]) == ["민지", "서연", "지훈"]


def test_kiwi_finds_names_before_a_person_cue():
    from kiwipiepy import Kiwi

    from kotune.masking import kiwi_person_names

    names = kiwi_person_names(["어제 지훈이랑 밥 먹었어", "서울에 갔어"], Kiwi())
    assert "지훈" in names and "서울" not in names
    # 씨 and 님 are written apart (the spelling rules want it so)
    names = kiwi_person_names(["최유진 씨한테 전해줘", "예린 님이 보냈어", "김 씨 아저씨"], Kiwi())
    assert names == ["최유진", "예린"]


def test_kotune_mask_is_line_for_line():
    kotune = str(Path(sys.executable).with_name("kotune"))
    lines = "민지야 010-1234-5678로 전화해\n\n준호는 3시에 와\n민지 메일 a.b@example.com\n"
    result = subprocess.run(
        [kotune, "mask", "--names", "민지,준호"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "<PERSON1>야 <PHONE>로 전화해",
        "",
        "<PERSON2>는 3시에 와",
        "<PERSON1> 메일 <EMAIL>",
    ]
    result = subprocess.run(
        [kotune, "mask", "--json"],
        input="전화 010-1234-5678\n없음\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    assert spans == [[{"start": 3, "end": 16, "kind": "PHONE", "confidence": 1.0}], []]


def test_kotune_mask_reads_decomposed_hangul():
    """NFD text (macOS, some exports) hides every cue word and name until it is NFC again."""
    kotune = str(Path(sys.executable).with_name("kotune"))
    nfd = unicodedata.normalize("NFD", "민지야 여권번호 M12345678, 우편번호 04524\n")
    result = subprocess.run(
        [kotune, "mask", "--names", unicodedata.normalize("NFD", "민지")],
        input=nfd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<PERSON1>야 여권번호 <PASSPORT>, 우편번호 <ZIPCODE>\n"
