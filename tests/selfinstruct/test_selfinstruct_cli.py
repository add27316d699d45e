"""`kotune selfinstruct` as a user runs it, against a live scripted teacher: Ctrl-C or a kill in
the middle and the same command again end with the file an uninterrupted run writes; set-up
errors are one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_teacher import ScriptedTeacher

from kotune.config import GenerateConfig, TeacherConfig
from kotune.selfinstruct.run import generate_files

SEEDS = Path(__file__).resolve().parents[2] / "data" / "raw" / "menu" / "seed_tasks.json"

KOTUNE = str(Path(sys.executable).with_name("kotune"))
# the child handles SIGINT as a terminal's foreground job does, even where the test runner was
# started with SIGINT ignored (a shell's background job)
AS_IN_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from kotune.cli import main; sys.argv[0] = 'kotune'; main()"
)
N, ROUND, CONCURRENCY = 20, 2, 2


def command(teacher, folder: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", AS_IN_A_TERMINAL, "selfinstruct", "--seeds", str(SEEDS),
        "--n", str(N), "--round-size", str(ROUND), "--concurrency", str(CONCURRENCY),
        "--base-url", teacher.base_url, "--model", teacher.model, "--backoff", "0.01",
        "--cache", str(folder / "cache"), "--metrics", str(folder / "metrics.json"),
        "-o", str(folder / "gen.jsonl"), *extra,
    ]  # fmt: skip


def uninterrupted(teacher, folder: Path, kiwi) -> bytes:
    teacher_cfg = TeacherConfig(base_url=teacher.base_url, model=teacher.model)
    cfg = GenerateConfig(
        enabled=True, seeds=str(SEEDS), n=N, round_size=ROUND, concurrency=CONCURRENCY,
        teacher=teacher_cfg,
    )  # fmt: skip
    out = folder / "reference.jsonl"
    generate_files(cfg, out, folder / "ref-cache", None, "EMPTY", False, kiwi)
    return out.read_bytes()


def wait_for_answers(cache: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*/*.json"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no answers cached in 2 minutes"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopped_mid_run_the_same_command_continues_to_the_same_file(tmp_path, kiwi, sig):
    with ScriptedTeacher(delay_s=0.3) as teacher:
        reference = uninterrupted(teacher, tmp_path, kiwi)
        asked_for_reference = len(teacher.requests)
        process = subprocess.Popen(
            command(teacher, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        # 3 answers: the first round (2) applied, the second under way
        wait_for_answers(tmp_path / "cache", 3, process)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
        cached = len(list((tmp_path / "cache").glob("*/*.json")))
        if sig == signal.SIGINT:
            assert process.returncode == 130, stderr
            assert "run the same command again to continue" in stderr
            assert "Traceback" not in stderr
            kept = (tmp_path / "gen.jsonl").read_bytes()  # the records so far, in order
            assert kept and reference.startswith(kept)
        else:
            assert process.returncode == -signal.SIGKILL
        asked_before = len(teacher.requests)
        again = subprocess.run(command(teacher, tmp_path), capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "gen.jsonl").read_bytes() == reference
        # the rerun asked only for what was not cached
        assert len(teacher.requests) - asked_before <= asked_for_reference - cached + ROUND
        metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["kept"] == N


def test_the_output_goes_through_kotune_ingest_unchanged(tmp_path, teacher):
    result = subprocess.run(command(teacher, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert summary["kept"] == N
    ingested = subprocess.run(
        [KOTUNE, "ingest", "--format", "alpaca", str(tmp_path / "gen.jsonl"), "-o", str(tmp_path / "c.jsonl")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stderr.splitlines()[-1])["conversations"] == N


@pytest.mark.parametrize(
    ("server_key", "env", "flag", "expected"),
    [
        ("sk-right", {"OPENAI_API_KEY": "sk-wrong"}, [], "refused the API key from $OPENAI_API_KEY (401"),
        ("sk-right", {}, ["--api-key-env", "MY_KEY"], "--api-key-env: environment variable MY_KEY is not set"),
        (None, {}, ["--model", "nope"], "--model nope: not served by the teacher"),
    ],
    ids=["wrong-key", "unset-key-variable", "wrong-model"],
)  # fmt: skip
def test_a_wrong_key_or_model_is_one_line(tmp_path, server_key, env, flag, expected):
    with ScriptedTeacher(api_key=server_key) as teacher:
        environment = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "MY_KEY")}
        result = subprocess.run(
            [KOTUNE, *command(teacher, tmp_path)[3:], *flag],
            capture_output=True,
            text=True,
            env={**environment, **env},
        )
        assert teacher.requests == []  # no chat request went out
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kotune: error: ")
    assert expected in result.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no metrics, no cache
