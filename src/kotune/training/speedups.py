"""Training speed-ups a GPU profile turns on: torch.compile per decoder block (now, or once the
run is long enough to pay for it) and Liger's kernels. Each is measured in bench/train_speed.py."""

from __future__ import annotations

import time
from typing import Any

from kotune.config import GpuConfig
from kotune.errors import KotuneError

# families Liger has kernels for (liger_kernel.transformers.apply_liger_kernel_to_<family>)
LIGER_FAMILIES = ("llama", "qwen2")
# a compiled step's speed against an eager one: padded-compile / h100-padded on an H100, both
# NF4 (bench/NOTES.md round 2); round 3's measurement replaces it
COMPILE_SPEEDUP = 1.25
# `auto` times this session's 2nd and 3rd steps (the 1st carries CUDA and allocator warm-up)
TIMED_STEPS = (2, 3)


def liger_applies(gpu: GpuConfig, family: str) -> bool:
    """Whether the Trainer should patch the model with Liger's kernels (`use_liger_kernel`)."""
    return gpu.liger and gpu.device == "cuda" and family in LIGER_FAMILIES


def liger_kernels(compiled: bool) -> dict[str, bool]:
    """Which of Liger's kernels to apply (`liger_kernel_config`: the keyword arguments of
    liger_kernel's apply_liger_kernel_to_llama / _qwen2). Eager: Liger's own defaults. With
    decoder blocks that are or may be compiled (`gpu.compile` true or auto: auto compiles mid-run,
    after the Trainer has patched the model) only the fused linear cross-entropy, which runs in
    the model's forward after the last block, outside every compiled region. RMSNorm, RoPE and
    SwiGLU sit inside each block as autograd Functions that launch Triton kernels: dynamo traces
    into them and stopped with an AssertionError at LigerRMSNormFunction.apply (torch 2.11,
    bench/NOTES.md round 3), and inductor fuses those same element-wise ops by itself."""
    in_blocks = not compiled
    return {
        "rope": in_blocks,
        "rms_norm": in_blocks,
        "swiglu": in_blocks,
        "cross_entropy": False,  # the fused linear cross-entropy replaces it (never both)
        "fused_linear_cross_entropy": True,  # no [tokens × vocab] logits (152k wide for Qwen)
    }


def liger_kernel_config(gpu: GpuConfig, family: str) -> dict[str, bool] | None:
    """The Trainer's `liger_kernel_config` for this profile and family (None: no Liger)."""
    return liger_kernels(gpu.compile is not False) if liger_applies(gpu, family) else None


def check_liger_kernels(model_type: str, kernels: dict[str, bool]) -> None:
    """Before the Trainer applies them: liger-kernel is installed, and its apply function for
    the family takes every kernel named. Liger drops names it does not take without a word, so a
    renamed one would put its RMSNorm back into compiled blocks."""
    import inspect

    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError as error:
        raise KotuneError(
            f"gpu.liger is true but liger-kernel does not import ({error}): "
            "pip install liger-kernel, or -S gpu.liger=false"
        ) from None
    taken = inspect.signature(MODEL_TYPE_TO_APPLY_LIGER_FN[model_type]).parameters
    unknown = sorted(set(kernels) - set(taken))
    if unknown:
        raise KotuneError(
            f"liger-kernel's apply function for {model_type} takes no {', '.join(unknown)} "
            "(kotune was written for liger-kernel 0.8.5): -S gpu.liger=false, or that version"
        )


def decoder_blocks(model: Any) -> Any:
    """The model's decoder layers (the longest ModuleList: gpt_neox.layers, model.layers)."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=len)


def compile_blocks(model: Any) -> int:
    """torch.compile each decoder block in place (`Module.compile`: the next call compiles; shapes
    marked dynamic, since padded and packed batches change length every step); returns how many."""
    blocks = decoder_blocks(model)
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def compiling_pays(step_seconds: float, remaining_steps: int, warmup_seconds: float) -> bool:
    """Whether compiling now saves more than it costs: the remaining steps at the measured pace,
    of which compilation saves 1 − 1/COMPILE_SPEEDUP, against its one-off warm-up."""
    saved = remaining_steps * step_seconds * (1 - 1 / COMPILE_SPEEDUP)
    return saved > warmup_seconds


def compile_when_it_pays(model: Any, warmup_seconds: float) -> Any:
    """A callback for `gpu.compile: auto`: times this session's 2nd and 3rd optimizer steps
    uncompiled (a resumed run too), then compiles the decoder blocks if `compiling_pays` for the
    steps left. `compiled_at_step` says when (None: not compiled)."""
    from transformers import TrainerCallback

    class CompileWhenItPays(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.session_steps, self.timed = 0.0, 0, []
            self.compiled_at_step: int | None = None
            self.step_seconds: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.session_steps += 1
            if self.session_steps in TIMED_STEPS:
                self.timed.append(time.perf_counter() - self.started)
            if self.session_steps == TIMED_STEPS[-1]:
                self.step_seconds = sum(self.timed) / len(self.timed)
                left = state.max_steps - state.global_step
                if compiling_pays(self.step_seconds, left, warmup_seconds):
                    compile_blocks(model)
                    self.compiled_at_step = state.global_step

    return CompileWhenItPays()


def step_timer(skip_steps: int = 3) -> Any:
    """A callback timing training steps alone, as bench/train_speed.py times its loop: from each
    optimizer step's begin to its end (no evaluation, checkpointing or logging in between),
    after this session's first `skip_steps` (CUDA, allocator and compile warm-up).
    `figures()`: steady tokens/s (non-padding input tokens, all processes) and seconds/step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.session_steps, self.seconds, self.tokens = 0, 0.0, 0
            self.started, self.seen = 0.0, None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = time.perf_counter() - self.started
            self.session_steps += 1
            if self.session_steps > skip_steps and self.seen is not None:
                self.seconds += elapsed
                self.tokens += state.num_input_tokens_seen - self.seen
            self.seen = state.num_input_tokens_seen

        def figures(self) -> dict[str, float | None]:
            timed = self.session_steps - skip_steps
            if timed <= 0 or self.seconds == 0:
                return {"steady_tokens_per_second": None, "steady_seconds_per_step": None}
            return {
                "steady_tokens_per_second": round(self.tokens / self.seconds, 1),
                "steady_seconds_per_step": round(self.seconds / timed, 4),
            }

    return StepTimer()
