"""Korean PII: table tests per kind (found and not found), pseudonyms, the leak scan, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kotune.pii import (
    Pseudonyms,
    RecordMasker,
    build_masker,
    find_pii,
    leak_report,
    luhn_ok,
    mask_text,
    name_forms,
    rrn_checksum_ok,
)

FORMS = name_forms(["민지", "김민지", "준호"])


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("내 번호 010-2345-6789야", "내 번호 <PHONE>야"),
        ("01023456789로 전화해", "<PHONE>로 전화해"),
        ("010 2345 6789", "<PHONE>"),
        ("010.2345.6789", "<PHONE>"),
        ("+82 10-2345-6789", "<PHONE>"),
        ("+82 10 2345 6789", "<PHONE>"),
        ("집은 02-345-6789", "집은 <PHONE>"),
        ("031)123-4567 사무실", "<PHONE> 사무실"),
        ("070-1234-5678", "<PHONE>"),
        ("주민번호 900101-1234567", "주민번호 <RRN>"),
        ("900101-1******", "<RRN>"),
        ("외국인 920315-5123456", "외국인 <RRN>"),
        ("9001011234567", "<RRN>"),
        ("카드 4111 1111 1111 1111", "카드 <CARD>"),
        ("아멕스 3782-822463-10005", "아멕스 <CARD>"),
        ("국민은행 123456-01-234567로 보내줘", "국민은행 <ACCOUNT>로 보내줘"),
        ("내 계좌 110-123-456789", "내 계좌 <ACCOUNT>"),
        ("토스로 3333012345678 입금", "토스로 <ACCOUNT> 입금"),
        ("minji.kim94@example.com 으로 메일", "<EMAIL> 으로 메일"),
        ("https://blog.example.com/post/12에서 봤어", "<URL>에서 봤어"),
        ("www.example.org 참고", "<URL> 참고"),
        ("서울 마포구 성미산로12길 34, 101동 1203호", "<ADDRESS>"),
        ("마포구 성미산로 12길 34", "<ADDRESS>"),
        ("성미산로12길 34에서 만나", "<ADDRESS>에서 만나"),
        ("역삼동 178-1번지", "<ADDRESS>"),
        ("101동 1203호로 와", "<ADDRESS>로 와"),
        ("한빛빌 502호", "<ADDRESS>"),
        ("래미안 101동 1203호에 살아", "<ADDRESS>에 살아"),
        ("@민지 이거 봐", "<PERSON1> 이거 봐"),
        ("민지야 뭐해", "<PERSON1>야 뭐해"),
        ("준호랑 갔어", "<PERSON2>랑 갔어"),
        ("김민지 씨", "<PERSON1> 씨"),
    ],
)
def test_pii_is_masked(text, masked):
    pseudonyms = Pseudonyms()
    pseudonyms.register("민지")
    pseudonyms.register("준호")
    assert mask_text(text, FORMS, pseudonyms)[0] == masked


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-02 19:02",
        "2024.3.2",
        "2024. 3. 2.",
        "3월 2일 오후 7시",
        "15,000원",
        "1,234,567원",
        "270mm",
        "350kcal",
        "iOS 17.4",
        "v2.13.0",
        "2시간 30분",
        "1.5kg",
        "2024년 3월",
        "010",
        "대표번호 1588-1234",
        "카드 4111-1111-1111-1112",
        "주문번호 123-45-67890",
        "1234567890원",
        "버스로 3 정거장",
        "을지로 3가 쪽",
        "학교로 5분",
        "100명 중 30%",
        "체중 58.5kg",
        "시속 80km",
        "오전 12:15",
        "점수 95점",
        "302호 강의실",
        "3호선",
        "라면 1, 우동 2, 김밥 3",
        "3. 라멘이나 우동\n4. 김밥",
        "마시멜로\n5. 아침",
        "중식 코스 요리\n4. 이탈리안",
        "2023-2024 시즌",
        "https가 뭐야",
        "김치찌개 1인분 약 300~400kcal",
    ],
)
def test_ordinary_numbers_survive(text):
    assert find_pii(text, FORMS) == []


@pytest.mark.parametrize(
    ("digits", "ok"),
    [("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True)],
)
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok


def test_rrn_checksum_is_confidence_not_shape():
    assert rrn_checksum_ok("9001011234568") != rrn_checksum_ok("9001011234567")
    spans = find_pii("900101-1234568 그리고 900101-1234567")
    assert [s.kind for s in spans] == ["RRN", "RRN"]
    assert sorted(s.confidence for s in spans) == [0.8, 1.0]


def test_the_same_person_is_the_same_pseudonym_across_a_conversation():
    masker = RecordMasker(["민지", "준호"])
    record = {
        "id": "c1",
        "conversation_id": "c1",
        "messages": [
            {"role": "user", "content": "준호야 내일 민지랑 보자"},
            {"role": "assistant", "content": "민지한테 전화해볼게 010-1234-5678 맞지?"},
        ],
        "meta": {"speakers": ["민지", "준호"]},
    }
    masked, counts = masker(record)
    assert [m["content"] for m in masked["messages"]] == [
        "<PERSON1>야 내일 <PERSON2>랑 보자",
        "<PERSON2>한테 전화해볼게 <PHONE> 맞지?",
    ]
    assert masked["meta"]["speakers"] == ["<PERSON2>", "<PERSON1>"]
    assert counts == {"person": 3, "phone": 1}
    again, _ = masker({**record, "id": "c2"})
    assert again["messages"] == masked["messages"]  # consistent over the whole dataset
    assert {a["id"] for a in masker.audit} == {"c1", "c2"}
    assert set(masker.audit[0]) == {"id", "message", "kind", "start", "end"}  # never the value


def test_masked_kinds_follow_the_persona_param():
    masker = RecordMasker(["민지"], kinds=frozenset({"PHONE"}))
    record = {
        "id": "c",
        "conversation_id": "c",
        "messages": [{"role": "user", "content": "민지 010-1234-5678"}],
    }
    assert masker(record)[0]["messages"][0]["content"] == "민지 <PHONE>"


def test_the_leak_scan_finds_what_masking_missed():
    records = [
        {"id": "c", "messages": [{"role": "user", "content": "<PERSON1> 번호 010-9999-8888"}]}
    ]
    report = leak_report(records, FORMS, frozenset({"PHONE", "PERSON"}))
    assert report == [{"id": "c", "message": 0, "kind": "PHONE", "start": 13, "end": 26}]
    assert leak_report(
        [{"id": "c", "messages": [{"role": "user", "content": "민지 안녕"}]}],
        FORMS,
        frozenset({"PERSON"}),
    )


def test_speaker_names_come_from_the_data_and_owner_labels_are_not_names():
    records = [{"meta": {"speakers": ["회원님", "민지"]}}, {"meta": {"speakers": ["서연", "민지"]}}]
    masker = build_masker(records, ["PERSON"], ["지훈", "You"])
    assert masker.names == ["민지", "서연", "지훈"]


def test_kiwi_finds_names_before_a_person_cue():
    from kiwipiepy import Kiwi

    from kotune.pii import kiwi_person_names

    names = kiwi_person_names(["어제 지훈이랑 밥 먹었어", "서울에 갔어"], Kiwi())
    assert "지훈" in names and "서울" not in names


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
