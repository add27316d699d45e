"""Measuring on the device for bench/train_speed.py and bench/chat_speed.py: the card's own
ceilings (dense matmul rate, memory bandwidth), wall time with the device synchronised, peak
memory between resets, and the Markdown tables the runs end with.

On the CPU (`--smoke`) the same functions run with perf_counter and report no memory.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GIB = 1024**3


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def seconds(fn: Callable[[], Any], device: str) -> float:
    """Wall seconds of `fn()` with the device idle before and finished after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_ms(fn: Callable[[], Any], device: str, runs: int, warmup: int = 3) -> float:
    """Median milliseconds of `fn()` over `runs` (CUDA events on the GPU), after `warmup` calls."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            times.append(1000 * seconds(fn, device))
    return statistics.median(times)


def matmul_tflops(device: str, dtype: str = "bfloat16", n: int = 8192, runs: int = 20) -> float:
    """Dense matmul rate of this device: an n×n by n×n product (2·n³ FLOPs), median of `runs`.
    The MFU denominator: what this card really sustains, not the datasheet's number."""
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    ms = median_ms(lambda: a @ b, device, runs)
    return 2 * n**3 / (ms / 1000) / 1e12


def copy_gbps(device: str, mib: int = 2048, runs: int = 20) -> float:
    """Memory bandwidth: a device-to-device copy of `mib` MiB reads and writes each byte once,
    so GB/s = 2 × bytes / time. The decode ceiling: every weight is read once per step."""
    import torch

    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, runs)
    return 2 * mib * 2**20 / (ms / 1000) / 1e9


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> dict[str, float | None]:
    """torch's peak allocated / reserved since the last reset_peak (the CUDA context, ~0.5 GiB,
    and bitsandbytes' paged optimizer state, cudaMallocManaged, are not in these counters)."""
    import torch

    if device != "cuda":
        return {"allocated": None, "reserved": None}
    return {
        "allocated": round(torch.cuda.max_memory_allocated() / GIB, 2),
        "reserved": round(torch.cuda.max_memory_reserved() / GIB, 2),
    }


def free(device: str) -> None:
    """Release what the caller has dropped its references to, so the next variant starts clean."""
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def quiet() -> None:
    """No progress bars or info logs from transformers: the run's last lines are its table."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def begin_run(smoke: bool, out: Path) -> str:
    """A benchmark's common start: the device (the CPU for --smoke), quiet logs, the out folder."""
    import torch

    device = "cpu" if smoke else "cuda"
    quiet()
    if smoke:  # tiny shapes: one thread, which a shared CPU cannot oversubscribe
        torch.set_num_threads(1)
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on the CPU")
    out.mkdir(parents=True, exist_ok=True)
    return device


def device_facts(device: str) -> dict[str, Any]:
    import torch
    import transformers

    facts = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import bitsandbytes
        import peft

        facts.update(peft=peft.__version__, bitsandbytes=bitsandbytes.__version__)
    except ImportError:
        pass
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1))
    else:
        facts.update(gpu=None, cpu_threads=torch.get_num_threads())
    return facts


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """rows as a Markdown table; columns: (key, header). None shows as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = [
        "| " + " | ".join(header for _, header in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)
