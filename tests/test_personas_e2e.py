"""Every persona runs the whole pipeline from `dvc exp run -S persona=X` on the tiny model (a
reduced budget: this checks the plumbing and the counts, not the quality)."""

from __future__ import annotations

import json

import pytest
from test_pipeline_e2e import copy_project, sh

pytestmark = pytest.mark.slow

BUDGET = [
    "base.steps=20",
    "train.max_steps=4",
    "train.eval_steps=2",
    "evaluate.max_examples=2",
    "clean.top_nouns=10",
]
# persona → (least conversations after clean, a noun expected in its top nouns)
# kakaotalk runs last: the leak scan below reads what its run left in the workspace
PERSONAS = {
    "parentcare": (80, "유아"),
    "menu": (200, "메뉴"),
    "kakaotalk": (50, None),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("personas") / "kotune")


RUN_LOGS: dict[str, str] = {}  # persona → what its `dvc exp run` printed


@pytest.mark.parametrize("persona", list(PERSONAS))
def test_persona_runs_end_to_end(project, persona):
    least, noun = PERSONAS[persona]
    overrides = [a for o in [f"persona={persona}", *BUDGET] for a in ("-S", o)]
    run = sh("dvc", "exp", "run", *overrides, cwd=project)
    RUN_LOGS[persona] = run.stdout + run.stderr

    def metrics(name):
        return json.loads((project / "metrics" / f"{name}.json").read_text(encoding="utf-8"))

    assert metrics("clean")["conversations_out"] >= least
    split = metrics("split")
    assert split["test_examples"] > 0 and split["conversations_on_both_sides"] == 0
    assert metrics("train")["global_step"] == 4
    assert metrics("eval")["scored"] == 2
    settings = json.loads((project / "models/adapter/kotune.json").read_text(encoding="utf-8"))
    assert settings["persona"] == persona
    nouns = (project / "metrics/plots/top_nouns.csv").read_text(encoding="utf-8").splitlines()
    assert nouns[0] == "noun,count" and len(nouns) == 11
    if noun:
        assert any(line.startswith(f"{noun},") for line in nouns), nouns


def artifact_texts(project) -> dict[str, str]:
    """Every artifact the pipeline writes after the clean stage, as text (tokenized data decoded)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    texts = {}
    patterns = [
        "data/interim/clean.jsonl",
        "data/interim/pii_audit.jsonl",
        "data/processed/*.jsonl",
        "metrics/**/*.json",
        "metrics/**/*.jsonl",
        "metrics/**/*.csv",
        "metrics/**/*.tsv",
        "models/adapter/**/*.json",
        "models/adapter/README.md",
        "models/base/*.json",
        "models/checkpoints/*/*.json",
        "dvc.lock",
    ]
    for pattern in patterns:
        for path in project.glob(pattern):
            if path.is_file():
                texts[str(path.relative_to(project))] = path.read_text(encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(project / "models/base")
    data = load_from_disk(str(project / "data/tokenized"))
    for split in data:
        texts[f"data/tokenized/{split} (decoded)"] = "\n".join(
            tokenizer.decode(row) for row in data[split]["input_ids"]
        )
    return texts


def test_no_planted_pii_reaches_any_artifact_or_log_of_the_kakaotalk_run(project, root):
    if "kakaotalk" not in RUN_LOGS:
        pytest.skip("the kakaotalk run failed")
    planted = json.loads((root / "data/raw/kakaotalk/planted_pii.json").read_text(encoding="utf-8"))
    needles = {piece.strip() for value in planted for piece in value.split("\n") if piece.strip()}
    needles |= {"민지", "준호", "서연"}  # the people, in any form
    assert (project / "metrics/clean.json").is_file()
    raw = (root / "data/raw/kakaotalk").glob("*.txt")
    assert all(any(n in p.read_text(encoding="utf-8-sig") for p in raw) for n in ["민지"])
    found = {
        (name, needle)
        for name, text in {
            **artifact_texts(project),
            "dvc exp run output": RUN_LOGS["kakaotalk"],
        }.items()
        for needle in needles
        if needle in text
    }
    assert not found, sorted(found)[:20]
    clean = json.loads((project / "metrics/clean.json").read_text(encoding="utf-8"))
    for kind in ("phone", "email", "account", "address", "person", "plate", "birthdate", "zipcode"):
        assert clean[f"masked_{kind}"] > 0, kind
    assert clean["pii_leaks_after_masking"] == 0
