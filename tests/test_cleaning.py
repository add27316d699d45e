"""The clean step: normalisation, every drop counted and said, masking on the normalised text,
the leak scan, and the same bytes on one core or many."""

import json
import unicodedata

import pytest

from kotune.cleaning import clean_dataset, clean_file, normalize_text
from kotune.config import CleanConfig, PiiConfig
from kotune.errors import DataError

NO_PII = PiiConfig(kinds=[])


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (unicodedata.normalize("NFD", "한글"), "한글"),  # decomposed jamo are joined
        ("  맹자  가라사대\t\t인의  ", "맹자 가라사대 인의"),
        ("첫 줄 \r\n 둘째 줄", "첫 줄\n둘째 줄"),
        ("가\n\n\n\n나", "가\n\n나"),
        ("\u3000전각\u00a0공백\u200b", "전각 공백"),
        ("이미 깔끔한 줄\n둘째 줄", "이미 깔끔한 줄\n둘째 줄"),
        ("", ""),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean


def record(cid, *turns, meta=None):
    roles = ["user", "assistant"] * len(turns)
    return {
        "id": cid,
        "conversation_id": cid,
        "messages": [{"role": r, "content": t} for r, t in zip(roles, turns)],
        "meta": meta or {},
    }


def test_every_drop_is_counted():
    records = [
        record("a", "질문", "답변"),
        record("b", "질문", "답변"),  # exact duplicate of a
        record("c", "   ", "답변", "둘째 질문", "둘째 답변"),  # empty question takes its answer
        record("d", "질문", "x" * 50),  # answer too long: the conversation has nothing left
        record("e", "질문", "다른 답변"),
    ]
    kept, stats, _ = clean_dataset(records, CleanConfig(max_chars=40), NO_PII)
    assert [r["id"] for r in kept] == ["a", "c", "e"]
    assert kept[1]["messages"] == [
        {"role": "user", "content": "둘째 질문"},
        {"role": "assistant", "content": "둘째 답변"},
    ]
    assert stats["dropped_turns_empty"] == 1
    assert stats["dropped_turns_too_long"] == 1
    assert stats["dropped_turns_unpaired"] == 2
    assert stats["dropped_conversations_no_answer"] == 1
    assert stats["dropped_conversations_duplicate"] == 1
    assert stats["conversations_in"] == 5 and stats["conversations_out"] == 3
    assert stats["turns_in"] == 12 and stats["turns_out"] == 6


def test_dedupe_can_be_turned_off():
    _, stats, _ = clean_dataset(
        [record("a", "q", "a"), record("b", "q", "a")], CleanConfig(dedupe=False), NO_PII
    )
    assert stats["conversations_out"] == 2 and stats["dropped_conversations_duplicate"] == 0


def test_an_output_left_empty_is_an_error_that_says_why():
    huge = record("a", "질문", "긴 답 " * 100_000)  # one line of 400 k characters
    with pytest.raises(DataError) as error:
        clean_dataset([huge], CleanConfig(), NO_PII)
    assert str(error.value) == (
        "clean: every one of the 1 conversations was dropped (dropped 1 turns longer than "
        "clean.max_chars (2000), 1 turns whose question or answer was dropped, 1 conversations "
        "left without an answer); nothing written"
    )


def test_masking_runs_on_normalised_text_with_normalised_names():
    nfd = unicodedata.normalize("NFD", "민지")
    rec = record("a", f"{nfd}야  번호는  010-1234-5678", "응", meta={"speakers": [nfd, "회원님"]})
    kept, stats, audit = clean_dataset([rec], CleanConfig(), PiiConfig())
    assert kept[0]["messages"][0]["content"] == "<PERSON1>야 번호는 <PHONE>"
    assert kept[0]["meta"]["speakers"] == ["<PERSON1>", "<PERSON2>"]
    assert stats["masked_phone"] == 1 and stats["masked_person"] == 1
    assert audit[0] == {"id": "a", "message": 0, "kind": "PERSON", "start": 0, "end": 2}


def test_full_width_personal_data_is_masked_under_nfc():
    """NFC keeps full-width forms in the text: the clean stage still masks them whole (and its
    leak scan, which reads them the same way, finds nothing left)."""
    rec = record(
        "a",
        "번호 ０１０－２３４５－６７８９ 이고 여권 Ｍ７８９Ｃ１２３４",
        "응",
        meta={"speakers": ["민지"]},
    )
    kept, stats, audit = clean_dataset([rec], CleanConfig(), PiiConfig())
    assert kept[0]["messages"][0]["content"] == "번호 <PHONE> 이고 여권 <PASSPORT>"
    assert stats["masked_phone"] == 1 and stats["masked_passport"] == 1
    assert [(a["start"], a["end"]) for a in audit] == [(3, 16), (23, 32)]


def test_the_same_person_is_the_same_pseudonym_across_the_dataset():
    records = [
        record("c1", "준호야 내일 민지랑 보자", "민지한테 전화해볼게 010-1234-5678 맞지?"),
        record("c2", "김민지 왔어?", "@준호 아직", meta={"speakers": ["민지", "회원님"]}),
    ]
    kept, stats, audit = clean_dataset(
        records, CleanConfig(), PiiConfig(), ["민지", "김민지", "준호"]
    )
    assert [m["content"] for r in kept for m in r["messages"]] == [
        "<PERSON1>야 내일 <PERSON2>랑 보자",
        "<PERSON2>한테 전화해볼게 <PHONE> 맞지?",
        "<PERSON2> 왔어?",
        "<PERSON1> 아직",
    ]
    assert kept[1]["meta"]["speakers"] == ["<PERSON2>", "<PERSON3>"]
    assert set(audit[0]) == {"id", "message", "kind", "start", "end"}  # never the value


def test_masked_kinds_follow_the_persona_param():
    rec = record("a", "민지 010-1234-5678", "응", meta={"speakers": ["민지"]})
    kept, stats, _ = clean_dataset([rec], CleanConfig(), PiiConfig(kinds=["PHONE"]))
    assert kept[0]["messages"][0]["content"] == "민지 <PHONE>"
    assert "masked_person" not in stats


def big_export(path, n):
    """Conversations with people, numbers and addresses in them, some duplicated."""
    people = ["민지", "서연", "지훈", "준호", "김하늘", "박서준"]
    lines = []
    for i in range(n):
        a, b = people[i % 6], people[(i * 5 + 1) % 6]
        turns = [
            f"{a}야 {i % 7}시에 {b}랑 봐",
            f"@{b} 번호 010-{1000 + i % 9000}-{2000 + i % 7000} 맞아?",
            f"서울 마포구 성미산로 {i % 90 + 1}길 {i % 50 + 2}, 10{i % 9}동 {i % 30 + 101}호",
            "응" if i % 11 else "",
        ]
        rec = record(f"r{i % (n - 7)}-{i}", *turns, meta={"speakers": [a, "회원님"]})
        lines.append(json.dumps(rec, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_output_is_byte_identical_on_one_core_or_many(tmp_path):
    source = tmp_path / "conv.jsonl"
    big_export(source, 600)
    runs = {}
    for workers in (1, 3):
        out, audit = tmp_path / f"out{workers}.jsonl", tmp_path / f"audit{workers}.jsonl"
        cleaned = clean_file(source, out, audit, CleanConfig(), PiiConfig(), ["박준호"], workers)
        runs[workers] = (out.read_bytes(), audit.read_bytes(), cleaned.stats, cleaned.offsets)
    assert runs[1] == runs[3]
    assert runs[1][2]["masked_person"] > 600 and "<PERSON6>" in runs[1][0].decode()


def test_a_bad_line_in_a_later_shard_is_named_with_its_line_number(tmp_path):
    source = tmp_path / "conv.jsonl"
    big_export(source, 300)
    lines = source.read_text(encoding="utf-8").splitlines()
    lines[250] = '{"id": "x", "messages": []}'
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for workers in (1, 3):
        with pytest.raises(DataError, match=f"{source}:251: missing field 'conversation_id'"):
            clean_file(
                source, tmp_path / "o", tmp_path / "a", CleanConfig(), PiiConfig(), (), workers
            )
        assert not (tmp_path / "o").exists()
