import pytest

from kotune.errors import DataError
from kotune.formats import mencius


def test_qa_and_dialogue_become_conversations(mencius_small):
    records, skipped = mencius.parse(mencius_small, "m.json", None)
    assert skipped == {}
    assert len(records) == len(mencius_small["qa"]) + len(mencius_small["dialogues"])
    qa = records[0]
    assert qa["id"] == qa["conversation_id"] == "qa-t-001"
    assert [m["role"] for m in qa["messages"]] == ["user", "assistant"]
    assert qa["meta"] == {"kind": "qa", "passage": "「공손추 상」 6장", "file": "m.json"}
    dialogue = records[len(mencius_small["qa"])]
    assert [m["role"] for m in dialogue["messages"]] == ["user", "assistant"] * 3
    assert dialogue["messages"][2]["content"] == "그렇다면 왜 악한 사람이 있습니까?"


def test_a_plain_list_of_items_is_accepted():
    items = [
        {"id": "a", "question": "q", "answer": "a"},
        {
            "id": "b",
            "turns": [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}],
        },
    ]
    records, _ = mencius.parse(items, "m.json", None)
    assert [len(r["messages"]) for r in records] == [2, 4]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"qa": [{"id": "x", "question": "q"}]}, "m.json: qa[0] (id x): missing field 'answer'"),
        ({"qa": [{"question": "q", "answer": "a"}]}, "m.json: qa[0]: missing field 'id'"),
        ({"qa": [{"id": "x", "question": 3, "answer": "a"}]}, "field 'question' must be a string"),
        (
            {"dialogues": [{"id": "d", "turns": []}]},
            "dialogues[0] (id d): field 'turns' must be a non-empty list",
        ),
        (
            {"dialogues": [{"id": "d", "turns": [{"question": "q"}]}]},
            "(id d) turns[0]: missing field 'answer'",
        ),
        ({"qa": "nope"}, "'qa' must be a list"),
        ({"questions": []}, "unknown top-level key 'questions'"),
        ("text", "expected an object with qa/dialogues or a list"),
        ({"qa": [{"id": "x", "question": "q", "answer": "a"}] * 2}, "duplicate id 'x'"),
    ],
)
def test_bad_input_names_the_item_and_the_fault(document, message):
    with pytest.raises(DataError) as error:
        mencius.parse(document, "m.json", None)
    assert message in str(error.value)


def test_options_are_refused():
    from kotune.errors import ConfigError
    from kotune.ingest import ingest

    with pytest.raises(ConfigError, match="the mencius format takes none"):
        ingest("mencius", ["m.json"], {"me": "x"})
