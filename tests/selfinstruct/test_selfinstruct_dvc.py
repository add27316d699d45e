"""The generate stage in a temporary git + DVC copy of the project: by default no teacher and the
shipped data; `dvc exp run -S persona.generate.enabled=true …` generates from a live teacher,
ingest reads the records, and a forced rerun with the teacher gone replays the persisted cache.
(Phase 2 runs the whole chain to the adapter with `kotune serve` as the teacher.)"""

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
