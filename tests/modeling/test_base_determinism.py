"""The scratch base is the same bytes whatever thread count and SIMD code path the machine would
pick: the base stage pins one thread and the AVX2 path of ATen, oneDNN and MKL. Two runs of the
real stage on environments that, unpinned, give different weights after 3 warm-up steps (2
threads and AVX-512 kernels, as this kind of CPU picks by itself; 1 thread and plain kernels, as
a small CPU would)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kotune.config import compose
from kotune.files import sha256_tree, write_jsonl
from kotune.reproducible import has_avx2

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MACHINES = {
    "2 threads, AVX-512 kernels": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx512"},
    "1 thread, plain kernels": {
        "OMP_NUM_THREADS": "1",
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    },
}


def build_base(root: Path, records: list[dict], machine: dict[str, str]) -> dict[str, str]:
    root.mkdir()
    params = compose(["base.steps=3", "base.batch_size=4"], ROOT / "conf")
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    write_jsonl(root / "train.jsonl", records)
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/base.py"), "train.jsonl", "--out", "models/base"]
        + ["--metrics", "base.json", "--timing", "timing/base.json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **machine},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    timing = json.loads((root / "timing/base.json").read_text(encoding="utf-8"))
    assert timing["warmup_seconds"] > 0 and timing["machine"]["cpu_math_pinned"]
    return {
        **sha256_tree(root / "models/base"),
        "base.json": hashlib.sha256((root / "base.json").read_bytes()).hexdigest(),
    }


@pytest.mark.skipif(not has_avx2(), reason="the code paths are pinned on x86-64 CPUs with AVX2")
def test_the_base_weights_do_not_depend_on_the_machines_threads_or_simd(tmp_path, mencius_records):
    digests = {
        name: build_base(tmp_path / str(k), mencius_records, machine)
        for k, (name, machine) in enumerate(MACHINES.items())
    }
    first, second = digests.values()
    assert "model.safetensors" in first and first == second, digests  # metrics without run times
