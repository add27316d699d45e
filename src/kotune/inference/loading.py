"""Loading models: the one path train, evaluate, export, chat, serve and the benchmarks use.

- `load_model`: a base in a GPU profile's quantization (4-bit NF4, int8 or none) on its device;
- `prepare_for_lora` / `add_lora`: the base made ready for (Q)LoRA training;
- `attach_adapter`: a trained adapter on top, merged into the weights when the base is not
  quantized (one matmul per layer instead of two);
- `load_for_training` (train) and `load_trained` (evaluate): those steps for the pipeline's
  folders; an exported folder loads through `kotune.inference.adapter.load_exported` (chat, serve).
Loading is quiet: no weight-loading bars, no library deprecation warnings (not the user's business).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError
from kotune.modeling.manifest import base_location
from kotune.modeling.shapes import torch_dtype


def _not_optional_kernel_notice(record: logging.LogRecord) -> bool:
    return "kernels-community" not in record.getMessage()


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" bars and no library notices that are not the user's business while
    loading: peft reads `is_gradient_checkpointing`, which transformers 5 deprecates (a
    FutureWarning); bitsandbytes, imported on an AVX512-BF16 CPU, warns that an optional kernel
    package is missing (kotune turns that CPU path off: keep_cpu_nf4_layout). That notice is
    filtered for the process: bitsandbytes may be imported later, outside this block."""
    from transformers.utils import logging as hf_logging

    notices = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if _not_optional_kernel_notice not in notices.filters:
        notices.addFilter(_not_optional_kernel_notice)
    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            yield
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()


def device_map(device: str) -> dict[str, Any]:
    """Every layer on one device: the CPU, or this process's GPU under torchrun/accelerate."""
    if device == "cpu":
        return {"": "cpu"}
    return {"": int(os.environ.get("LOCAL_RANK", 0))}


def load_tokenizer(location: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    # local_files_only: as for the weights, the base stage pinned what is here; never download
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, local_files_only=True)
    if tokenizer.pad_token_id is None:  # Polyglot/Llama ship none: pad with eos, masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    location: str,
    revision: str | None,
    *,
    quantization: str,
    compute_dtype: str,
    device: str,
    attention: str = "sdpa",
    double_quant: bool = True,
    sharded: bool = False,
) -> Any:
    """The base model in `quantization` (nf4: 4-bit NF4, int8, none) on `device`. `sharded`
    (FSDP): every weight in one float type (`storage_dtype`) and no device map: FSDP places the
    shards (with cpu-RAM-efficient loading only rank 0 reads the weights)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch_dtype(compute_dtype)
    stored = torch_dtype(storage_dtype(compute_dtype, device, sharded) or compute_dtype)
    kwargs: dict[str, Any] = {"dtype": stored, "attn_implementation": attention}
    if quantization == "nf4":
        quant_storage = storage_dtype(compute_dtype, device, sharded)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=torch_dtype(quant_storage) if quant_storage else None,
        )
    elif quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif quantization != "none":
        raise KotuneError(f"unknown quantization '{quantization}' (nf4, int8, none)")
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(
            location,
            revision=revision,
            device_map=None if sharded else device_map(device),
            local_files_only=True,  # the base stage pinned what is in the cache: never download
            **kwargs,
        )
    if quantization == "nf4" and device == "cpu":
        keep_cpu_nf4_layout(model)
    if device == "cuda":
        skip_cudnn_attention()
    return model


def storage_dtype(compute_dtype: str, device: str, sharded: bool) -> str | None:
    """The float type bitsandbytes packs 4-bit weights into (None: its default, uint8).
    FSDP shards only float tensors of one type per unit, so under it every weight is stored in
    the compute dtype, or fp32 with fp16 compute (peft's FSDP-QLoRA guide: fp16 mixed precision
    needs fp32 parameters); on one CUDA card the compute dtype too (the CPU keeps uint8)."""
    if sharded:
        return "float32" if compute_dtype == "float16" else compute_dtype
    return compute_dtype if device == "cuda" else None


def skip_cudnn_attention() -> None:
    """Let sdpa take the flash / memory-efficient kernels, not cuDNN's attention.

    torch ranks cuDNN attention first on Hopper, and cuDNN builds an execution plan for every new
    shape (hundreds of ms of host time). Training batches (padded to a multiple of 8, packed rows)
    and chat prompts keep bringing new shapes. Measured on an H100 (bench/train_speed.py, each
    variant in its own process, KoAlpaca-5.8B shape): 1.44× the tokens/s with padding, 3.0× with
    packing, no multi-second steps.
    """
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)


def keep_cpu_nf4_layout(model: Any) -> None:
    """Turn off bitsandbytes' eval-time CPU repacking of NF4 weights.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a Linear4bit's weight in place the
    first time it runs in eval mode (absmax rounded to bf16) and never unpacks it: the Trainer's
    mid-training evaluation then breaks the next training step (`result += bias` on a leaf that
    requires grad), and eval numbers would differ by machine. Same layout everywhere instead.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


# ---------------------------------------------------------------------------- LoRA training


def find_lora_targets(model: Any) -> list[str]:
    """Names of every linear layer but the output head, e.g. GPT-NeoX: dense, dense_4h_to_h,
    dense_h_to_4h, query_key_value; Llama/Qwen2: q/k/v/o_proj, gate/up/down_proj."""
    import torch

    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and name
    }
    return sorted(names)


def add_lora(model: Any, r: int, alpha: int, dropout: float, targets: list[str]) -> Any:
    """The base wrapped by peft with LoRA adapters on `targets` (the base stays frozen). No bias,
    no modules_to_save, no DoRA: what vLLM's LoRA loader accepts (inference/vllm.py)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    with quiet_loading():
        model = get_peft_model(model, config)
    # peft keeps target_modules as a set and saves list(set) into adapter_config.json: an order
    # that follows Python's per-process string hashing, so every checkpoint would differ run to
    # run. The adapters are in place by now; the sorted list is what gets saved.
    config.target_modules = sorted(config.target_modules)
    return model


def keep_vocab_matrices_in(model: Any, compute_dtype: str) -> None:
    """Undo peft's fp32 upcast of the frozen input embeddings and LM head.

    `prepare_model_for_kbit_training` turns every 16-bit weight that is not 4-bit into fp32. For
    the two vocabulary-sized matrices that costs memory: measured on an H100 (bench/train_speed.py,
    h100-fp32emb vs h100-padded, each in its own process) 0.7 GiB less allocated on the
    KoAlpaca-5.8B shape at 1.04× the speed. Qwen2.5-7B's are 1.09 B weights: in fp16 its worst t4
    step measured 13.4 GiB with the CUDA context, under the T4's 15; fp32 would add ~2 GiB
    (an estimate). Layer norms stay fp32.
    On the CPU profile (float32 compute) this changes nothing.
    """
    dtype = torch_dtype(compute_dtype)
    for matrix in (model.get_input_embeddings(), model.get_output_embeddings()):
        if matrix is not None:
            matrix.to(dtype)


def prepare_for_lora(
    model: Any,
    *,
    quantized: bool,
    compute_dtype: str,
    gradient_checkpointing: bool,
    lean_vocab: bool = True,
) -> Any:
    """The base made ready for (Q)LoRA training: a quantized base through peft's
    `prepare_model_for_kbit_training` (norms in fp32, input grads for checkpointing), the
    vocabulary matrices kept in the compute dtype (`lean_vocab`); a plain base just gets
    gradient checkpointing if asked."""
    from peft import prepare_model_for_kbit_training

    # non-reentrant recomputation: what DDP needs (the reentrant kind can mark a gradient ready
    # twice), and torch warns when it is not chosen explicitly
    checkpointing = {"use_reentrant": False}
    with quiet_loading():
        if quantized:
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=gradient_checkpointing,
                gradient_checkpointing_kwargs=checkpointing,
            )
            if lean_vocab:
                keep_vocab_matrices_in(model, compute_dtype)
        elif gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
            model.enable_input_require_grads()
    return model


def load_profile_base(gpu: Any, base_dir: Path, sharded: bool = False) -> tuple[Any, Any]:
    """The base of models/base loaded as the GPU profile trains it (quantization, compute dtype,
    device, attention). Returns (model, tokenizer)."""
    location, revision = base_location(base_dir)
    tokenizer = load_tokenizer(location, revision)
    model = load_model(
        location,
        revision,
        quantization=gpu.quantization,
        compute_dtype=gpu.compute_dtype,
        device=gpu.device,
        attention=gpu.attention,
        double_quant=gpu.double_quant,
        sharded=sharded,
    )
    return model, tokenizer


def load_for_training(cfg: Any, base_dir: Path) -> tuple[Any, Any, list[str]]:
    """The train stage's model: the base of models/base for the GPU profile, prepared, with
    fresh LoRA adapters on the model's targets. Returns (model, tokenizer, targets)."""
    gpu = cfg.gpu
    sharded = gpu.distributed == "fsdp"
    model, tokenizer = load_profile_base(gpu, base_dir, sharded)
    # FSDP: no fp32 upcast of norms and embeddings (one float type per FSDP unit)
    model = prepare_for_lora(
        model,
        quantized=gpu.quantization != "none" and not sharded,
        compute_dtype=gpu.compute_dtype,
        gradient_checkpointing=gpu.gradient_checkpointing,
    )
    targets = cfg.model.lora_targets
    if targets == ["auto"]:
        targets = find_lora_targets(model)
    lora = cfg.train.lora
    return add_lora(model, lora.r, lora.alpha, lora.dropout, targets), tokenizer, targets


# ---------------------------------------------------------------------------- trained adapters


def attach_adapter(model: Any, adapter_dir: str | Path, merge: bool) -> Any:
    """A trained adapter (a checkpoint or an exported folder) on `model`, in eval mode; merged
    into the weights when `merge` (only for a base that is not quantized)."""
    from peft import PeftModel

    with quiet_loading():
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model


def load_trained(cfg: Any, base_dir: Path, adapter_dir: Path) -> tuple[Any, Any]:
    """evaluate's model: the base as it was trained (same quantization) with the checkpoint's
    adapter on top, unmerged. Returns (model, tokenizer)."""
    model, tokenizer = load_profile_base(cfg.gpu, base_dir)
    return attach_adapter(model, adapter_dir, merge=False), tokenizer
