"""Will it fit? A memory estimate for base model × GPU profile × sequence length, checked before
anything is loaded, and the one-line advice when CUDA runs out of memory anyway.

The estimate counts what QLoRA training keeps on one card (bytes):

- the frozen linear layers in 4-bit NF4: 4 bits a weight plus the block constants (an 8-bit
  absmax per 64 weights and an fp32 one per 256 blocks with double quantisation, else fp32 per 64);
- embeddings and an untied LM head in the compute dtype (kotune undoes peft's fp32 upcast of
  them), the norms in fp32;
- LoRA weights and their gradients in fp32, and the optimizer's two moments (8-bit: 2 bytes a
  weight; AdamW: 8);
- activations per token and layer, `ACT_HIDDEN` × hidden + `ACT_FFN` × ffn elements in the
  compute dtype (SDPA keeps no seq × seq scores); with gradient checkpointing only each layer's
  input is kept, plus one layer recomputed during the backward pass;
- the logits: fp32 logits, the saved log-softmax and their gradient (12 bytes a vocabulary entry
  a token), the largest single term for 150k-vocabulary models;
- the allocator's slack (`RESERVED_OVER_ALLOCATED`) and the CUDA context, which torch does not count.

Under FSDP (`gpu.distributed: fsdp`) each card holds 1/N of the weights, LoRA weights, gradients
and optimizer state, plus the `FSDP_GATHERED_LAYERS` decoder layers that are unsharded at a time
(the one computing and the one prefetched); activations and logits are per card as without it.

The per-token constants were checked against peaks measured with torch.cuda.max_memory_* on an
H100 (bench/gpu_profiles.py; the README's hardware table shows both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotune.config import Config, GpuConfig, ModelShape
from kotune.errors import KotuneError
from kotune.modeling.shapes import parameter_count, scratch_shape

GIB = 1024**3
ACT_HIDDEN = 18  # hidden-sized activations kept per token and layer (norms, q/k/v/o, LoRA inputs)
ACT_FFN = {"gpt_neox": 3, "llama": 5, "qwen2": 5}  # ffn-sized ones (up, act, gate, product, …)
LOGIT_BYTES = 12  # fp32 logits + saved log-softmax + their gradient, per vocabulary entry
RESERVED_OVER_ALLOCATED = 1.15  # the caching allocator holds more than it hands out
CUDA_CONTEXT_GIB = 0.6  # driver, kernels and cuBLAS workspace: outside torch's counters
USABLE_SHARE = 0.97  # of a card's memory: the rest is the driver's and the display's
FSDP_GATHERED_LAYERS = 2  # BACKWARD_PRE prefetch: the current layer and the next, unsharded


def _element_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def linear_shapes(family: str, shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer name in one transformer block."""
    h, f = shape.hidden_size, shape.intermediate_size
    kv = shape.num_kv_heads * (h // shape.num_heads)
    if family == "gpt_neox":
        return {
            "query_key_value": (h, 3 * h),
            "dense": (h, h),
            "dense_h_to_4h": (h, f),
            "dense_4h_to_h": (f, h),
        }
    return {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, f),
        "up_proj": (h, f),
        "down_proj": (f, h),
    }


def lora_parameters(family: str, shape: ModelShape, r: int, targets: list[str]) -> int:
    """LoRA weights: r × (in + out) for every targeted linear layer of every block."""
    layers = linear_shapes(family, shape)
    chosen = layers if targets == ["auto"] else {k: v for k, v in layers.items() if k in targets}
    return shape.num_layers * sum(r * (i + o) for i, o in chosen.values())


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB per part of one training process's peak, and the verdict for the card."""

    weights: float
    lora_and_optimizer: float
    activations: float
    logits: float
    reserved: float  # what torch's allocator is expected to hold at the peak
    card: float  # reserved + the CUDA context: what the card must have
    budget: float  # the profile's usable memory (0: no fixed budget)

    @property
    def fits(self) -> bool:
        return self.budget == 0 or self.card <= self.budget

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.__dict__.items()}


def estimate_training_memory(
    family: str,
    shape: ModelShape,
    gpu: GpuConfig,
    seq_len: int,
    lora_r: int,
    lora_targets: list[str],
) -> MemoryEstimate:
    """The expected peak of one training process for `micro_batch_size` × `seq_len` tokens."""
    params = parameter_count(family, shape)
    dtype_bytes = _element_bytes(gpu.compute_dtype)
    fsdp = gpu.distributed == "fsdp"
    # FSDP stores every weight in one float type (inference.loading.storage_dtype): fp32
    # under fp16 mixed precision, else the compute dtype; no fp32 upcast of the norms
    stored_bytes = 4 if fsdp and gpu.compute_dtype == "float16" else dtype_bytes
    if gpu.quantization == "nf4":
        bits = 4 + (8 / 64 + 32 / (64 * 256) if gpu.double_quant else 32 / 64)
        linear = params["linear"] * bits / 8
        upcast = stored_bytes if fsdp else 4  # prepare_model_for_kbit_training: norms in fp32
    else:
        linear = params["linear"] * dtype_bytes
        upcast = dtype_bytes
    # embeddings and head stay in the compute dtype (training.qlora.keep_vocab_matrices_in)
    weights = linear + params["embedding"] * stored_bytes + params["norm"] * upcast

    lora = lora_parameters(family, shape, lora_r, lora_targets)
    moments = 2 if "8bit" in gpu.optimizer else 8
    lora_and_optimizer = lora * (4 + 4 + moments)
    if fsdp:  # each card keeps its 1/N shard, and gathers a layer or two at a time
        shards = gpu.num_processes * gpu.num_machines
        gathered = FSDP_GATHERED_LAYERS * (linear + lora * 4) / shape.num_layers
        weights = weights / shards + gathered
        lora_and_optimizer /= shards

    tokens = gpu.micro_batch_size * seq_len
    per_layer = tokens * (
        ACT_HIDDEN * shape.hidden_size + ACT_FFN[family] * shape.intermediate_size
    )
    if gpu.gradient_checkpointing:
        kept = shape.num_layers * tokens * shape.hidden_size + 2 * per_layer
    else:
        kept = shape.num_layers * per_layer
    activations = kept * dtype_bytes
    logits = tokens * shape.vocab_size * LOGIT_BYTES

    allocated = weights + lora_and_optimizer + activations + logits
    reserved = allocated * RESERVED_OVER_ALLOCATED / GIB
    return MemoryEstimate(
        weights=weights / GIB,
        lora_and_optimizer=lora_and_optimizer / GIB,
        activations=activations / GIB,
        logits=logits / GIB,
        reserved=reserved,
        card=reserved + CUDA_CONTEXT_GIB,
        budget=gpu.memory_gib * USABLE_SHARE,
    )


def estimate_for(cfg: Config, shape: ModelShape | None = None) -> MemoryEstimate:
    """The estimate for a composed config; `shape` defaults to the model yaml's own."""
    shape = shape or declared_shape(cfg)
    return estimate_training_memory(
        cfg.model.family,
        shape,
        cfg.gpu,
        cfg.max_seq_len,
        cfg.train.lora.r,
        cfg.model.lora_targets,
    )


def declared_shape(cfg: Config) -> ModelShape:
    """The shape stated in the model's yaml (for scratch models: built from its recipe)."""
    model = cfg.model
    if model.shape is not None:
        return model.shape
    if model.scratch is not None:
        return scratch_shape(model.scratch)
    raise KotuneError(f"model {model.name}: no shape known (add model.shape to its yaml)")


def suggestions(cfg: Config, estimate: MemoryEstimate) -> str:
    gpu = cfg.gpu
    tips = []
    if gpu.micro_batch_size > 1:
        tips.append(f"gpu.micro_batch_size={max(1, gpu.micro_batch_size // 2)}")
    if not gpu.gradient_checkpointing:
        tips.append("gpu.gradient_checkpointing=true")
    if cfg.max_seq_len > 512:
        tips.append(f"gpu.max_seq_len={cfg.max_seq_len // 2}")
    if gpu.quantization != "nf4":
        tips.append("gpu.quantization=nf4")
    tips.append("a larger gpu profile")
    return ", ".join(tips)


def check_fits(cfg: Config, base_dir: Path) -> dict[str, float] | None:
    """Raise KotuneError with a suggestion when the estimate exceeds the profile's memory;
    returns the estimate (GiB by part), or None where the profile has no fixed budget."""
    if cfg.gpu.memory_gib == 0:
        return None
    estimate = estimate_for(cfg, base_shape(cfg, base_dir))
    if not estimate.fits:
        raise KotuneError(
            f"{cfg.model.name} on gpu profile '{cfg.gpu.name}' needs about {estimate.card:.1f} GiB "
            f"(weights {estimate.weights:.1f}, activations {estimate.activations:.1f}, logits "
            f"{estimate.logits:.1f}) for micro-batch {cfg.gpu.micro_batch_size} × "
            f"{cfg.max_seq_len} tokens, more than the {estimate.budget:.1f} GiB it has; try "
            f"{suggestions(cfg, estimate)} (`kotune fit` shows the estimate for any choice)"
        )
    return estimate.as_dict()


def base_shape(cfg: Config, base_dir: Path) -> ModelShape:
    """The shape of the base actually pinned in `base_dir` (its config.json), else the yaml's."""
    from kotune.modeling.manifest import base_location, read_manifest
    from kotune.modeling.shapes import shape_of

    try:
        manifest = read_manifest(base_dir)
    except KotuneError:
        return declared_shape(cfg)
    from transformers import AutoConfig

    location, revision = base_location(base_dir, manifest)
    return shape_of(AutoConfig.from_pretrained(location, revision=revision, local_files_only=True))


def oom_message(cfg: Config) -> str:
    """The one line shown when CUDA runs out of memory during training."""
    gpu = cfg.gpu
    return (
        f"CUDA ran out of memory with gpu profile '{gpu.name}' (micro_batch_size "
        f"{gpu.micro_batch_size}, max_seq_len {cfg.max_seq_len}, gradient_checkpointing "
        f"{str(gpu.gradient_checkpointing).lower()}): lower gpu.micro_batch_size or "
        f"gpu.max_seq_len, or turn gpu.gradient_checkpointing on (`kotune fit` estimates each)"
    )


def peak_memory() -> dict[str, Any]:
    """Peak CUDA memory of this process so far, GiB (None on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 3),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 3),
    }
