"""The train stage gives the same bytes every run, whatever the machine would pick by itself:
two runs of the real stage (as DVC runs it) under environments that differ in threads, SIMD
code paths and Python's string hashing write identical checkpoints, metrics and curves; the
run times go to the timing file only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
from test_qlora import ROOT, STAGE, tiny_project

from kotune.reproducible import has_avx2

pytestmark = pytest.mark.slow

# what another machine would pick unpinned (a 6-step run differs between these two measured:
# ATen's AVX-512 and plain kernels), and another per-process string hashing (peft's set of
# target modules saved as list(set): dense, dense_h_to_4h, … in another order)
MACHINES = {
    "2 threads, AVX-512 kernels": {
        "OMP_NUM_THREADS": "2",
        "ATEN_CPU_CAPABILITY": "avx512",
        "PYTHONHASHSEED": "1",
    },
    "1 thread, plain kernels": {
        "OMP_NUM_THREADS": "1",
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "PYTHONHASHSEED": "2",
    },
}
OUTPUTS = ["models/checkpoints", "metrics/train.json", "metrics/train_live"]
# written independently of kotune.reproducible's own pattern: any run time or machine fact
RUN_TIME = re.compile(r"runtime|second|peak_|thread|measured_at|machine")


def file_hashes(root, paths):
    found = {}
    for top in paths:
        path = root / top
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            if file.is_file():
                found[file.relative_to(root).as_posix()] = hashlib.sha256(
                    file.read_bytes()
                ).hexdigest()
    return found


def run_times_in(value, where=""):
    """Every key under `value` (JSON) that names a run time or machine fact."""
    if isinstance(value, dict):
        return [f"{where}.{k}" for k in value if RUN_TIME.search(k)] + [
            hit for k, v in value.items() for hit in run_times_in(v, f"{where}.{k}")
        ]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in run_times_in(v, f"{where}[{i}]")]
    return []


@pytest.mark.skipif(not has_avx2(), reason="the code paths are pinned on x86-64 CPUs with AVX2")
def test_two_runs_on_different_machines_write_the_same_bytes(tmp_path, tiny_tokenizer):
    budget = ["train.max_steps=6", "train.eval_steps=3", "train.logging_steps=1"]
    runs = {}
    for k, (name, machine) in enumerate(MACHINES.items()):
        root = tiny_project(tmp_path / str(k), tiny_tokenizer, budget)
        result = subprocess.run(
            [sys.executable, str(ROOT / "stages" / "train.py"), *STAGE]
            + ["--timing", "metrics/timing/train.json"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **machine},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = root
    first, second = (file_hashes(root, OUTPUTS) for root in runs.values())
    assert len(first) > 20 and "models/checkpoints/checkpoint-6/trainer_state.json" in first
    assert first == second, {k for k in first if first[k] != second.get(k)}

    root = next(iter(runs.values()))
    for name in first:
        if name.endswith(".json"):
            data = json.loads((root / name).read_text(encoding="utf-8"))
            assert not run_times_in(data), (name, run_times_in(data))
    config = json.loads((root / "models/checkpoints/checkpoint-6/adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"])
    timing = json.loads((root / "metrics/timing/train.json").read_text(encoding="utf-8"))
    assert timing["runtime_seconds"] > 0 and timing["eval_seconds"] > 0
    assert timing["train_tokens_per_second"] > 0 and timing["session_steps"] == 6
    assert timing["machine"]["cpu_math_pinned"] and timing["machine"]["torch_threads"] == 1
