"""The generate stage in a temporary git + DVC copy of the project: by default no teacher and the
shipped data; `dvc exp run -S persona.generate.enabled=true …` generates from a live teacher,
ingest reads the records, and a forced rerun with the teacher gone replays the persisted cache.
The whole chain to the adapter runs from generated data, alone or added to the shipped data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted_teacher import ScriptedTeacher
from test_pipeline_e2e import copy_project, sh

pytestmark = pytest.mark.slow


def metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text(encoding="utf-8"))


def test_dvc_runs_generate_only_when_enabled(tmp_path):
    repo = copy_project(tmp_path / "kotune")
    sh("dvc", "exp", "run", "ingest", "-S", "persona=menu", cwd=repo)
    assert (repo / "data/generated/selfinstruct.jsonl").read_bytes() == b""
    assert metrics(repo, "generate")["requests"] == 0
    shipped = metrics(repo, "ingest")["conversations"]
    assert shipped == len(json.loads((repo / "data/raw/menu/menu_alpaca.json").read_text()))

    with ScriptedTeacher() as teacher:
        overrides = [
            "persona=menu",
            "persona.generate.enabled=true",
            f"persona.generate.teacher.base_url={teacher.base_url}",
            f"persona.generate.teacher.model={teacher.model}",
            "persona.generate.n=8",
            "persona.generate.round_size=2",
        ]
        sh("dvc", "exp", "run", "ingest", *[a for o in overrides for a in ("-S", o)], cwd=repo)
        asked = len(teacher.requests)
    records = (repo / "data/generated/selfinstruct.jsonl").read_bytes()
    assert len(records.splitlines()) == 8 == metrics(repo, "generate")["kept"]
    assert metrics(repo, "ingest")["conversations"] == 8 == metrics(repo, "ingest")["generated"]
    assert asked >= metrics(repo, "generate")["requests"] > 0
    lock = (repo / "dvc.lock").read_text(encoding="utf-8")
    assert "path: data/generated/cache" in lock and "\n  generate:\n" in lock

    # the teacher is gone: forced, the stage replays the persisted cache into the same file
    sh("dvc", "repro", "--force", "generate", cwd=repo)
    assert (repo / "data/generated/selfinstruct.jsonl").read_bytes() == records


# the smallest run of every stage after generate (the plumbing and the counts, not the quality)
BUDGET = [
    "base.steps=5",
    "tokenize.max_seq_len=256",
    "train.max_steps=2",
    "train.eval_steps=2",
    "evaluate.max_examples=1",
    "persona.generation.max_new_tokens=8",
]
GENERATED = 24


def test_the_menu_persona_runs_to_the_adapter_from_generated_data(tmp_path):
    """generate → ingest → … → export from one `dvc exp run`, the records replacing the shipped
    data, then added to it; the second run's teacher is on another port (so generate runs
    again) and the persisted cache answers every request; `dvc metrics show` lists generate's."""
    repo = copy_project(tmp_path / "kotune")
    shipped = len(json.loads((repo / "data/raw/menu/menu_alpaca.json").read_text()))
    records = None
    for add_to_data in (False, True):
        with ScriptedTeacher() as teacher:
            overrides = [
                "persona=menu",
                "persona.generate.enabled=true",
                f"persona.generate.add_to_data={str(add_to_data).lower()}",
                f"persona.generate.teacher.base_url={teacher.base_url}",
                f"persona.generate.teacher.model={teacher.model}",
                f"persona.generate.n={GENERATED}",
                "persona.generate.round_size=2",
                *BUDGET,
            ]
            run = sh("dvc", "exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo)
            asked = len(teacher.requests)
        lock = (repo / "dvc.lock").read_text(encoding="utf-8")
        for stage in ["generate", "ingest", "clean", "split", "base", "train", "evaluate"]:
            assert f"\n  {stage}:\n" in lock
        generated = metrics(repo, "generate")
        requests = generated["requests"]
        assert generated["kept"] == GENERATED and requests > 0
        if add_to_data:  # the same requests: every answer from the cache, the same records
            assert asked == 0
            assert f"({requests} answers from data/generated/cache, no server)" in run.stdout
            assert (repo / "data/generated/selfinstruct.jsonl").read_bytes() == records
        else:
            assert asked >= requests
            records = (repo / "data/generated/selfinstruct.jsonl").read_bytes()
        ingest = metrics(repo, "ingest")
        assert ingest["generated"] == GENERATED
        assert ingest["conversations"] == GENERATED + (shipped if add_to_data else 0)
        split = metrics(repo, "split")
        assert (
            split["train_conversations"] + split["test_conversations"]
            == (metrics(repo, "clean")["conversations_out"])
        )
        assert metrics(repo, "train")["global_step"] == 2
        settings = json.loads((repo / "models/adapter/kotune.json").read_text(encoding="utf-8"))
        assert settings["persona"] == "menu"
        card = (repo / "models/adapter/README.md").read_text(encoding="utf-8")
        trained = split["train_conversations"], split["test_conversations"]
        assert "- {} training and {} test conversations".format(*trained) in card

        shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
        workspace = next(iter(shown.values()))["data"]
        assert workspace["metrics/generate.json"]["data"]["kept"] == GENERATED
