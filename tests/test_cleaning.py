import unicodedata

import pytest

from kotune.cleaning import clean_conversations, normalize_text
from kotune.config import CleanConfig


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (unicodedata.normalize("NFD", "한글"), "한글"),  # decomposed jamo are joined
        ("  맹자  가라사대\t\t인의  ", "맹자 가라사대 인의"),
        ("첫 줄 \r\n 둘째 줄", "첫 줄\n둘째 줄"),
        ("가\n\n\n\n나", "가\n\n나"),
        ("\u3000전각\u00a0공백\u200b", "전각 공백"),
        ("", ""),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean


def record(cid, *turns):
    roles = ["user", "assistant"] * len(turns)
    return {
        "id": cid,
        "conversation_id": cid,
        "messages": [{"role": r, "content": t} for r, t in zip(roles, turns)],
        "meta": {},
    }


def test_every_drop_is_counted():
    records = [
        record("a", "질문", "답변"),
        record("b", "질문", "답변"),  # exact duplicate of a
        record("c", "   ", "답변", "둘째 질문", "둘째 답변"),  # empty question takes its answer
        record("d", "질문", "x" * 50),  # answer too long: the conversation has nothing left
        record("e", "질문", "다른 답변"),
    ]
    kept, stats = clean_conversations(records, CleanConfig(max_chars=40))
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
    kept, stats = clean_conversations(
        [record("a", "q", "a"), record("b", "q", "a")], CleanConfig(dedupe=False)
    )
    assert len(kept) == 2 and stats["dropped_conversations_duplicate"] == 0


def test_a_masker_runs_after_normalisation_and_is_counted():
    from collections import Counter

    def masker(rec):
        messages = [
            {**m, "content": m["content"].replace("010-1234-5678", "<PHONE>")}
            for m in rec["messages"]
        ]
        return {**rec, "messages": messages}, Counter(phone=1)

    kept, stats = clean_conversations(
        [record("a", "번호는  010-1234-5678", "네")], CleanConfig(), masker
    )
    assert kept[0]["messages"][0]["content"] == "번호는 <PHONE>"
    assert stats["masked_phone"] == 1
