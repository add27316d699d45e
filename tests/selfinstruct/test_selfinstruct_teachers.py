"""The same checks against every kind of teacher process: records valid, metrics that add up,
the cache written, a byte-identical replay with the server stopped (no HTTP call). The teachers:
the scripted server as a process, and a live `kotune serve` on a tiny exported adapter (its
answers are poor, so few or no tasks are kept: the pipeline's behaviour is what is checked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from scripted_teacher import ProcessTeacher, free_port

from kotune.config import GenerateConfig, SamplingConfig, TeacherConfig
from kotune.selfinstruct.run import generate_files
from kotune.selfinstruct.seeds import Task

SEEDS = Path(__file__).resolve().parents[2] / "data" / "raw" / "menu" / "seed_tasks.json"
HERE = Path(__file__).resolve().parent
KOTUNE = str(Path(sys.executable).with_name("kotune"))
SERVE_KEY = "teacher-key-15"
SERVE_CONTEXT = 1536  # < a prompt with 8 menu examples (~2,600 tokens): the teacher says so


def scripted_process(request, tmp_path: Path) -> ProcessTeacher:
    port = free_port()
    return ProcessTeacher(
        [sys.executable, str(HERE / "scripted_teacher.py"), "--port", str(port)], port
    )


def kotune_serve(request, tmp_path: Path) -> ProcessTeacher:
    """`kotune serve` on the tiny adapter, an API key required, its log in tmp_path/serve.log."""
    adapter = request.getfixturevalue("long_context_adapter")
    port = free_port()
    argv = [KOTUNE, "serve", "--adapter", str(adapter), "--port", str(port)]
    argv += ["--context", str(SERVE_CONTEXT), "--slots", "2"]
    env = {**os.environ, "KOTUNE_API_KEY": SERVE_KEY}
    with (tmp_path / "serve.log").open("w", encoding="utf-8") as log:
        return ProcessTeacher(argv, port, api_key=SERVE_KEY, log=log, env=env)


# name → (start the teacher, sampling for it): a tiny CPU model writes 128 tokens, not 3,072
TEACHERS = {
    "scripted-process": (scripted_process, {}),
    "kotune-serve": (kotune_serve, {"max_tokens": 128}),
}


def generate(teacher, sampling: dict, tmp_path: Path, name: str, kiwi, key: str):
    cfg = GenerateConfig(
        enabled=True, seeds=str(SEEDS), n=6, max_requests=4, round_size=2,
        teacher=TeacherConfig(base_url=teacher.base_url, model=teacher.model, backoff_s=0.05),
        sampling=replace(SamplingConfig(), **sampling),
    )  # fmt: skip
    run = generate_files(
        cfg, tmp_path / f"{name}.jsonl", tmp_path / "cache", tmp_path / f"{name}.json", key, False,
        kiwi,
    )  # fmt: skip
    return run, json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("teacher_kind", TEACHERS)
def test_a_teacher_process_gives_valid_records_and_a_replay_without_it(
    request, tmp_path, kiwi, teacher_kind
):
    start, sampling = TEACHERS[teacher_kind]
    teacher = start(request, tmp_path)
    try:
        first, metrics = generate(
            teacher, sampling, tmp_path, "a", kiwi, teacher.api_key or "EMPTY"
        )
    finally:
        teacher.stop()
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
    assert first.teacher is not None and first.teacher.calls >= metrics["requests"]
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(cached) >= metrics["requests"] + metrics["prompt_shrinks"]  # every answer kept

    # the server is gone: the cache answers everything, with the wrong key even
    replay, again = generate(teacher, sampling, tmp_path, "b", kiwi, "EMPTY")
    assert replay.teacher is None and replay.replayed == metrics["requests"]  # no HTTP call
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()
    assert again == metrics


SERVED = re.compile(r"POST /v1/chat/completions (\d{3}) (.*)$", re.MULTILINE)


def selfinstruct(tmp_path: Path, base_url: str, key: str) -> subprocess.CompletedProcess:
    """`kotune selfinstruct` as a user runs it, the key in $TEACHER_KEY."""
    argv = [KOTUNE, "selfinstruct", "--seeds", str(SEEDS), "--n", "6", "--max-requests", "4"]
    argv += ["--round-size", "2", "--base-url", base_url, "--model", "mencius"]
    argv += ["--api-key-env", "TEACHER_KEY", "--max-tokens", "128", "--backoff", "0.05"]
    argv += ["--metrics", str(tmp_path / "gen.json"), "-o", str(tmp_path / "gen.jsonl")]
    env = {**os.environ, "TEACHER_KEY": key}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_kotune_selfinstruct_against_kotune_serve_agrees_with_its_log(request, tmp_path):
    """`kotune selfinstruct` against `kotune serve`: what the server logged is what the metrics
    count (an answer per request, a context_length_exceeded per shrink: its context holds no
    8-example prompt, and its tokens); with the server stopped the same command replays the
    same file from the cache."""
    teacher = kotune_serve(request, tmp_path)
    try:
        assert teacher.model == "mencius"  # the adapter's persona, from GET /v1/models
        wrong = selfinstruct(tmp_path, teacher.base_url, "not-the-key")
        first = selfinstruct(tmp_path, teacher.base_url, SERVE_KEY)
    finally:
        teacher.stop()
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert (
        wrong.stderr.startswith("kotune: error: the teacher at ") and "$TEACHER_KEY" in wrong.stderr
    )
    assert first.returncode == 0, first.stderr
    metrics = json.loads((tmp_path / "gen.json").read_text(encoding="utf-8"))
    served = SERVED.findall((tmp_path / "serve.log").read_text(encoding="utf-8"))
    answered = [rest for status, rest in served if status == "200"]
    too_long = [rest for status, rest in served if status == "400"]
    calls = len(answered) + len(too_long)
    assert (
        f"(0 answers from {tmp_path / 'gen.cache'}, {calls} HTTP calls, 0 retries)" in first.stderr
    )
    assert len(served) == calls and len(answered) == metrics["requests"] == 4
    assert len(too_long) == metrics["prompt_shrinks"] > 0
    assert all("error=context_length_exceeded" in rest for rest in too_long)
    assert metrics["examples_per_prompt"] < 8 and metrics["max_tokens"] == 128
    for key in ("prompt_tokens", "completion_tokens"):
        logged = sum(int(re.search(rf"{key}=(\d+)", rest)[1]) for rest in answered)
        assert logged == metrics[key] > 0
    assert metrics["total_tokens"] == metrics["prompt_tokens"] + metrics["completion_tokens"]
    assert SERVE_KEY not in (tmp_path / "gen.json").read_text() + first.stderr

    records = (tmp_path / "gen.jsonl").read_bytes()
    replay = selfinstruct(tmp_path, teacher.base_url, SERVE_KEY)
    assert replay.returncode == 0, replay.stderr
    assert "(4 answers from" in replay.stderr and "no server)" in replay.stderr
    assert (tmp_path / "gen.jsonl").read_bytes() == records
    assert json.loads((tmp_path / "gen.json").read_text(encoding="utf-8")) == metrics
