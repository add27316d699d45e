"""The shipped seed tasks and the seed file reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kotune.config import SelfInstructFilterConfig
from kotune.errors import DataError
from kotune.selfinstruct.filters import ContentMorphemes, TaskFilter
from kotune.selfinstruct.seeds import read_seed_tasks

SEEDS = Path(__file__).resolve().parents[2] / "data" / "raw" / "menu" / "seed_tasks.json"


def test_the_shipped_menu_seeds_follow_the_seed_format():
    raw = json.loads(SEEDS.read_text(encoding="utf-8"))
    assert len(raw) >= 130
    for item in raw:
        assert set(item) == {"id", "name", "instruction", "instances", "is_classification"}
        assert isinstance(item["is_classification"], bool)
        assert item["instances"] and all(set(i) == {"input", "output"} for i in item["instances"])
    tasks = read_seed_tasks(SEEDS)
    assert len({t.id for t in tasks}) == len({t.name for t in tasks}) == len(tasks)
    assert any(t.is_classification for t in tasks) and any(t.example.input for t in tasks)


def test_every_shipped_seed_passes_the_filters_against_the_others(kiwi):
    """Distinct: the generation's own filter (ROUGE-L 0.7 on content morphemes and the rest)
    would keep every seed, taken one after another."""
    check = TaskFilter(SelfInstructFilterConfig(), ContentMorphemes(kiwi), [])
    for seed in read_seed_tasks(SEEDS):
        assert check.reason(seed.example) is None, (seed.id, check.most_similar(seed.instruction))
        check.keep(seed.example)


GOOD = {"id": "t1", "name": "n", "instruction": "간식 추천해 줘", "instances": [{"input": "", "output": "젤리요"}], "is_classification": False}  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[\n" + json.dumps(GOOD) + ",\n" + json.dumps({**GOOD, "id": "t2", "instances": []}) + "\n]",
         "seeds.json:3 (id t2): field 'instances' must be a non-empty list"),
        ("[\n" + json.dumps({**GOOD, "instruction": " "}) + "\n]", "seeds.json:2 (id t1): field 'instruction' is empty"),
        ("[\n" + json.dumps({**GOOD, "instances": [{"input": ""}]}) + "\n]",
         "seeds.json:2 (id t1): instances[0]: missing field 'output'"),
        ("[\n" + json.dumps({**GOOD, "is_classification": "no"}) + "\n]", "field 'is_classification' must be true or false"),
        ("[" + json.dumps(GOOD) + "," + json.dumps(GOOD) + "]", "duplicate id 't1'"),
        (json.dumps(GOOD) + "\n{broken\n", "seeds.json:2: invalid JSON"),
        ("[1, 2", "seeds.json:1: invalid JSON at column 6"),
        ("[]", "no seed tasks"),
        ("[\n" + json.dumps({**GOOD, "instruction": None}) + "\n]", "field 'instruction' must be a string, got null"),
        ("[\n" + json.dumps({**GOOD, "instances": [None]}) + "\n]", "instances[0] must be an object, got null"),
        ("[\n[1]\n]", "a seed task must be an object, got an array"),
    ],
)  # fmt: skip
def test_a_bad_seed_file_names_the_line_and_the_field(tmp_path, content, message):
    path = tmp_path / "seeds.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=None) as caught:
        read_seed_tasks(path)
    assert message in str(caught.value)


def test_seed_tasks_as_json_lines_like_the_reference(tmp_path):
    path = tmp_path / "seed_tasks.jsonl"
    other = {**GOOD, "id": "t2", "instruction": "라면 끓이는 법"}
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(other) + "\n", encoding="utf-8")
    assert [t.id for t in read_seed_tasks(path)] == ["t1", "t2"]
