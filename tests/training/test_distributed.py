"""Data-parallel training: `stages/train.py` relaunches itself through torchrun when the profile
asks for several processes, and 2 processes (gloo, on the CPU) train like 1 with the same
effective batch."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from safetensors.torch import load_file
from test_qlora import ROOT, STAGE, run_stage, tiny_project, train

from kotune.training.launch import is_main_process, needs_launcher, torchrun_args

# 40 examples / 8 = 5 steps an epoch, 8 steps cross into the second one. LoRA dropout 0: each
# process draws its own masks for its half of a batch, which no single process can repeat
# (measured: losses then differ by ~1e-3 from step 2 on, and the second epoch's order too, as
# the sampler's shuffle comes from the RNG the masks used).
BUDGET = [
    "train.max_steps=8",
    "train.eval_steps=2",
    "train.logging_steps=1",
    "train.lr=0.01",
    "train.warmup_ratio=0.0",
    "train.lora.dropout=0.0",
]
# effective batch 8 both ways: 1 process × micro 4 × accumulation 2 (the cpu profile) and
# 2 processes × micro 2 × accumulation 2
TWO_PROCESSES = ["gpu.num_processes=2", "gpu.micro_batch_size=2"]
# Both runs see the same 8 examples in each optimizer step (the sampler shuffles by the same seed
# and accelerate deals its batches out in turn: [0,1],[4,5] to rank 0, [2,3],[6,7] to rank 1),
# and the loss is normalised by the label tokens of all processes. (Same examples only because
# group_by_length's megabatches come out equal here, min(40 // 32, 50) × 8 = min(40 // 16, 50) ×
# 4 = 8 examples; with ≥ 1,600 examples they are 400 vs 200, so real runs on 1 and 2 processes
# see other batches, alike only in distribution.) Only the order of float
# additions differs (gloo's all-reduce adds two half-batch gradients). Measured: losses agree to
# ~1e-7 relative over 8 steps; 1e-5 leaves room for that to grow, while a real mismatch (other
# batches, a per-process loss average, tokens counted twice) is ≥1e-3 off.
REL = 1e-5


def logged(root, key, checkpoint="checkpoint-8"):
    state = json.loads(
        (root / "models/checkpoints" / checkpoint / "trainer_state.json").read_text()
    )
    return {e["step"]: e[key] for e in state["log_history"] if key in e}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_tokenizer):
    root = tiny_project(tmp_path_factory.mktemp("single"), tiny_tokenizer, BUDGET)
    return root, train(root)


@pytest.mark.parametrize(
    "num_processes, environ, relaunch",
    [
        (1, {}, False),
        (2, {}, True),
        (2, {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}, False),  # a torchrun worker already
        (4, {"WORLD_SIZE": "4"}, False),
    ],
)
def test_the_stage_relaunches_only_when_several_processes_are_asked_and_none_runs(
    num_processes, environ, relaunch
):
    assert needs_launcher(num_processes, environ) is relaunch


def test_torchrun_gets_the_same_command_line():
    assert torchrun_args(2, ["stages/train.py", "--base", "models/base"]) == [
        "--standalone",
        "--nproc_per_node=2",
        "stages/train.py",
        "--base",
        "models/base",
    ]
    assert is_main_process({}) and is_main_process({"RANK": "0"})
    assert not is_main_process({"RANK": "1"})


def test_relaunch_runs_every_rank_and_returns_the_failed_workers_exit_status(tmp_path):
    (tmp_path / "worker.py").write_text(
        "import os, sys\n"
        "open(f\"rank-{os.environ['RANK']}-of-{os.environ['WORLD_SIZE']}\", 'w').close()\n"
        "sys.exit(3 if os.environ['RANK'] == '1' else 0)\n"
    )
    code = (
        "import sys; from kotune.training.launch import relaunch; "
        "sys.exit(relaunch(2, ['worker.py']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("rank-*")) == ["rank-0-of-2", "rank-1-of-2"]


def test_two_processes_train_like_one_with_the_same_effective_batch(
    single, tmp_path, tiny_tokenizer
):
    root = tiny_project(tmp_path, tiny_tokenizer, [*BUDGET, *TWO_PROCESSES])
    result = run_stage(root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("train: best") == 1  # rank 0 reports, rank 1 does not
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    one_root, one = single
    assert (metrics["num_processes"], one["num_processes"]) == (2, 1)
    assert metrics["grad_accum_steps"] == one["grad_accum_steps"] == 2
    assert metrics["global_step"] == one["global_step"] == 8
    assert metrics["train_tokens_seen"] == one["train_tokens_seen"]  # both processes' tokens
    assert metrics["best_checkpoint"] == one["best_checkpoint"]
    for key in ("loss", "eval_loss"):
        two_losses, one_losses = logged(root, key), logged(one_root, key)
        assert two_losses.keys() == one_losses.keys()
        assert two_losses == pytest.approx(one_losses, rel=REL), key
    # one set of checkpoints, written by rank 0, with each rank's RNG state for an exact resume
    checkpoints = root / "models" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
        "checkpoint-8",
        "fingerprint.json",
        "run_metrics.json",
    ]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {
        p.name for p in (checkpoints / "checkpoint-8").iterdir()
    }
    two_adapter = load_file(checkpoints / "checkpoint-8" / "adapter_model.safetensors")
    one_adapter = load_file(one_root / "models/checkpoints/checkpoint-8/adapter_model.safetensors")
    # Adam divides by the root of the squared gradient: an element whose gradient is ~0 moves by
    # ±lr on float noise, so compare each matrix as a whole. Measured: ≤ 6e-6 of its norm.
    for name, weight in one_adapter.items():
        assert (two_adapter[name] - weight).norm() / weight.norm() < 1e-4, name
    # the curves were written once: every step once, by rank 0
    steps = (root / "metrics/train_live/plots/metrics/train/loss.tsv").read_text().split()[2::2]
    assert steps == [str(s) for s in range(1, 9)]


# Imported by every Python process started with its folder on PYTHONPATH (torchrun's workers
# too): once checkpoint-2 is saved, each worker's next step waits, so that Ctrl-C lands in the
# middle of the run however loaded the machine is. The wait changes no number. SIGINT is
# handled as in a terminal (a shell's background job starts with it ignored, and so would these).
HOLD_AFTER_CHECKPOINT_2 = """
from kotune.reproducible import pin_cpu_math

pin_cpu_math()  # as the stage does, before transformers brings torch in

import signal
import time
import transformers

signal.signal(signal.SIGINT, signal.default_int_handler)

step = transformers.Trainer.training_step


def held(self, *args, **kwargs):
    if self.state.global_step >= 2:
        time.sleep(120)
    return step(self, *args, **kwargs)


transformers.Trainer.training_step = held
"""


@pytest.mark.slow
def test_ctrl_c_stops_every_process_with_one_line_and_the_run_resumes(tmp_path, tiny_tokenizer):
    """SIGINT to the stage (what Ctrl-C sends) reaches torchrun's agent, which passes it on to
    each worker; rank 0 says where it stopped; no traceback, no worker left behind."""
    budget = [*BUDGET, "train.max_steps=16"]
    root = tiny_project(tmp_path / "two", tiny_tokenizer, [*budget, *TWO_PROCESSES])
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_AFTER_CHECKPOINT_2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "stages" / "train.py"), *STAGE],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    state = root / "models" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    said = [line.strip() for line in stderr.splitlines() if "train:" in line]
    assert len(said) == 1, stderr[-3000:]
    assert re.fullmatch(
        r"train: stopped at step 2; run dvc repro \(or this command\) again to continue "
        r"from checkpoint-2",
        said[0],
    )
    assert "Traceback" not in stderr and "terminate called" not in stderr
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(root)]
    assert not (root / "metrics" / "train.json").exists()

    result = run_stage(root)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_step"] >= 2
    # and it ends where one uninterrupted process ends, early stopping's count carried over
    one = train(tiny_project(tmp_path / "one", tiny_tokenizer, budget))
    for key in ("global_step", "best_checkpoint", "train_tokens_seen", "stopped_early"):
        assert metrics[key] == one[key], key
    for key in ("best_eval_loss", "mean_train_loss", "final_train_loss"):
        assert metrics[key] == pytest.approx(one[key], rel=REL), key
