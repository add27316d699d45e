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
PERSONAS = {
    "parentcare": (80, "유아"),
    "kakaotalk": (50, None),
    "menu": (200, "칼로리"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("personas") / "kotune")


@pytest.mark.parametrize("persona", list(PERSONAS))
def test_persona_runs_end_to_end(project, persona):
    least, noun = PERSONAS[persona]
    sh(
        "dvc",
        "exp",
        "run",
        "-S",
        f"persona={persona}",
        *[a for o in BUDGET for a in ("-S", o)],
        cwd=project,
    )

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
