"""Ctrl-C during `dvc exp run`, then the same `dvc exp run` again: training continues from the
stopped run's last checkpoint, in a temporary git + DVC copy of the project on the tiny model.

Before the run, DVC's experiment executor checks out every output as dvc.lock recorded it
(`dvc_checkout(force=True)`, persisted outputs included), which puts the last finished run's
checkpoints in place of the stopped run's; the train stage links each checkpoint into
models/unfinished as it is saved and takes them back from there. The Ctrl-C is a real SIGINT to
the whole process group, as a terminal sends it, while training is held after checkpoint-2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from test_pipeline_e2e import ROOT, copy_project, env, sh

pytestmark = pytest.mark.slow

# a quick finished run first (its checkpoints go to DVC's cache and dvc.lock)
FIRST = [
    "base.steps=5",
    "tokenize.max_seq_len=256",
    "train.max_steps=4",
    "train.eval_steps=2",
    "train.logging_steps=1",
    "train.warmup_ratio=0.0",
    "evaluate.max_examples=1",
    "persona.generation.max_new_tokens=8",
]
# then another learning rate: 6 steps, a checkpoint every 2, stopped after checkpoint-2
SECOND = [*FIRST, "train.lr=0.005", "train.max_steps=6"]
# only in the stage (DVC's own python imports this too): SIGINT as a terminal leaves it, and the
# run held once checkpoint-2 is saved so that the signal lands mid-run however loaded the machine
HOLD = """
import os, sys
if os.environ.get("KOTUNE_TEST_HOLD") and sys.argv[0].endswith("stages/train.py"):
    import importlib.abc, importlib.machinery, signal, time
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def hold(module):
        step = module.Trainer.training_step
        def held(self, *args, **kwargs):
            if self.state.global_step >= 2:
                time.sleep(300)
            return step(self, *args, **kwargs)
        module.Trainer.training_step = held

    class AfterImport(importlib.abc.MetaPathFinder):
        # the Trainer is patched when the stage imports it: torch must load after the stage
        # pins the CPU math, so nothing here imports it
        def find_spec(self, name, path, target=None):
            if name != "transformers.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module
            def exec_module(module):
                run(module)
                hold(module)
            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterImport())
"""
STOPPED = (
    "train: stopped at step 2; run the same dvc exp run (same -S options) again to continue "
    "from checkpoint-2"
)


def set_params(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("-S", o)]


def test_ctrl_c_in_dvc_exp_run_and_the_same_command_again_resumes(tmp_path):
    repo = copy_project(tmp_path / "kotune")
    sh("dvc", "exp", "run", *set_params(FIRST), cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "a finished run", cwd=repo)
    first = json.loads((repo / "metrics/train.json").read_text())
    assert first["global_step"] == 4

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD)
    held_env = {**env(), "KOTUNE_TEST_HOLD": "1", "PYTHONPATH": str(hook)}
    args = " ".join(set_params(SECOND))
    venv = ROOT / ".venv"  # the project's, set up (make would not set up again)
    process = subprocess.Popen(
        ["make", f"VENV={venv}", "-o", f"{venv}/.installed", "exp", f"ARGS={args}"],
        cwd=repo,
        env=held_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # with SIGINT handled, also where the test runner was started with it ignored (make
        # keeps an ignored SIGINT ignored and would end with its child's error instead)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    kept = repo / "models" / "unfinished" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 900
    while not kept.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kept.is_file(), process.communicate(timeout=60)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: make, dvc and the stage all get it
    stdout, stderr = process.communicate(timeout=300)
    # make waits for dvc, then ends by the signal itself: a shell reports 130
    assert process.returncode == -signal.SIGINT, (process.returncode, stderr[-3000:])
    said = [line.strip() for line in stderr.splitlines() if "train:" in line]
    assert said == [STOPPED], stderr[-3000:]
    assert "exited with 130" in stderr and "Traceback" not in stderr

    result = sh("dvc", "exp", "run", *set_params(SECOND), cwd=repo)
    metrics = json.loads((repo / "metrics/train.json").read_text())
    assert metrics["resumed_from_step"] == 2, result.stderr[-3000:]
    assert metrics["global_step"] == 6 and metrics["session_steps"] == 4
    checkpoints = sorted(p.name for p in (repo / "models/checkpoints").iterdir())
    assert checkpoints == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
        "fingerprint.json",
        "run_metrics.json",
    ]
    assert not (repo / "models/unfinished").exists()
    state = json.loads((repo / "models/checkpoints/checkpoint-2/trainer_state.json").read_text())
    assert state["log_history"][0]["learning_rate"] == pytest.approx(0.005)
