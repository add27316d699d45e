"""Resume: training stopped by Ctrl-C or kill and started again ends exactly where an
uninterrupted run ends; changed params start over. Real QLoRA on a 2-layer model on the CPU."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_qlora import ROOT, STAGE, run_stage, tiny_project, train, train_timed

from kotune.training.qlora import TrainingStopped

# 40 examples / (micro 4 × accumulation 2) = 5 steps an epoch: 8 steps cross an epoch boundary;
# a checkpoint (and evaluation) every 2 steps; lr 0.01 so that the loss visibly moves
BUDGET = [
    "train.max_steps=8",
    "train.eval_steps=2",
    "train.logging_steps=1",
    "train.lr=0.01",
    "train.warmup_ratio=0.0",
]
# the stage held up once checkpoint-2 is saved, so that the signal lands in the middle of the
# run however loaded the machine is (unslowed, 8 steps take 0.3 s); the wait changes no number
# SIGINT handled as in a terminal: a shell's background job (nohup …  &) starts with it
# ignored, and so would this child.
SLOW_STAGE = (
    "from kotune.reproducible import pin_cpu_math\n"
    "pin_cpu_math()  # as the stage does, before transformers brings torch in\n"
    "import runpy, signal, sys, time, transformers\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "step = transformers.Trainer.training_step\n"
    "def slow(self, *args, **kwargs):\n"
    "    time.sleep(0.2 if self.state.global_step < 2 else 120)\n"
    "    return step(self, *args, **kwargs)\n"
    "transformers.Trainer.training_step = slow\n"
    f"sys.argv[0] = {str(ROOT / 'stages' / 'train.py')!r}\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
# the one line Ctrl-C leaves (the signal lands while step 3 waits: global_step is 2)
STOPPED = (
    r"train: stopped at step 2; run dvc repro \(or this command\) again to continue from "
    r"checkpoint-2"
)
# Same data order (seeded sampler, skipped batches), RNG (dropout masks) restored, same optimizer
# and scheduler state: a resumed run repeats the uninterrupted one's arithmetic op for op.
# Measured: bitwise equal (every logged loss, grad norm and eval loss). 1e-6 leaves room for float
# reassociation only; a wrong batch or lost RNG or optimizer state is ≥1e-3 off.
REL = 1e-6


def stop_stage_at(root, checkpoint, sig):
    """Run the slowed stage, send `sig` once `checkpoint` is complete; (exit status, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_STAGE, *STAGE],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = root / "models" / "checkpoints" / checkpoint / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def eval_losses(root, checkpoint="checkpoint-8"):
    state = json.loads(
        (root / "models" / "checkpoints" / checkpoint / "trainer_state.json").read_text()
    )
    return {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}


def assert_same_run(resumed, reference):
    for key in ("global_step", "best_checkpoint", "train_tokens_seen", "stopped_early"):
        assert resumed[key] == reference[key], key
    for key in ("best_eval_loss", "final_train_loss", "mean_train_loss"):
        assert resumed[key] == pytest.approx(reference[key], rel=REL), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_tokenizer):
    """An uninterrupted run: its folder and metrics."""
    root = tiny_project(tmp_path_factory.mktemp("reference"), tiny_tokenizer, BUDGET)
    return root, *train_timed(root)


@pytest.fixture
def project(tmp_path, tiny_tokenizer):
    return tiny_project(tmp_path, tiny_tokenizer, BUDGET)


def test_the_reference_run_trains_every_step_in_one_session(reference):
    root, metrics, timing = reference
    assert metrics["global_step"] == 8 and metrics["resumed_from_step"] == 0
    assert metrics["session_steps"] == 8 and timing["train_tokens_per_second"] > 0
    assert timing["runtime_seconds"] > 0 and timing["eval_seconds"] > 0
    assert metrics["final_train_loss"] < metrics["mean_train_loss"]  # it learns
    # the mean over the 8 steps' logged losses (logging_steps 1)
    state = json.loads((root / "models/checkpoints/checkpoint-8/trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 8 and metrics["mean_train_loss"] == round(sum(losses) / 8, 5)


def test_ctrl_c_in_training_keeps_the_checkpoints_and_the_next_run_ends_as_if_uninterrupted(
    project, reference, monkeypatch
):
    from transformers import Trainer

    step = Trainer.training_step

    def interrupted_in_step_4(self, *args, **kwargs):  # Ctrl-C during step 4's forward pass
        if self.state.global_step == 3:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "training_step", interrupted_in_step_4)
        with pytest.raises(TrainingStopped) as stopped:
            train(project)
    assert str(stopped.value) == (
        "stopped at step 3; run dvc repro (or this command) again to continue from checkpoint-2"
    )
    assert sorted(p.name for p in (project / "models" / "checkpoints").iterdir()) == [
        "checkpoint-2",
        "fingerprint.json",
    ]
    metrics = train(project)
    assert metrics["resumed_from_step"] == 2 and metrics["session_steps"] == 6
    assert_same_run(metrics, reference[1])
    assert eval_losses(project) == pytest.approx(eval_losses(reference[0]), rel=REL)
    # the curves hold each step once: step 3 of the stopped session was logged, then dropped
    steps = (project / "metrics/train_live/plots/metrics/train/loss.tsv").read_text().split()[2::2]
    assert steps == [str(s) for s in range(1, 9)]


def test_running_a_finished_run_again_reports_it_as_it_was_without_training(reference, tmp_path):
    """The metrics of the run that trained the checkpoints (kept with them): not a session of
    0 steps; the timing says that this session trained nothing."""
    root = shutil.copytree(reference[0], tmp_path / "again")
    before = {p: p.stat().st_mtime_ns for p in (root / "models/checkpoints").rglob("*")}
    metrics, timing = train_timed(root)
    assert metrics == reference[1] and metrics["session_steps"] == 8
    assert timing == {"session_steps": 0, "found_finished_run": True}
    assert {p: p.stat().st_mtime_ns for p in (root / "models/checkpoints").rglob("*")} == before


def test_a_changed_param_starts_over(reference, tmp_path):
    root = shutil.copytree(reference[0], tmp_path / "changed")
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("lr: 0.01", "lr: 0.02"))
    (root / "models" / "checkpoints" / "checkpoint-8" / "old-run").touch()
    metrics = train(root)
    assert metrics["resumed_from_step"] == 0 and metrics["session_steps"] == 8
    assert not (root / "models" / "checkpoints" / "checkpoint-8" / "old-run").exists()
    state = json.loads((root / "models/checkpoints/checkpoint-2/trainer_state.json").read_text())
    assert state["log_history"][0]["learning_rate"] == 0.02
    assert metrics["best_eval_loss"] != pytest.approx(reference[1]["best_eval_loss"], rel=REL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_the_stage_stopped_by_a_signal_continues_when_run_again(project, reference, sig):
    code, stderr = stop_stage_at(project, "checkpoint-2", sig)
    if sig == signal.SIGINT:
        assert code == 130
        said = [line.strip() for line in stderr.splitlines() if "train:" in line]
        assert len(said) == 1 and re.fullmatch(STOPPED, said[0]), stderr[-3000:]
        assert "Traceback" not in stderr
    else:
        assert code == -signal.SIGKILL
    assert not (project / "metrics" / "train.json").exists()
    result = run_stage(project)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_step"] >= 2
    assert_same_run(metrics, reference[1])
