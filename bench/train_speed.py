"""QLoRA training speed on the GPU: the seed's recipe, kotune's profiles, faster variants.

A benchmark, not a test: every variant trains on the same examples, side by side.

    python bench/train_speed.py --out DIR                  # H100, both models, default variants
    python bench/train_speed.py --out DIR --models koalpaca-5.8b --variants seed-fp16,h100-padded --profile
    python bench/train_speed.py --smoke --out /tmp/ts      # CPU, tiny shapes: the same code path

Per model (random weights of the exact KoAlpaca-Polyglot-5.8B / Qwen2.5-7B-Instruct shapes, saved
once as bf16 safetensors and loaded in 4-bit NF4 by kotune's `load_model`, i.e. the real
BitsAndBytesConfig path) and per variant, from a fresh load: kotune's `prepare_for_lora`
(peft's `prepare_model_for_kbit_training`, non-reentrant checkpointing as the train stage),
LoRA on every linear layer (`find_lora_targets`; r, alpha, dropout from conf/config.yaml), then a
plain loop over optimizer steps with the Trainer's math — autocast in the compute dtype (a
GradScaler for fp16), the loss of a step = the sum of its token losses ÷ its label tokens
(`num_items_in_batch`, however the 8 examples are split into micro-batches), grad-norm clipping at
1.0, bitsandbytes' paged 8-bit AdamW with the Trainer's defaults. Not the Trainer itself: no
scheduler (constant lr), no evaluation or saving, so that the timed steps are training alone.

Measured per variant: real tokens/s (non-padding input tokens, prompt + answer: what kotune's
metrics call train_tokens_per_second) and label tokens/s (answer tokens the loss is taken on),
seconds per optimizer step, peak allocated/reserved memory over the timed steps and over one
worst-case step (every example max_seq_len long), MFU = model FLOPs per real token (4·N for the
frozen matmuls: forward + input gradient, 6·N_lora, causal attention) × real tokens/s ÷ this
card's measured bf16 matmul rate. Warm-up steps (the worst-case one first) are not timed.

Checked: every variant trains on the same examples (real and label token totals are compared),
and before any update each variant's per-token loss on 8 fixed examples, batched its own way
(padded / packed), matches the same examples run one at a time without padding (Δ own) and the
first variant's (Δ ref). Packing also runs a negative control (packed without position_ids
restarting: cross-example attention) whose Δ shows how large a real masking error would be.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookalike import (  # noqa: E402
    IGNORE_INDEX,
    MODELS,
    SPECIAL_IDS,
    TrainSettings,
    draw_examples,
    example_of,
    gpu_profile,
    length_pairs,
    model_spec,
    predicted_tokens,
    random_base,
    train_settings,
)
from measure import (  # noqa: E402
    GIB,
    begin_run,
    device_facts,
    free,
    markdown_table,
    matmul_tflops,
    peak_gib,
    reset_peak,
    synchronize,
)

CHECK_EXAMPLES = 8  # fixed examples for the loss check
# Loss agreement, in nats per token (random-weight losses are ~ln(vocab) ≈ 10–12): Δ own compares
# a variant's batching with the same examples one at a time in the same precision — only kernel
# shapes differ; Δ ref compares with the first variant (another precision or parameter dtype).
TOL_OWN = {"loss": 0.01, "logits": 0.02}
TOL_REF = {"loss": 0.02, "logits": 0.05}


@dataclass(frozen=True)
class Variant:
    name: str
    about: str
    dtype: str  # compute dtype: autocast and bnb_4bit_compute_dtype
    micro_batch: int  # examples per forward (packed: per packed row)
    gradient_checkpointing: bool
    padding: str  # max: every example to max_seq_len; multiple8: kotune's collator; none: packed
    order: str  # random (the Trainer's default sampler) or length (group_by_length)
    lean: bool = False  # embeddings and LM head stay in the compute dtype (not peft's fp32)
    attention: str = "sdpa"
    compile: bool = False  # torch.compile each transformer block
    # torch's cuDNN attention backend: it builds a plan per new shape (hundreds of ms, kept by
    # the process), which padded-to-a-multiple-of-8 and packed batches keep meeting. Off: sdpa
    # takes the flash or memory-efficient kernels, as kotune's training does.
    cudnn_attention: bool = False
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True for the variant's process (--isolate):
    # the caching allocator grows segments instead of keeping many fixed ones (less reserved)
    expandable_segments: bool = False
    examples_per_step: int = 0  # 0: the persona's effective batch
    only_models: tuple[str, ...] = ()  # run by default on these models only (any if empty)
    # round 3 (issue 16)
    quantization: str = "nf4"  # nf4: QLoRA; none: plain LoRA on the base in the compute dtype
    dropout: float | None = None  # LoRA dropout; None: the persona's (train.lora.dropout)
    liger: bool = False  # Liger's kernels on the base (as the Trainer's use_liger_kernel)
    engine: str = "kotune"  # kotune's loading, or "unsloth": Unsloth's FastLanguageModel


def profile_variant(
    name: str, profile: str, about: str, packing: bool | None = None, **extra: Any
) -> Variant:
    """A variant with a conf/gpu profile's settings, batched as kotune's Trainer batches them:
    packed rows in random order (gpu.packing) or length-grouped padding to a multiple of 8;
    embeddings and head in the compute dtype (inference.loading.keep_vocab_matrices_in).
    `packing` overrides the profile's own choice (None: as the profile says)."""
    gpu = gpu_profile(profile)
    packed = gpu.packing if packing is None else packing
    settings: dict[str, Any] = dict(
        dtype=gpu.compute_dtype,
        micro_batch=gpu.micro_batch_size,
        gradient_checkpointing=gpu.gradient_checkpointing,
        padding="none" if packed else "multiple8",
        order="random" if packed else "length",
        lean=True,
        attention=gpu.attention,
        quantization=gpu.quantization,
        compile=gpu.compile is not False,  # auto: a real run this long-lived would compile
        liger=gpu.liger,
    )
    settings.update(extra)
    return Variant(name=name, about=about, **settings)


def profile_variants_t4() -> list[Variant]:
    return [
        profile_variant(
            "t4-padded",
            "t4",
            "t4 settings (fp16, 4 × 2, checkpointing), length-grouped padding",
            packing=False,
            only_models=("koalpaca-5.8b",),
        ),
        profile_variant(
            "t4-packed",
            "t4",
            "t4 settings, padding-free rows of 4 examples (kotune's t4 profile)",
            packing=True,
        ),
    ]


def all_variants() -> dict[str, Variant]:
    seed = Variant(
        name="seed-fp16",
        about="the seed: every example padded to max_seq_len, 1 × accumulation 8, fp16, "
        "gradient checkpointing (prepare_model_for_kbit_training's default), peft's fp32 "
        "embeddings and head",
        dtype="float16",
        micro_batch=1,
        gradient_checkpointing=True,
        padding="max",
        order="random",
        cudnn_attention=True,  # torch's default
    )
    padded = profile_variant(
        "h100-padded", "h100-80gb", "h100-80gb settings, length-grouped padding", packing=False
    )
    packed = profile_variant(
        "h100-packed",
        "h100-80gb",
        "h100-80gb settings, padding-free: the step's 8 examples in one row, position_ids "
        "restarting (DataCollatorWithFlattening; sdpa gets a block-diagonal causal mask)",
        packing=True,
    )
    variants = [
        seed,
        padded,
        packed,
        replace(
            packed,
            name="h100-packed-gc",
            about="h100-packed + gradient checkpointing: the seed's memory at packing's speed?",
            gradient_checkpointing=True,
        ),
        *profile_variants_t4(),
        # not run by default (name them in --variants): slower to set up or a different math
        replace(
            padded,
            name="h100-padded-cudnn",
            about="h100-padded with torch's default attention backends (cuDNN first)",
            cudnn_attention=True,
        ),
        replace(
            packed,
            name="h100-packed-cudnn",
            about="h100-packed with torch's default attention backends (cuDNN first)",
            cudnn_attention=True,
        ),
        replace(
            padded,
            name="h100-fp32emb",
            about="h100-padded with peft's fp32 embeddings and head (kotune before the lean change)",
            lean=False,
        ),
        replace(
            padded,
            name="h100-padded-exp",
            about="h100-padded with expandable allocator segments",
            expandable_segments=True,
        ),
        replace(
            padded,
            name="padded-compile",
            about="h100-padded + torch.compile per block",
            compile=True,
        ),
        *[
            replace(
                variant,
                name=f"{variant.name}-exp",
                about=f"{variant.name} with expandable allocator segments",
                expandable_segments=True,
            )
            for variant in profile_variants_t4()
        ],
        replace(
            seed, name="seed-bf16", about="the seed in bf16 (if fp16 misbehaves)", dtype="bfloat16"
        ),
        replace(
            packed,
            name="packed-flex",
            about="h100-packed with flex_attention (a sparse block mask instead of sdpa's dense one)",
            attention="flex_attention",
        ),
        replace(
            packed,
            name="packed-compile",
            about="h100-packed + torch.compile per block",
            compile=True,
        ),
        replace(
            packed,
            name="packed-x2",
            about="h100-packed with 16 examples a step: NOT the same training (effective batch "
            "16, half the steps): how much a bigger step would still gain",
            micro_batch=16,
            examples_per_step=16,
        ),
        *round3_variants(padded),
    ]
    return {v.name: v for v in variants}


def round3_variants(nf4_padded: Variant) -> list[Variant]:
    """Issue 16: the h200-141gb profile as predicted, what each of its settings is worth, Unsloth
    beside it, and the one-card QLoRA peak that FSDP (issue 17) must beat."""
    h200 = profile_variant(
        "h200",
        "h200-141gb",
        "kotune h200-141gb as shipped (predicted): bf16 base (no 4-bit), length-grouped padding, "
        "8 × 1, torch.compile per block, Liger's fused linear cross-entropy for llama/qwen2, the "
        "persona's LoRA dropout 0.05",
        packing=False,
    )
    d0 = replace(h200, name="h200-d0", about="h200 with LoRA dropout 0", dropout=0.0)
    unsloth = Variant(
        name="unsloth-bf16",
        about="Unsloth's FastLanguageModel, bf16 base, LoRA dropout 0 (its fast path), same "
        "batches as h200 (length-grouped padding, 8 × 1), no checkpointing",
        dtype="bfloat16",
        micro_batch=8,
        gradient_checkpointing=False,
        padding="multiple8",
        order="length",
        lean=True,
        quantization="none",
        dropout=0.0,
        engine="unsloth",
    )
    return [
        h200,
        d0,
        replace(h200, name="h200-eager", about="h200 without torch.compile", compile=False),
        replace(
            h200,
            name="bf16-padded",
            about="h100-padded with a bf16 base: what dropping 4-bit alone is worth",
            compile=False,
            liger=False,
        ),
        replace(
            d0,
            name="h200-d0-flex-packed",
            about="h200-d0 with padding-free rows of 8 through flex_attention (block-sparse mask)",
            padding="none",
            order="random",
            attention="flex_attention",
        ),
        replace(
            d0, name="h200-d0-nf4", about="h200-d0 on a 4-bit NF4 base (QLoRA)", quantization="nf4"
        ),
        replace(
            nf4_padded,
            name="nf4-d0-compile",
            about="h100-padded (NF4) with LoRA dropout 0 and compile per block",
            dropout=0.0,
            compile=True,
        ),
        unsloth,
        replace(
            unsloth,
            name="unsloth-nf4",
            about="unsloth-bf16 on a 4-bit base (QLoRA)",
            quantization="nf4",
        ),  # fmt: skip
        profile_variant(
            "qlora-1card",
            "h200x2-fsdp",
            "h200x2-fsdp's settings on one card (NF4, 4 × accumulation 2): the per-card peak "
            "that FSDP over two cards must stay below",
        ),
    ]


# Round 3 on one H200 in ≤ 9 minutes: the main questions first (the h200 profile's MFU on the
# 5.8B shape, kotune against Unsloth on Qwen2.5-7B), then what each setting is worth, Llama,
# and the 12.8B one-card QLoRA peak for issue 17.
ROUND3_PLAN = [
    ("koalpaca-5.8b", "h200"), ("koalpaca-5.8b", "h200-d0"),
    ("qwen2.5-7b", "h200-d0"), ("qwen2.5-7b", "unsloth-bf16"),
    ("koalpaca-5.8b", "h100-padded"), ("qwen2.5-7b", "h200"),
    ("qwen2.5-7b", "unsloth-nf4"), ("qwen2.5-7b", "h200-d0-nf4"),
    ("koalpaca-5.8b", "h200-eager"), ("koalpaca-5.8b", "h200-d0-flex-packed"),
    ("koalpaca-5.8b", "qlora-1card"), ("bllossom-8b", "h200-d0"), ("bllossom-8b", "unsloth-bf16"),
    ("koalpaca-12.8b", "qlora-1card"),
]  # fmt: skip


DEFAULT_VARIANTS = [
    "seed-fp16", "h100-padded", "h100-packed", "h100-packed-gc", "t4-padded", "t4-packed"
]  # fmt: skip


# ---------------------------------------------------------------------------- batches


def arrange(
    examples: list[dict[str, list[int]]], variant: Variant, per_step: int, mega_batch_mult: int
) -> list[list[list[dict[str, list[int]]]]]:
    """Optimizer steps → micro-batches → examples, in the order the variant's sampler gives.
    Length grouping is the Trainer's own `get_length_grouped_indices` (batch = micro-batch ×
    accumulation, mega-batches as large as for the persona's whole train split)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    if variant.order == "length":
        lengths = [len(e["input_ids"]) for e in examples]
        generator = torch.Generator().manual_seed(42)
        order = get_length_grouped_indices(lengths, per_step, mega_batch_mult, generator)
        examples = [examples[i] for i in order]
    steps = []
    for start in range(0, len(examples) - per_step + 1, per_step):
        step = examples[start : start + per_step]
        steps.append(
            [step[m : m + variant.micro_batch] for m in range(0, per_step, variant.micro_batch)]
        )
    return steps


def collate(
    micro: list[dict[str, list[int]]], variant: Variant, max_len: int, device: str
) -> dict[str, Any]:
    """Tensors for one forward. Padded: right padding with the pad id, labels -100, attention
    mask 0 (DataCollatorForSeq2Seq with pad_to_multiple_of=8, or the seed's max_length).
    Packed: transformers' DataCollatorWithFlattening (no attention mask: position_ids)."""
    import torch
    from transformers import DataCollatorWithFlattening

    if variant.padding == "none":
        batch = DataCollatorWithFlattening(return_tensors="pt")(micro)
        return {k: v.to(device) for k, v in batch.items()}
    longest = max(len(e["input_ids"]) for e in micro)
    width = max_len if variant.padding == "max" else 8 * math.ceil(longest / 8)
    pad = SPECIAL_IDS["pad_token_id"]
    rows = [(e["input_ids"], e["labels"], width - len(e["input_ids"])) for e in micro]
    return {
        "input_ids": torch.tensor([ids + [pad] * n for ids, _, n in rows], device=device),
        "attention_mask": torch.tensor(
            [[1] * len(ids) + [0] * n for ids, _, n in rows], device=device
        ),
        "labels": torch.tensor([lab + [IGNORE_INDEX] * n for _, lab, n in rows], device=device),
    }


def computed_tokens(batch: dict[str, Any]) -> int:
    return int(batch["input_ids"].numel())


# ---------------------------------------------------------------------------- model


def build_model(
    base_dir: Path, variant: Variant, settings: TrainSettings, device: str, ctx=None
) -> Any:
    """kotune's path (kotune.inference.loading): load_model (NF4 or the compute dtype),
    prepare_for_lora, Liger's kernels where the family has them, LoRA on every linear layer,
    compile per block. engine unsloth: Unsloth's FastLanguageModel with the same LoRA settings."""
    import torch

    from kotune.inference.loading import add_lora, find_lora_targets, load_model, prepare_for_lora
    from kotune.training.speedups import (
        LIGER_FAMILIES,
        check_liger_kernels,
        compile_blocks,
        liger_kernels,
    )

    dropout = settings.lora_dropout if variant.dropout is None else variant.dropout
    if variant.engine == "unsloth":
        from unsloth_variant import build_unsloth_model

        from kotune.modeling.memory import linear_shapes

        lora = {"r": settings.lora_r, "alpha": settings.lora_alpha, "dropout": dropout}
        targets = sorted(linear_shapes(ctx["family"], ctx["shape"]))
        return build_unsloth_model(
            base_dir, variant.quantization, variant.dtype, ctx["max_len"], lora, targets
        )
    model = load_model(
        str(base_dir),
        None,
        quantization=variant.quantization,
        compute_dtype=variant.dtype,
        device=device,
        attention=variant.attention,
        double_quant=True,
    )
    # lean: the two vocabulary-sized matrices stay in the compute dtype (kotune's default)
    model = prepare_for_lora(
        model,
        quantized=variant.quantization == "nf4",
        compute_dtype=variant.dtype,
        gradient_checkpointing=variant.gradient_checkpointing,
        lean_vocab=variant.lean,
    )
    if variant.liger and model.config.model_type in LIGER_FAMILIES and device == "cuda":
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        # what the Trainer's use_liger_kernel does with kotune's liger_kernel_config: with
        # compiled blocks only the fused linear cross-entropy (round 3: RMSNorm inside a
        # compiled block stopped dynamo)
        kernels = liger_kernels(variant.compile)
        check_liger_kernels(model.config.model_type, kernels)
        _apply_liger_kernel_to_instance(model=model, **kernels)
    model.config.use_cache = False  # as the Trainer sets it (TrainingArguments.use_cache=False)
    torch.manual_seed(0)  # the same LoRA A in every variant (B starts at zero)
    model = add_lora(model, settings.lora_r, settings.lora_alpha, dropout, find_lora_targets(model))
    if variant.compile:
        compile_blocks(model)  # kotune's own (gpu.compile)
    return model


def make_optimizer(params: list[Any], lr: float) -> Any:
    """optim=paged_adamw_8bit as the Trainer builds it (betas 0.9/0.999, eps 1e-8, no decay)."""
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW8bit(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def train_step(model, optimizer, scaler, batches, items, dtype, device, max_grad_norm) -> Any:
    """One optimizer step over its micro-batches: the Trainer's loss scaling and clipping."""
    import torch

    total = 0.0
    for batch in batches:
        with torch.autocast(device_type=device, dtype=dtype):
            loss = model(**batch, num_items_in_batch=items).loss
        (scaler.scale(loss) if scaler else loss).backward()
        total += loss.detach()
    if scaler:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def token_losses(
    model: Any, examples: list[dict], variant: Variant, how: str, max_len: int, device: str
) -> tuple[Any, Any]:
    """Per-token losses (nats) and logits (fp32, on the CPU) at the label positions of
    `examples`, in order, before any update, in eval mode (no dropout). how: solo (one at a time,
    no padding), own (the variant's batching), leaky (packed with positions running on: every
    example attends to the ones before it — the negative control)."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, variant.dtype)
    size = 1 if how == "solo" else variant.micro_batch
    groups = [examples[m : m + size] for m in range(0, len(examples), size)]
    losses, logits_kept = [], []
    with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype):
        for group in groups:
            if how == "solo":
                batch = {"input_ids": torch.tensor([group[0]["input_ids"]], device=device)}
            else:
                batch = collate(group, variant, max_len, device)
                batch.pop("labels")
                if how == "leaky":
                    width = batch["input_ids"].shape[1]
                    batch["position_ids"] = torch.arange(width, device=device)[None]
            logits = model(**batch).logits
            packed = "position_ids" in batch
            offset = 0
            for row, example in enumerate(group):
                n = len(example["input_ids"])
                r, start = (0, offset) if packed else (row, 0)
                labels = torch.tensor(example["labels"][1:], device=device)
                keep = labels != IGNORE_INDEX
                scores = logits[r, start : start + n - 1][keep].float()
                losses.append(F.cross_entropy(scores, labels[keep], reduction="none").cpu())
                logits_kept.append(scores.cpu())
                offset += n
    return torch.cat(losses), torch.cat(logits_kept)


def loss_gap(a: tuple[Any, Any], b: tuple[Any, Any]) -> dict[str, float]:
    """How far per-token results `a` are from `b`: losses (nats) and logits (relative L2 per
    token, the more sensitive: near-uniform random-weight predictions damp loss changes)."""
    (loss_a, logits_a), (loss_b, logits_b) = a, b
    diff = (loss_a - loss_b).abs()
    rel = (logits_a - logits_b).norm(dim=-1) / logits_b.norm(dim=-1)
    return {
        "loss_mean_abs": round(float(diff.mean()), 7),
        "loss_max_abs": round(float(diff.max()), 7),
        "loss_mean_delta": round(float(loss_a.mean() - loss_b.mean()), 7),
        "logits_rel": round(float(rel.mean()), 7),
        "logits_rel_max": round(float(rel.max()), 7),
    }


def check_losses(model: Any, ctx: dict[str, Any], variant: Variant) -> dict[str, Any]:
    """The loss check before any update: the variant's batching against the same examples one
    at a time, the first variant of this model, and (packed) the cross-attention control."""
    model.eval()
    check, max_len, device = ctx["check"], ctx["max_len"], ctx["device"]
    solo = token_losses(model, check, variant, "solo", max_len, device)
    own = token_losses(model, check, variant, "own", max_len, device)
    ctx.setdefault("reference", (variant.name, solo))
    found = {
        "loss_solo_mean": round(float(solo[0].mean()), 4),
        "check_own": loss_gap(own, solo),
        "reference_variant": ctx["reference"][0],
        "check_ref": loss_gap(solo, ctx["reference"][1]),
    }
    if variant.padding == "none":
        leaky = token_losses(model, check, variant, "leaky", max_len, device)
        found["check_leaky"] = loss_gap(leaky, solo)
    return found


# ---------------------------------------------------------------------------- FLOPs


def step_flops(examples: list[dict], family: str, shape: Any, lora_params: int) -> float:
    """Model FLOPs of a step's real tokens (padding is waste, not counted; nor is the recompute
    of gradient checkpointing): per token 4·N_matmul (frozen weights: forward 2·N + input
    gradient 2·N, no weight gradient) + 6·N_lora (forward, input and weight gradient); per
    example and layer 6·d·L(L+1) for causal attention (QKᵀ and AV over L(L+1)/2 pairs: forward
    2 matmuls, backward 4)."""
    from kotune.modeling.shapes import parameter_count

    matmul = parameter_count(family, shape)["linear"] + shape.vocab_size * shape.hidden_size
    per_token = 4 * matmul + 6 * lora_params
    flops = 0.0
    for example in examples:
        n = len(example["input_ids"])
        flops += per_token * n + shape.num_layers * 6 * shape.hidden_size * n * (n + 1)
    return flops


def memory_estimate(family, shape, variant: Variant, max_len: int, settings) -> float | None:
    """kotune's own estimate (GiB the card needs) for this variant's worst micro-batch."""
    from kotune.config import GpuConfig
    from kotune.modeling.memory import estimate_training_memory

    gpu = GpuConfig(
        name=variant.name,
        device="cuda",
        quantization=variant.quantization,
        double_quant=True,
        compute_dtype=variant.dtype,
        micro_batch_size=variant.micro_batch,
        gradient_checkpointing=variant.gradient_checkpointing,
        optimizer="paged_adamw_8bit",
    )
    estimate = estimate_training_memory(family, shape, gpu, max_len, settings.lora_r, ["auto"])
    return round(estimate.card, 2)


def profile_step(step: Any, device: str, seconds_per_step: float) -> dict[str, Any]:
    """One more optimizer step under torch.profiler: how much of a step the GPU is busy
    (kernel time ÷ the unprofiled step time: far below 1 means Python and kernel launches, not
    the GPU, set the pace), how many kernels it launches, and the kernels that take the time."""
    from collections import Counter

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = prof.events()
    kernels = [  # not the user annotations (optimizer.step) that the profiler also puts there
        e for e in events if e.device_type == DeviceType.CUDA and not e.is_user_annotation
    ]
    busy_us: Counter[str] = Counter()
    for kernel in kernels:
        busy_us[kernel.name[:90]] += kernel.time_range.elapsed_us()
    busy_s = sum(busy_us.values()) / 1e6
    return {
        "kernels": len(kernels),
        "kernel_seconds": round(busy_s, 4),
        "gpu_busy_share": round(busy_s / seconds_per_step, 3) if kernels else None,
        "top_kernels": [
            {"name": name, "seconds": round(us / 1e6, 4), "share": round(us / 1e6 / busy_s, 3)}
            for name, us in busy_us.most_common(8)
        ],
    }


# ---------------------------------------------------------------------------- one variant


def run_variant(ctx: dict[str, Any], variant: Variant) -> dict[str, Any]:
    import torch

    device, settings, max_len = ctx["device"], ctx["settings"], ctx["max_len"]
    dtype = getattr(torch, variant.dtype)
    per_step = variant.examples_per_step or settings.effective_batch_size
    result: dict[str, Any] = {"model": ctx["model"], "variant": variant.name}
    result["settings"] = asdict(variant)
    result["allocator"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    result["accumulation"] = per_step // variant.micro_batch
    result["max_len"] = max_len

    reset_peak(device)
    start = time.perf_counter()
    model = build_model(ctx["base_dir"], variant, settings, device, ctx)
    if device == "cuda":  # after load_model, which turns it off as kotune runs
        torch.backends.cuda.enable_cudnn_sdp(variant.cudnn_attention)
    synchronize(device)
    result["load_s"] = round(time.perf_counter() - start, 1)
    result["load_peak_gib"] = peak_gib(device)
    lora_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result["trainable_params"] = lora_params

    result.update(check_losses(model, ctx, variant))
    model.train()

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, settings.lr)
    scaler = torch.amp.GradScaler(device) if variant.dtype == "float16" else None
    mega = max(1, min(ctx["train_examples"] // (per_step * 4), 50))  # as for the whole split

    def run_steps(examples: list[dict]) -> dict[str, Any]:
        steps = arrange(examples, variant, per_step, mega)
        seconds, losses, computed = [], [], 0
        for step in steps:
            items = torch.tensor(sum(predicted_tokens(e) for mb in step for e in mb), device=device)
            batches = [collate(mb, variant, max_len, device) for mb in step]
            computed += sum(computed_tokens(b) for b in batches)
            synchronize(device)
            begin = time.perf_counter()
            losses.append(
                train_step(
                    model, optimizer, scaler, batches, items, dtype, device, settings.max_grad_norm
                )
            )
            synchronize(device)
            seconds.append(time.perf_counter() - begin)
        flat = [e for step in steps for mb in step for e in mb]
        return {
            "steps": len(steps),
            "seconds": seconds,
            "losses": [round(float(x), 4) for x in losses],
            "real_tokens": sum(len(e["input_ids"]) for e in flat),
            "label_tokens": sum(predicted_tokens(e) for e in flat),
            "computed_tokens": computed,
            "examples": flat,
        }

    # warm-up, untimed: first the worst case (every example max_seq_len long), then ordinary steps
    reset_peak(device)
    warm_begin = time.perf_counter()  # compilation (compile variants) happens in here
    run_steps(ctx["worst"][:per_step])
    result["worst_peak_gib"] = peak_gib(device)
    if device == "cuda":
        free_b, total_b = torch.cuda.mem_get_info()
        result["outside_torch_gib"] = round(
            (total_b - free_b - torch.cuda.memory_reserved()) / GIB, 2
        )
        # give the worst case's cached blocks back: the timed peak "reserved" is then what
        # ordinary steps hold (the warm-up steps below are ordinary ones)
        torch.cuda.empty_cache()
    if ctx["warm"]:
        run_steps(ctx["warm"])
    result["warmup_s"] = round(time.perf_counter() - warm_begin, 1)

    reset_peak(device)
    timed = run_steps(ctx["timed"])
    result["timed_peak_gib"] = peak_gib(device)
    total_s = sum(timed["seconds"])
    result.update(
        steps=timed["steps"],
        step_seconds=[round(s, 4) for s in timed["seconds"]],
        seconds_per_step=round(total_s / timed["steps"], 4),
        median_step_seconds=round(sorted(timed["seconds"])[len(timed["seconds"]) // 2], 4),
        real_tokens=timed["real_tokens"],
        label_tokens=timed["label_tokens"],
        computed_tokens=timed["computed_tokens"],
        padding_share=round(1 - timed["real_tokens"] / timed["computed_tokens"], 4),
        real_tokens_per_s=round(timed["real_tokens"] / total_s, 1),
        label_tokens_per_s=round(timed["label_tokens"] / total_s, 1),
        step_losses=timed["losses"],
    )
    flops = step_flops(timed["examples"], ctx["family"], ctx["shape"], lora_params)
    result["model_tflops_per_s"] = round(flops / total_s / 1e12, 2)
    result["mfu"] = round(flops / total_s / (ctx["ceiling_tflops"] * 1e12), 4)
    if ctx["profile"]:
        result["profile"] = profile_step(
            lambda: run_steps(ctx["timed"][:per_step]), device, result["seconds_per_step"]
        )
    result["estimate_card_gib"] = memory_estimate(
        ctx["family"], ctx["shape"], variant, max_len, settings
    )
    model = optimizer = scaler = params = None  # the closure holds them too: drop both
    free(device)
    return result


# ---------------------------------------------------------------------------- the run


def dtype_label(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]


def gap_cell(gap: dict[str, float]) -> str:
    return f"{gap['loss_mean_abs']:.3f}/{gap['logits_rel']:.3f}"


def summarize(results: list[dict], facts: dict, ceilings: dict) -> str:
    seed_rate: dict[str, float] = {}
    for r in results:  # seed-fp16, or seed-bf16 where fp16 failed
        if r["variant"].startswith("seed-") and "real_tokens_per_s" in r:
            seed_rate.setdefault(r["model"], r["real_tokens_per_s"])
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"model": r["model"], "variant": r["variant"], "dtype": r["error"][:80]})
            continue
        s, t, w = r["settings"], r["timed_peak_gib"], r["worst_peak_gib"]
        rate = r["real_tokens_per_s"]
        checkpointing = " GC" if s["gradient_checkpointing"] else ""
        rows.append(
            {
                "model": r["model"],
                "variant": r["variant"],
                "dtype": dtype_label(s["dtype"]),
                "batch": f"{s['micro_batch']}×{r['accumulation']}{checkpointing}",
                "pad": f"{100 * r['padding_share']:.0f}%",
                "tok/s": rate,
                "label tok/s": r["label_tokens_per_s"],
                "×seed": rate / seed_rate[r["model"]] if r["model"] in seed_rate else None,
                "s/step": r["seconds_per_step"],
                "slowest": max(r["step_seconds"]),
                "MFU": f"{100 * r['mfu']:.1f}%",
                "peak": f"{t['allocated']}/{t['reserved']}" if t["allocated"] is not None else None,
                "worst": f"{w['allocated']}/{w['reserved']}"
                if w["allocated"] is not None
                else None,
                "est": r["estimate_card_gib"],
                "own": gap_cell(r["check_own"]),
                "ref": gap_cell(r["check_ref"]),
                "load s": r["load_s"],
            }
        )
    columns = [
        ("model", "model"), ("variant", "variant"), ("dtype", "dtype"), ("batch", "micro×accum"),
        ("pad", "padding"), ("tok/s", "real tok/s"), ("label tok/s", "label tok/s"),
        ("×seed", "× seed"), ("s/step", "s/step"), ("slowest", "slowest step s"), ("MFU", "MFU"),
        ("peak", "peak alloc/res GiB"), ("worst", "worst-case alloc/res GiB"),
        ("est", "kotune est. GiB"), ("own", "Δ own loss/logits"), ("ref", "Δ ref loss/logits"),
        ("load s", "load s"),
    ]  # fmt: skip
    lines = [
        f"device: {facts.get('gpu') or 'cpu'}; torch {facts['torch']}, transformers "
        f"{facts['transformers']}, peft {facts.get('peft')}, bitsandbytes "
        f"{facts.get('bitsandbytes')}",
        f"matmul ceiling (measured, median): bf16 {ceilings['bfloat16']:.3g} TFLOP/s, fp16 "
        f"{ceilings['float16']:.3g} TFLOP/s; MFU is against bf16",
        "",
        markdown_table(rows, columns),
        "",
        "real tok/s: non-padding input tokens (prompt + answer) per second of timed steps; label "
        "tok/s: answer tokens the loss is taken on; padding: share of computed tokens that are "
        "padding. peak: over the timed steps; worst-case: one step with every example "
        "max_seq_len long (torch's counters; the card also holds what is outside torch). "
        "Δ own: the variant's batching vs the same examples one at a time (same precision); "
        "Δ ref: vs the model's first variant; each as mean |Δ per-token loss| in nats / mean "
        f"relative L2 Δ of the logits. Tolerances: own {TOL_OWN['loss']}/{TOL_OWN['logits']}, "
        f"ref {TOL_REF['loss']}/{TOL_REF['logits']}.",
    ]
    lines += checks(results)
    lines += profiles(results)
    return "\n".join(lines)


def profiles(results: list[dict]) -> list[str]:
    """The --profile findings: GPU busy share of a step, kernels launched, the costliest ones."""
    lines = []
    for r in results:
        found = r.get("profile")
        if not found or found["gpu_busy_share"] is None:
            continue
        top = "; ".join(
            f"{k['name'][:60]} {100 * k['share']:.0f}%" for k in found["top_kernels"][:4]
        )
        lines.append(
            f"- {r['model']}/{r['variant']} profile: GPU busy {100 * found['gpu_busy_share']:.0f}% "
            f"of a {r['seconds_per_step']} s step ({found['kernel_seconds']} s in "
            f"{found['kernels']} kernels); top: {top}"
        )
    return lines


def within(gap: dict[str, float], tolerance: dict[str, float]) -> bool:
    return gap["loss_mean_abs"] <= tolerance["loss"] and gap["logits_rel"] <= tolerance["logits"]


def checks(results: list[dict]) -> list[str]:
    """Per model: same tokens, losses within tolerance, the negative control, the T4 verdict."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in results):
        ok = [r for r in results if r["model"] == model and "error" not in r]
        if not ok:
            continue
        same_math = [r for r in ok if not r["settings"]["examples_per_step"]]
        totals = sorted({(r["real_tokens"], r["label_tokens"]) for r in same_math})
        listed = ", ".join(f"{a} real / {b} label tokens" for a, b in totals)
        lines.append(
            f"- {model}: same examples in every variant: {'yes' if len(totals) == 1 else 'NO'} "
            f"({listed})"
        )
        bad = [
            r["variant"]
            for r in ok
            if not within(r["check_own"], TOL_OWN) or not within(r["check_ref"], TOL_REF)
        ]
        lines.append(
            f"- {model}: loss before training {ok[0]['loss_solo_mean']} nats (random weights); "
            f"within tolerance: {'all' if not bad else 'NOT ' + ', '.join(bad)}"
        )
        for r in ok:
            if "check_leaky" in r:
                leak = r["check_leaky"]
                caught = not within(leak, TOL_OWN)
                lines.append(
                    f"- {model}/{r['variant']}: negative control (packed with cross-example "
                    f"attention) Δ {gap_cell(leak)} vs own {gap_cell(r['check_own'])}: a masking "
                    f"error {'would' if caught else 'would NOT'} fail the check"
                )
            if r["variant"].startswith("t4") and r["worst_peak_gib"]["reserved"] is not None:
                outside = r.get("outside_torch_gib", 0.0)
                card = r["worst_peak_gib"]["reserved"] + outside
                lines.append(
                    f"- {model}/{r['variant']}: worst case (micro-batch 4 × {r['max_len']} tokens, "
                    f"fp16, checkpointing): reserved {r['worst_peak_gib']['reserved']} GiB + {outside} "
                    f"outside torch = {card:.2f} GiB: {'fits' if card <= 15 else 'does NOT fit'} "
                    f"in 15 GiB (kotune's estimate {r['estimate_card_gib']} GiB; an H100's CUDA "
                    "context is larger than a T4's)"
                )
    return lines


def troubled(result: dict[str, Any]) -> bool:
    """A failed run or a non-finite loss (fp16 overflow)."""
    return "error" in result or not all(math.isfinite(x) for x in result["step_losses"])


def model_context(
    args: argparse.Namespace, model_name: str, device: str, ceiling: float
) -> dict[str, Any]:
    """What every variant of one model shares: the random base, the examples (drawn, seeded)."""
    settings = train_settings(args.persona)
    scale = 1 / 8 if args.smoke else 1.0  # smoke: 512 → 64 tokens at most
    max_len = round(settings.max_seq_len * scale)
    pairs, train_examples = length_pairs(args.persona, scale)
    family, shape = model_spec(model_name, args.smoke)
    base_dir, build_s = random_base(family, shape, args.scratch, device)
    per_step = settings.effective_batch_size
    answer = round(128 * scale)
    return {
        "device": device, "settings": settings, "max_len": max_len, "model": model_name,
        "family": family, "shape": shape, "base_dir": base_dir, "build_s": build_s,
        "train_examples": train_examples, "ceiling_tflops": ceiling, "profile": args.profile,
        "check": draw_examples(pairs, CHECK_EXAMPLES, shape.vocab_size, seed=1),
        "worst": [example_of(max_len - answer, answer, shape.vocab_size, random.Random(i)) for i in range(16)],
        "warm": draw_examples(pairs, max(0, args.warmup - 1) * per_step, shape.vocab_size, seed=2),
        "timed": draw_examples(pairs, args.steps * per_step, shape.vocab_size, seed=3),
    }  # fmt: skip


def reference_file(args: argparse.Namespace, model_name: str) -> Path:
    return args.scratch / f"reference-{model_name}.pt"


def run_child(args: argparse.Namespace) -> None:
    """--child VARIANT: one variant of one model in this process alone, so that no variant
    inherits another's warm caches (cuDNN attention plans are built per shape and kept by the
    process: the variant that ran second on the same shapes looked up to 5× faster)."""
    if all_variants()[args.child].engine == "unsloth":
        from unsloth_variant import import_unsloth

        import_unsloth()  # before transformers: it patches it on import
    import torch

    device = begin_run(args.smoke, args.out)
    ctx = model_context(args, args.models, device, args.ceiling)
    reference = reference_file(args, args.models)
    if reference.is_file():
        ctx["reference"] = torch.load(reference)
    result = run_variant(ctx, all_variants()[args.child])
    if not reference.is_file():
        torch.save(ctx["reference"], reference)
    (args.out / "child.json").write_text(json.dumps(result))


def variant_in_child(args: argparse.Namespace, model_name: str, name: str, ceiling: float) -> dict:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, __file__, "--child", name, "--models", model_name, "--out", folder,
            "--ceiling", str(ceiling), "--persona", args.persona, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--scratch", str(args.scratch),
        ] + ["--smoke"] * args.smoke + ["--profile"] * args.profile  # fmt: skip
        env = dict(os.environ)
        if all_variants()[name].expandable_segments:
            env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=args.variant_timeout_s
            )
        except subprocess.TimeoutExpired:
            error = f"timed out after {args.variant_timeout_s:.0f} s (--variant-timeout-s)"
            return {"model": model_name, "variant": name, "error": error}
        found = Path(folder) / "child.json"
        if done.returncode == 0 and found.is_file():
            return json.loads(found.read_text())
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raised = [line for line in lines if "Error" in line or "Exception" in line]
        tail = list(dict.fromkeys(raised[-1:] + lines[-2:]))  # the exception first, then the end
        with open(args.out / "errors.log", "a") as log:  # one file: the device returns few
            log.write(f"== {model_name}/{name}\n" + "\n".join(lines[-200:]) + "\n")
        return {"model": model_name, "variant": name, "error": " | ".join(tail)[:700]}


def run_plan(
    args: argparse.Namespace, variants: dict[str, Variant], chosen: list[str]
) -> list[tuple[str, str]]:
    """(model, variant) pairs in the order they run: --plan (round3: ROUND3_PLAN, most important
    first, so that a run cut off by its time budget still answers the main questions), else every
    chosen variant of every --models model (a default variant only on its `only_models`)."""
    if args.plan:
        text = ",".join(f"{m}:{v}" for m, v in ROUND3_PLAN) if args.plan == "round3" else args.plan
        pairs = [tuple(item.split(":", 1)) for item in text.split(",")]
        wrong = [f"{m}:{v}" for m, v in pairs if m not in MODELS or v not in variants]
        if wrong:
            raise SystemExit(f"unknown plan items {wrong}; models {list(MODELS)}")
        return [(m, v) for m, v in pairs]
    return [
        (model, name)
        for model in args.models.split(",")
        for name in chosen
        if args.variants or not variants[name].only_models or model in variants[name].only_models
    ]


def main(args: argparse.Namespace) -> None:
    device = begin_run(args.smoke, args.out)
    started = time.perf_counter()
    settings = train_settings(args.persona)
    variants = all_variants()
    chosen = args.variants.split(",") if args.variants else DEFAULT_VARIANTS
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(variants)}")
    report_plan = run_plan(args, variants, chosen)  # fails early on an unknown name
    facts = device_facts(device)
    n = 256 if args.smoke else 8192
    ceilings = {
        d: matmul_tflops(device, d, n, runs=5 if args.smoke else 20)
        for d in ("bfloat16", "float16")
    }
    print(f"ceilings {ceilings} ({time.perf_counter() - started:.0f} s)", flush=True)

    results: list[dict] = []
    max_len = round(settings.max_seq_len * (1 / 8 if args.smoke else 1.0))
    report = {"device": facts, "matmul_tflops": ceilings, "settings": asdict(settings),
              "persona": args.persona, "max_len": max_len, "smoke": args.smoke,
              "isolated": args.isolate, "plan": report_plan, "results": results}  # fmt: skip
    queue = run_plan(args, variants, chosen)
    last_use = {model: i for i, (model, _) in enumerate(queue)}  # a base is dropped after it
    contexts: dict[str, dict] = {}
    durations = [60.0]
    done = 0
    while queue:
        model_name, name = queue.pop(0)
        done += 1
        if time.perf_counter() - started + max(durations) > args.budget_s:
            results.append({"model": model_name, "variant": name, "error": "skipped: time budget"})
            continue
        if model_name not in contexts:
            reference_file(args, model_name).unlink(missing_ok=True)
            contexts[model_name] = model_context(args, model_name, device, ceilings["bfloat16"])
            print(
                f"{model_name}: random base in {contexts[model_name]['build_s']:.0f} s", flush=True
            )
        ctx = contexts[model_name]
        begin = time.perf_counter()
        if args.isolate:
            result = variant_in_child(args, model_name, name, ceilings["bfloat16"])
        else:
            try:
                result = run_variant(ctx, variants[name])
            except Exception as error:  # one failing variant (OOM, compile) must not end it
                message = f"{type(error).__name__}: {error}"[:500]
                result = {"model": model_name, "variant": name, "error": message}
            free(device)  # here, not in the except: the traceback holds the failed model
        result["wall_s"] = round(time.perf_counter() - begin, 1)
        durations.append(result["wall_s"])
        results.append(result)
        if name == "seed-fp16" and troubled(result) and "seed-bf16" not in chosen:
            queue.insert(0, (model_name, "seed-bf16"))  # the seed's recipe once more, in bf16
        brief = {
            k: result.get(k)
            for k in ("real_tokens_per_s", "seconds_per_step", "mfu", "timed_peak_gib", "error")
        }
        print(f"{model_name}/{name}: {brief} ({result['wall_s']} s)", flush=True)
        (args.out / "train_speed.json").write_text(json.dumps(report, indent=1))
        if (
            args.drop_bases
            and last_use[model_name] < done
            and not any(m == model_name for m, _ in queue)
        ):
            shutil.rmtree(ctx["base_dir"], ignore_errors=True)  # the disk holds ~2 bases at once
    report["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "train_speed.json").write_text(json.dumps(report, indent=1))
    table = summarize(results, facts, ceilings)
    (args.out / "train_speed.md").write_text(table + "\n")
    print(f"\n## train_speed ({report['wall_s']:.0f} s)\n\n{table}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train_speed.json/.md")
    parser.add_argument(
        "--models", default="koalpaca-5.8b,qwen2.5-7b", help=f"comma list of {list(MODELS)}"
    )
    parser.add_argument(
        "--variants",
        default="",
        help=f"comma list of {list(all_variants())} (default {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per variant")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps (the first: worst case)"
    )
    parser.add_argument("--persona", default="mencius", help="whose token lengths to draw")
    parser.add_argument(
        "--scratch", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "kotune-bench"
    )
    parser.add_argument(
        "--budget-s", type=float, default=1200, help="skip what would run past this"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one more step per variant (kernel time)"
    )
    parser.add_argument(
        "--plan",
        default="",
        help="model:variant,… in this order, or round3 (ROUND3_PLAN); overrides --models/--variants",
    )
    parser.add_argument(
        "--variant-timeout-s", type=float, default=None, help="stop a variant's process after this"
    )
    parser.add_argument(
        "--drop-bases", action="store_true", help="delete a random base after its last variant"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, 2 + 2 steps")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each variant in a fresh process (default): no variant inherits another's caches",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one variant, from the parent
    parser.add_argument("--ceiling", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 2)
    run_child(args) if args.child else main(args)
