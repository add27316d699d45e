"""The data pictures: turn lengths per bucket and role, and the noun sample."""

from collections import Counter

from kotune.profiling import length_bucket, sample_every, turn_code, turn_length_table


def test_turn_codes_count_every_turn_in_its_bucket_and_role():
    turns = [("user", n) for n in (0, 9, 10, 250, 4000)] + [("assistant", n) for n in (3, 49, 50)]
    table = turn_length_table(Counter(turn_code(role, size) for role, size in turns))
    assert table == [
        {"length": "0-9", "user": 2, "assistant": 1},
        {"length": "10-19", "user": 1, "assistant": 0},
        {"length": "20-49", "user": 0, "assistant": 1},
        {"length": "50-99", "user": 0, "assistant": 1},
        {"length": "200-499", "user": 1, "assistant": 0},
        {"length": "1000+", "user": 1, "assistant": 0},
    ]
    assert [length_bucket(n) for n in (9, 10, 250, 4000)] == [
        "0-9",
        "10-19",
        "200-499",
        "1000+",
    ]


def test_the_noun_sample_takes_every_kth_conversation():
    assert sample_every([10] * 10, 0) == list(range(10))
    assert sample_every([10] * 10, 100) == list(range(10))
    assert sample_every([10] * 10, 30) == [0, 4, 8]  # stride ⌈100 / 30⌉ = 4
