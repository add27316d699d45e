"""FSDP-QLoRA (`gpu.distributed: fsdp`) on two CPU processes (gloo): the train stage relaunches
itself through `accelerate launch` with the FSDP config kotune writes, trains like one process
with the same effective batch, writes the whole adapter beside each sharded checkpoint, and
resumes exactly after a kill.

accelerate (1.15) runs FSDP only on an accelerator: on the CPU it silently falls back to DDP.
These tests lift that one gate in the workers (FSDP_ON_CPU below, loaded through sitecustomize):
the distributed type FSDP needs, the CPU as the device, gloo, and a barrier without device ids.
Everything else is kotune's and accelerate's real code: the config writer and launcher, loading
without a device map, the 4-bit weights stored as fp32 words and flattened into FSDP's shards,
peft's wrapping of the LoRA layers, the sharded checkpoints and the resume.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from safetensors.torch import load_file
from test_qlora import ROOT, STAGE, tiny_project, train

# first in every process, as the stage does before torch loads (the hooks below bring it in)
PIN = """
from kotune.reproducible import pin_cpu_math
pin_cpu_math()
"""
FSDP_ON_CPU = """
import os
if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
    import torch
    import accelerate.state as state
    from accelerate.utils import DistributedType

    prepare = state.PartialState._prepare_backend

    def _prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        backend, kind = prepare(self, cpu, sagemaker_dp, backend)
        if kind == DistributedType.MULTI_CPU:  # the type whose branch sets FSDP up
            if not torch.distributed.is_initialized():
                torch.distributed.init_process_group("gloo")
            kind = DistributedType.MULTI_GPU
        return backend, kind

    def _set_device(self):
        if self.device is None:
            self.device = torch.device("cpu")

    def _wait_for_everyone(self):
        torch.distributed.barrier()  # gloo takes no device_ids

    state.PartialState._prepare_backend = _prepare_backend
    state.PartialState.set_device = _set_device
    state.PartialState.wait_for_everyone = _wait_for_everyone
"""
# once checkpoint-2 is saved, every worker's next step waits: the kill lands mid-run however
# loaded the machine is (the wait changes no number)
HOLD_AFTER_CHECKPOINT_2 = """
import time
import transformers

step = transformers.Trainer.training_step


def held(self, *args, **kwargs):
    if self.state.global_step >= 2 and os.environ.get("KOTUNE_TEST_HOLD"):
        time.sleep(120)
    return step(self, *args, **kwargs)


transformers.Trainer.training_step = held
"""
# 40 examples, effective batch 8: 1 process × micro 4 × accumulation 2 (the cpu profile) against
# 2 FSDP processes × micro 2 × accumulation 2; real 4-bit NF4; LoRA dropout 0 (each process
# would draw its own masks otherwise); lr 0.01 so the loss moves
BUDGET = [
    "train.max_steps=4",
    "train.eval_steps=2",
    "train.logging_steps=1",
    "train.lr=0.01",
    "train.warmup_ratio=0.0",
    "train.lora.dropout=0.0",
]
FSDP = ["gpu.distributed=fsdp", "gpu.num_processes=2", "gpu.micro_batch_size=2"]
# Same examples in every step (see test_distributed.py); FSDP reduce-scatters fp32 gradients of
# flattened shards instead of DDP's all-reduce, so only the order of float additions differs.
# Measured: losses equal to ~1e-6 relative; 1e-4 leaves room for that, while a real mismatch
# (another batch, a lost shard, adapters not restored) is ≥ 1e-3 off.
REL = 1e-4


def hooks(tmp_path):
    folder = tmp_path / "hooks"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(PIN + FSDP_ON_CPU + HOLD_AFTER_CHECKPOINT_2)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}


def run_stage(root, env, **popen):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "stages" / "train.py"), *STAGE],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def finished(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def logged(root, key, checkpoint="checkpoint-4"):
    path = root / "models/checkpoints" / checkpoint / "trainer_state.json"
    return {e["step"]: e[key] for e in json.loads(path.read_text())["log_history"] if key in e}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_tokenizer):
    root = tiny_project(tmp_path_factory.mktemp("single"), tiny_tokenizer, BUDGET)
    return root, train(root)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tiny_tokenizer):
    tmp = tmp_path_factory.mktemp("fsdp")
    root = tiny_project(tmp / "run", tiny_tokenizer, [*BUDGET, *FSDP])
    stdout = finished(run_stage(root, hooks(tmp)))
    return root, json.loads((root / "metrics" / "train.json").read_text()), stdout


@pytest.mark.slow
def test_fsdp_qlora_on_two_processes_trains_like_one(single, sharded):
    one_root, one = single
    root, metrics, stdout = sharded
    assert stdout.count("train: best") == 1  # rank 0 reports
    assert (metrics["distributed"], metrics["num_processes"]) == ("fsdp", 2)
    for key in ("global_step", "grad_accum_steps", "train_tokens_seen", "best_checkpoint"):
        assert metrics[key] == one[key], key
    for key in ("loss", "eval_loss"):
        assert logged(root, key) == pytest.approx(logged(one_root, key), rel=REL), key
    checkpoint = root / "models" / "checkpoints" / "checkpoint-4"
    names = {p.name for p in checkpoint.iterdir()}
    # each rank's shard of the model and optimizer (for resuming), and the whole adapter
    assert {"pytorch_model_fsdp_0", "optimizer_0", "rng_state_0.pth", "rng_state_1.pth"} <= names
    whole = load_file(checkpoint / "adapter_model.safetensors")
    reference = load_file(one_root / "models/checkpoints/checkpoint-4/adapter_model.safetensors")
    assert whole.keys() == reference.keys()  # evaluate and export read it as a one-card one
    for name, weight in reference.items():  # Adam on ~0 gradients: compare whole matrices
        assert (whole[name] - weight).norm() / weight.norm() < 1e-3, name


@pytest.mark.slow
def test_a_killed_fsdp_run_resumes_from_its_shards_where_it_stopped(
    sharded, tmp_path, tiny_tokenizer
):
    """SIGKILL to the launcher and every worker (no clean-up at all) once checkpoint-2 is complete;
    the next run resumes from the shards and the whole adapter and ends exactly where the
    uninterrupted run ended."""
    uninterrupted_root, uninterrupted, _ = sharded
    root = tiny_project(tmp_path / "run", tiny_tokenizer, [*BUDGET, *FSDP])
    env = hooks(tmp_path)
    process = run_stage(root, {**env, "KOTUNE_TEST_HOLD": "1"})
    adapter = root / "models" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"
    deadline = time.monotonic() + 600
    while not adapter.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # the Trainer's next step has begun (and waits)
    everyone = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
    for pid in everyone:  # the workers run in sessions of their own: each one by its id
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (root / "models" / "checkpoints" / "checkpoint-4").exists()

    finished(run_stage(root, env))
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_step"] == 2 and metrics["session_steps"] == 2
    for key in ("global_step", "best_checkpoint", "train_tokens_seen"):
        assert metrics[key] == uninterrupted[key], key
    for key in ("loss", "eval_loss"):  # the adapters and the Adam moments came back
        assert logged(root, key) == pytest.approx(logged(uninterrupted_root, key), rel=1e-6), key
