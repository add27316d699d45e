import random

import pytest

from kotune.errors import DataError
from kotune.splitting import split_by_conversation


def records(n, per_conversation=1):
    return [
        {
            "id": f"c{i}-{j}",
            "conversation_id": f"c{i}",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        }
        for i in range(n)
        for j in range(per_conversation)
    ]


def test_ninety_ten_by_conversation_with_no_overlap():
    train, test, stats = split_by_conversation(records(200, per_conversation=2), 0.1, seed=42)
    assert stats["test_conversations"] == 20 and stats["train_conversations"] == 180
    assert {r["conversation_id"] for r in train}.isdisjoint({r["conversation_id"] for r in test})
    assert len(train) + len(test) == 400
    assert stats["conversations_on_both_sides"] == 0


def test_split_ignores_input_order_and_keeps_it():
    data = records(50)
    shuffled = data[:]
    random.Random(0).shuffle(shuffled)
    _, test_a, _ = split_by_conversation(data, 0.1, seed=7)
    _, test_b, _ = split_by_conversation(shuffled, 0.1, seed=7)
    assert sorted(r["id"] for r in test_a) == sorted(r["id"] for r in test_b)
    assert [r["id"] for r in test_b] == [r["id"] for r in shuffled if r in test_b]


def test_the_seed_changes_the_split():
    _, test_a, _ = split_by_conversation(records(100), 0.1, seed=1)
    _, test_b, _ = split_by_conversation(records(100), 0.1, seed=2)
    assert {r["id"] for r in test_a} != {r["id"] for r in test_b}


@pytest.mark.parametrize(
    ("n", "fraction", "n_test"), [(2, 0.1, 1), (3, 0.9, 2), (15, 0.1, 2), (10, 0.5, 5)]
)
def test_both_sides_are_never_empty(n, fraction, n_test):
    _, _, stats = split_by_conversation(records(n), fraction, seed=0)
    assert stats["test_conversations"] == n_test


def test_one_conversation_cannot_be_split():
    with pytest.raises(DataError, match="at least 2 conversations"):
        split_by_conversation(records(1), 0.1, seed=0)
