"""The speed settings of a GPU profile on the real Trainer path: torch.compile per decoder block
(on, or `auto` once the run pays for it) runs on the CPU; Liger and flex_attention need CUDA, so
here their plumbing is checked and the GPU runs are marked `gpu`."""

import dataclasses
import sys
import types

import pytest
import torch
from test_qlora import ROOT, tiny_project, train

from kotune.config import compose, parse_config
from kotune.errors import KotuneError
from kotune.training.qlora import training_arguments
from kotune.training.speedups import (
    COMPILE_SPEEDUP,
    check_liger_kernels,
    compiling_pays,
    liger_applies,
    liger_kernel_config,
)

BUDGET = [
    "train.max_steps=6",
    "train.eval_steps=3",
    "train.logging_steps=1",
    "train.lr=0.01",
    "train.warmup_ratio=0.0",
    "train.lora.dropout=0.0",
]


@pytest.mark.parametrize(
    "step_seconds, remaining, warmup, pays",
    [
        (0.25, 100, 30, False),  # saves 100 × 0.25 × 0.2 = 5 s < 30 s (the Mencius run on an H200)
        (0.25, 1000, 30, True),  # 50 s > 30 s
        (1.0, 0, 0, False),  # nothing left to save
        (0.01, 10, 0, True),  # free compilation pays at once
    ],
)
def test_compile_pays_when_the_remaining_steps_save_more_than_it_costs(
    step_seconds, remaining, warmup, pays
):
    assert COMPILE_SPEEDUP == 1.25
    assert compiling_pays(step_seconds, remaining, warmup) is pays


@pytest.mark.parametrize(
    "model, gpu, applies",
    [
        ("qwen2.5-7b-instruct", "h200-141gb", True),
        ("bllossom-8b", "h200-141gb", True),
        ("koalpaca-polyglot-5.8b", "h200-141gb", False),  # Liger has no GPT-NeoX kernels
        ("qwen2.5-7b-instruct", "t4", False),  # off in the profile
    ],
)
def test_liger_reaches_the_trainer_for_the_families_it_has_kernels_for(model, gpu, applies):
    """The Trainer applies Liger itself (`use_liger_kernel`). transformers refuses a CUDA
    profile's bf16 arguments on a machine without CUDA, so they are built here for the CPU."""
    cfg = parse_config(compose([f"model={model}", f"gpu={gpu}"], ROOT / "conf"))
    assert liger_applies(cfg.gpu, cfg.model.family) is applies
    on_cpu = dataclasses.replace(cfg.gpu, device="cpu", compute_dtype="float32")
    args = training_arguments(dataclasses.replace(cfg, gpu=on_cpu), ROOT / "unused")
    assert args.use_liger_kernel is (applies and torch.cuda.is_available())


@pytest.mark.parametrize("model", ["qwen2.5-7b-instruct", "bllossom-8b"])
@pytest.mark.parametrize(
    "compile_setting, in_blocks", [("false", True), ("true", False), ("auto", False)]
)
def test_with_compiled_blocks_liger_keeps_only_its_fused_linear_cross_entropy(
    tmp_path, model, compile_setting, in_blocks
):
    """Liger's RMSNorm inside a compiled decoder block stopped dynamo (H200, round 3). Whenever
    the blocks are or may be compiled (true, or auto: compiled mid-run, after the Trainer has
    patched the model) the Trainer gets only the fused linear cross-entropy, which runs after
    the blocks; eager runs keep Liger's defaults. `h200-141gb` ships compile auto."""
    overrides = [f"model={model}", "gpu=h200-141gb", f"gpu.compile={compile_setting}"]
    cfg = parse_config(compose(overrides, ROOT / "conf"))
    kernels = liger_kernel_config(cfg.gpu, cfg.model.family)
    assert kernels == {
        "rope": in_blocks,
        "rms_norm": in_blocks,
        "swiglu": in_blocks,
        "cross_entropy": False,
        "fused_linear_cross_entropy": True,
    }
    # what the Trainer receives (fp32 here: transformers refuses bf16 without CUDA)
    gpu = dataclasses.replace(cfg.gpu, compute_dtype="float32")
    args = training_arguments(dataclasses.replace(cfg, gpu=gpu), tmp_path)
    assert args.use_liger_kernel is True and args.liger_kernel_config == kernels
    no_liger = dataclasses.replace(cfg, gpu=dataclasses.replace(gpu, liger=False))
    assert liger_kernel_config(no_liger.gpu, "qwen2") is None
    assert training_arguments(no_liger, tmp_path).liger_kernel_config is None


def test_a_liger_kernel_its_apply_function_does_not_take_stops_the_run(monkeypatch):
    """Liger's _apply_liger_kernel_to_instance silently drops names its apply function does not
    take: kotune checks them first against the function's signature (here a stand-in with
    liger-kernel 0.8.5's parameters for qwen2), and a missing liger-kernel is one line too."""

    def apply_0_8_5(rope=True, cross_entropy=False, fused_linear_cross_entropy=True,
                    rms_norm=True, swiglu=True, model=None):  # fmt: skip
        return None

    def renamed(rope=True, fused_linear_cross_entropy=True, rmsnorm=True, swiglu=True, model=None):
        return None

    shipped = compose(["model=qwen2.5-7b-instruct", "gpu=h200-141gb"], ROOT / "conf")
    kernels = liger_kernel_config(parse_config(shipped).gpu, "qwen2")
    assert kernels["rms_norm"] is False
    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patch)
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"qwen2": apply_0_8_5}
    check_liger_kernels("qwen2", kernels)  # every name taken
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"qwen2": renamed}
    with pytest.raises(KotuneError, match="takes no cross_entropy, rms_norm"):
        check_liger_kernels("qwen2", kernels)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", None)
    with pytest.raises(KotuneError, match="pip install liger-kernel"):
        check_liger_kernels("qwen2", kernels)


@pytest.mark.slow
def test_auto_compiles_the_blocks_once_it_pays_and_trains_like_eager(tmp_path, tiny_tokenizer):
    """gpu.compile auto with a free warm-up (0 s) times this session's 2nd and 3rd steps, then
    compiles every decoder block (`true` calls the same compile_blocks before the first step).
    Same losses as eager up to kernel rounding."""
    eager = train(tiny_project(tmp_path / "eager", tiny_tokenizer, BUDGET))
    overrides = [*BUDGET, "gpu.compile=auto", "gpu.compile_warmup_s=0"]
    compiled = train(tiny_project(tmp_path / "compiled", tiny_tokenizer, overrides))
    torch._dynamo.reset()
    assert eager["compiled_at_step"] is None and compiled["compiled_at_step"] == 3
    for key in ("best_eval_loss", "mean_train_loss", "final_train_loss"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", ["sdpa", "flex_attention"])
def test_liger_and_flex_attention_train_on_a_gpu(tmp_path, tiny_tokenizer, attention):
    """On a CUDA machine: Liger on a tiny Llama-family model is not applicable to the tiny
    GPT-NeoX, so this runs the GPT-NeoX with packing through flex_attention and sdpa alike."""
    overrides = [*BUDGET, "gpu=h200-141gb", "gpu.packing=true", f"gpu.attention={attention}"]
    metrics = train(tiny_project(tmp_path, tiny_tokenizer, overrides))
    assert metrics["global_step"] == 6 and metrics["best_eval_loss"] is not None


@pytest.mark.slow
def test_plain_lora_on_an_unquantized_base_trains_and_loads_for_evaluation_and_chat(
    tmp_path, tiny_tokenizer
):
    """gpu.quantization none (the h200-141gb profile's): the same adapter as QLoRA trains on the
    base in the compute dtype; evaluate loads it unmerged on that base, chat merged, alike."""
    from kotune.config import load_config
    from kotune.inference.loading import attach_adapter, load_model, load_trained

    overrides = ["gpu.quantization=none", "train.max_steps=4", "train.eval_steps=2"]
    root = tiny_project(tmp_path, tiny_tokenizer, overrides)
    plain = train(root)
    qlora = train(tiny_project(tmp_path / "nf4", tiny_tokenizer, overrides[1:]))
    assert plain["trainable_params"] == qlora["trainable_params"]  # the same adapter
    assert plain["best_eval_loss"] == pytest.approx(qlora["best_eval_loss"], rel=0.02)
    cfg = load_config(root / "params.yaml")
    best = root / "models" / "checkpoints" / plain["best_checkpoint"]
    unmerged, _ = load_trained(cfg, root / "models" / "base", best)
    base = load_model(
        str(root / "models" / "base"), None, quantization="none", compute_dtype="float32",
        device="cpu",
    )  # fmt: skip
    merged = attach_adapter(base, best, merge=True)
    ids = torch.tensor([[2, 5, 9, 14, 20, 27]])
    with torch.no_grad():
        assert torch.allclose(
            unmerged(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4
        )
    assert not any(p.requires_grad for p in merged.parameters())
