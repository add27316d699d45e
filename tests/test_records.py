import pytest

from kotune.errors import DataError
from kotune.records import check_record, training_examples


def conversation(*contents):
    roles = ["user", "assistant"] * len(contents)
    return {
        "id": "c",
        "conversation_id": "c",
        "messages": [{"role": r, "content": c} for r, c in zip(roles, contents)],
    }


def test_a_three_step_dialogue_gives_three_examples_with_growing_context():
    examples = training_examples(conversation("q1", "a1", "q2", "a2", "q3", "a3"))
    assert [e["answer"] for e in examples] == ["a1", "a2", "a3"]
    assert [len(e["context"]) for e in examples] == [1, 3, 5]
    assert examples[2]["context"][-1] == {"role": "user", "content": "q3"}
    assert [e["id"] for e in examples] == ["c#1", "c#3", "c#5"]


def test_an_answer_without_a_question_is_no_example():
    record = {
        "id": "c",
        "conversation_id": "c",
        "messages": [{"role": "assistant", "content": "a"}],
    }
    assert training_examples(record) == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"conversation_id": "c", "messages": []}, "missing field 'id'"),
        (
            {"id": "c", "conversation_id": "", "messages": []},
            "'conversation_id' must be a non-empty string",
        ),
        ({"id": "c", "conversation_id": "c", "messages": {}}, "'messages' must be a list"),
        (
            {"id": "c", "conversation_id": "c", "messages": [{"role": "bot", "content": "x"}]},
            "messages[0].role must be one of",
        ),
        (
            {"id": "c", "conversation_id": "c", "messages": [{"role": "user"}]},
            "messages[0].content must be a string",
        ),
    ],
)
def test_check_record(record, message):
    with pytest.raises(DataError) as error:
        check_record(record, "f.jsonl:3")
    assert str(error.value).startswith("f.jsonl:3: ")
    assert message in str(error.value)
