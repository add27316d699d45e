"""What keeps a stage's outputs the same bytes run to run and machine to machine: the CPU math
pinned to one code path, and run-time figures (seconds, tokens/s, peak memory, the machine)
written apart from every output DVC hashes and git tracks."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from kotune.files import write_json

# Float results depend on the code paths the CPU picks and on the thread count: measured on an
# AMD EPYC with AVX-512 (torch 2.13), the scratch base after 3 warm-up steps differs between 1
# and 2 threads, between ATen's AVX-512, AVX2 and plain kernels, and between oneDNN / MKL with
# and without their AVX2 cap; a 6-step QLoRA run differs between ATen's AVX-512, AVX2 and plain
# kernels. Pinned for the stages that compute on the CPU: one thread and the AVX2 code path in
# all three (which every x86-64 CPU with AVX2 runs alike; MKL_CBWR is MKL's own reproducibility
# mode). Read by torch, oneDNN and MKL when they start: set before torch loads.
DETERMINISTIC_CPU_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Keys of run-time figures: in a hashed output they would change it on every run. The Trainer's
# own (transformers' speed_metrics: train_runtime, eval_samples_per_second, …) and kotune's.
TIMING_KEY = re.compile(
    r"(_runtime|_seconds|_per_second|_per_step|_preparation_time|^peak_.*_gib|_threads)$"
)


def has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(line.startswith("flags") and " avx2" in line for line in info)
    except OSError:
        return False


def pin_cpu_math() -> bool:
    """Make CPU float math bit-identical across x86-64 CPUs with AVX2 (DETERMINISTIC_CPU_ENV);
    call before torch is imported. Elsewhere (ARM, no AVX2) only the thread count is pinned and
    the bits are that kind of CPU's. Returns whether this process's code paths were pinned
    (False too when torch was imported before the call)."""
    if "torch" in sys.modules:
        # too late for this process (something loaded torch first: a sitecustomize hook, an
        # embedding program); its child processes (torchrun's, accelerate's workers) still get
        # the pinned paths, and the caller learns that this one is not pinned
        if has_avx2():
            os.environ.update(DETERMINISTIC_CPU_ENV)
        return False
    if not has_avx2():
        os.environ.update({k: v for k, v in DETERMINISTIC_CPU_ENV.items() if "THREADS" in k})
        return False
    os.environ.update(DETERMINISTIC_CPU_ENV)
    return True


def is_timing_key(key: str) -> bool:
    return bool(TIMING_KEY.search(key))


def without_timing(figures: dict[str, Any]) -> dict[str, Any]:
    """`figures` less its run-time keys (is_timing_key)."""
    return {k: v for k, v in figures.items() if not is_timing_key(k)}


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, the pinned math, torch's threads and GPU."""
    facts: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_math_pinned": os.environ.get("ATEN_CPU_CAPABILITY") == "avx2",
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:  # only when the stage loaded it: never imported here
        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_timing(path: str | Path | None, figures: dict[str, Any]) -> None:
    """metrics/timing/<stage>.json: this run's figures, when and where they were measured.
    Deliberately no DVC output (dvc.lock would hash it) and git-ignored (a clone's run would
    change it): README's measured table is where speeds are documented."""
    if path is None:
        return
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(path, {**figures, "machine": machine(), "measured_at": measured_at})


def untimed_trainer_logs() -> Any:
    """A Trainer callback keeping run-time figures out of the log history that every
    checkpoint's trainer_state.json saves: the Trainer puts `train_runtime` and
    `train_tokens_per_second` in each training log and `eval_runtime`, `eval_samples_per_second`
    and `eval_steps_per_second` in each evaluation's (no TrainingArguments option leaves them
    out), which would make every checkpoint, and models/checkpoints' hash in dvc.lock, differ run
    to run. They are taken out as they are logged (before the next save writes the history);
    `eval_seconds` sums the evaluations' for the timing file. Callbacks see the log dict
    unchanged (DVCLive's curves use none of these keys)."""
    from transformers import TrainerCallback

    class UntimedLogs(TrainerCallback):
        def __init__(self) -> None:
            self.eval_seconds = 0.0

        def on_log(self, args, state, control, logs=None, **kwargs):
            for entry in state.log_history:  # a checkpoint of an older kotune may hold some
                for key in [k for k in entry if is_timing_key(k)]:
                    value = entry.pop(key)
                    if key == "eval_runtime" and entry is state.log_history[-1]:
                        self.eval_seconds += value

    return UntimedLogs()
