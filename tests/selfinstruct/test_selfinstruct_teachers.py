"""The same checks against every kind of teacher process: records valid, metrics that add up,
a byte-identical replay with the server stopped. Phase 2 adds `kotune serve` on a tiny adapter
to TEACHERS (its tasks are poor, so the filters get work and few or none may be kept)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scripted_teacher import ProcessTeacher, free_port

from kotune.config import GenerateConfig, TeacherConfig
from kotune.selfinstruct.run import generate_files
from kotune.selfinstruct.seeds import Task

SEEDS = Path(__file__).resolve().parents[2] / "data" / "raw" / "menu" / "seed_tasks.json"
HERE = Path(__file__).resolve().parent


def scripted_process(tmp_path: Path) -> ProcessTeacher:
    port = free_port()
    return ProcessTeacher(
        [sys.executable, str(HERE / "scripted_teacher.py"), "--port", str(port)], port
    )


# phase 2: "kotune-serve": lambda tmp_path: ProcessTeacher(["kotune", "serve", "--adapter", …,
# "--port", str(port)], port), with the adapter from a tiny pipeline run
TEACHERS = {"scripted-process": scripted_process}


@pytest.mark.parametrize("make_teacher", TEACHERS.values(), ids=TEACHERS.keys())
def test_a_teacher_process_gives_valid_records_and_a_replay_without_it(
    tmp_path, kiwi, make_teacher
):
    teacher = make_teacher(tmp_path)
    try:
        cfg = GenerateConfig(
            enabled=True, seeds=str(SEEDS), n=6, max_requests=4, round_size=2,
            teacher=TeacherConfig(base_url=teacher.base_url, model=teacher.model, backoff_s=0.05),
        )  # fmt: skip
        first = generate_files(
            cfg,
            tmp_path / "a.jsonl",
            tmp_path / "cache",
            tmp_path / "a.json",
            teacher.api_key or "EMPTY",
            False,
            kiwi,
        )
    finally:
        teacher.stop()
    metrics = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    records = [
        json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == metrics["kept"] == len(first.kept) <= 6
    for record in records:
        assert list(record) == ["instruction", "input", "output"]
        assert first.filter.reason(Task(**record)) == "similar"  # kept: now in the pool
    dropped = sum(v for k, v in metrics.items() if k.startswith("dropped_"))
    assert metrics["candidates"] == metrics["kept"] + metrics["surplus"] + dropped
    assert 0 < metrics["requests"] <= 4
    replay = generate_files(
        cfg, tmp_path / "b.jsonl", tmp_path / "cache", tmp_path / "b.json", "EMPTY", False, kiwi
    )
    assert replay.teacher is None
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()
