"""The generate stage in a temporary git + DVC copy of the project: by default no teacher and the
shipped data; `dvc exp run -S persona.generate.enabled=true …` generates from a live teacher,
ingest reads the records, and a forced rerun with the teacher gone replays the persisted cache.
The whole chain to the adapter runs from generated data, alone or added to the shipped data."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from scripted_teacher import ScriptedTeacher
from test_pipeline_e2e import copy_project, env, sh

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
    data, then added to it (that run through split); the second run's teacher is on another port
    (so generate runs again) and the persisted cache answers every request; `dvc metrics show`
    lists generate's."""
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
            # the second run through split only: add_to_data changes what ingest reads, and the
            # stages after split were shown to run from generated data by the first
            target = ["split"] if add_to_data else []
            args = [a for o in overrides for a in ("-S", o)]
            run = sh("dvc", "exp", "run", *target, *args, cwd=repo)
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
        if add_to_data:
            continue
        assert metrics(repo, "train")["global_step"] == 2
        settings = json.loads((repo / "models/adapter/kotune.json").read_text(encoding="utf-8"))
        assert settings["persona"] == "menu"
        card = (repo / "models/adapter/README.md").read_text(encoding="utf-8")
        trained = split["train_conversations"], split["test_conversations"]
        assert "- {} training and {} test conversations".format(*trained) in card

        shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
        workspace = next(iter(shown.values()))["data"]
        assert workspace["metrics/generate.json"]["data"]["kept"] == GENERATED


@pytest.mark.parametrize("stop", ["kill-9", "ctrl-c"])
def test_a_killed_generate_stage_resumes_under_dvc_exp_run(tmp_path, stop):
    """`dvc exp run` resets the stage's outputs before it runs it again (the cache of a killed
    run would be lost): the answers kept in data/generated/unfinished come back from there.
    Stopped by kill -9 (no clean-up runs) or by Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it: the stage is DVC's own child, so it says where it stopped and exits 130)."""
    import os
    import signal

    import psutil

    repo = copy_project(tmp_path / "kotune")
    cache = repo / "data/generated/cache"
    with ScriptedTeacher(delay_s=0.5) as teacher:
        overrides = [
            "persona=menu",
            "persona.generate.enabled=true",
            f"persona.generate.teacher.base_url={teacher.base_url}",
            f"persona.generate.teacher.model={teacher.model}",
            "persona.generate.n=500",
            "persona.generate.round_size=2",
            "persona.generate.concurrency=1",
        ]
        args = ["dvc", "exp", "run", "generate", *[a for o in overrides for a in ("-S", o)]]
        dvc = subprocess.Popen(
            args,
            cwd=repo,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 300
            while len(list(cache.glob("*/*.json"))) < 3:
                assert dvc.poll() is None and time.monotonic() < deadline, "no answers cached"
                time.sleep(0.1)
            if stop == "kill-9":
                (stage,) = [
                    child
                    for child in psutil.Process(dvc.pid).children(recursive=True)
                    if "stages/generate.py" in " ".join(child.cmdline())
                ]
                stage.kill()  # as a crash or `kill -9` leaves it: no clean-up runs
            else:
                os.killpg(dvc.pid, signal.SIGINT)
            _, stderr = dvc.communicate(timeout=120)
            assert dvc.returncode != 0
            if stop == "ctrl-c":
                assert "exited with 130" in stderr and "Traceback" not in stderr, stderr[-3000:]
        finally:
            if dvc.poll() is None:
                dvc.kill()
        answered = len(teacher.requests)
    kept = len(list((repo / "data/generated/unfinished").glob("*/*.json")))
    assert kept >= 3

    with ScriptedTeacher() as teacher:  # the same model elsewhere: same requests, same answers
        overrides[2] = f"persona.generate.teacher.base_url={teacher.base_url}"
        overrides[4] = "persona.generate.n=12"
        run = sh("dvc", "exp", "run", "generate", *[a for o in overrides for a in ("-S", o)],
                 cwd=repo)  # fmt: skip
        asked = len(teacher.requests)
    replayed = int(re.search(r"\((\d+) answers from data/generated/cache", run.stdout)[1])
    assert replayed == min(kept, metrics(repo, "generate")["requests"]) > 0
    assert asked == metrics(repo, "generate")["requests"] - replayed
    assert answered >= kept and not (repo / "data/generated/unfinished").exists()
    assert len(list(cache.glob("*/*.json"))) >= kept  # those this run did not need as well
    assert metrics(repo, "generate")["kept"] == 12
