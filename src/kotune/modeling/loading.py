"""Loading a base model and tokenizer: the one place train, evaluate, export and chat use.

A base is named by `models/base/manifest.json`: the scratch model's own folder, a local path,
or a hub id with a pinned revision (read from the local Hugging Face cache; never downloaded
at run time here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError
from kotune.files import read_json

MANIFEST = "manifest.json"


def read_manifest(base_dir: str | Path) -> dict[str, Any]:
    path = Path(base_dir) / MANIFEST
    if not path.is_file():
        raise KotuneError(f"{path}: not found (run `dvc repro base` first)")
    return read_json(path)


def base_location(base_dir: str | Path, manifest: dict[str, Any]) -> tuple[str, str | None]:
    """(name or path, revision) to pass to from_pretrained for this base."""
    if manifest["source"] == "scratch":
        return str(base_dir), None
    if manifest["source"] == "local":
        return manifest["path"], None
    return manifest["hub_id"], manifest.get("revision")


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


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
) -> Any:
    """The base model in `quantization` (nf4: 4-bit NF4, int8, none) on `device`."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch_dtype(compute_dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype if device == "cuda" else None,
        )
    elif quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif quantization != "none":
        raise KotuneError(f"unknown quantization '{quantization}' (nf4, int8, none)")
    model = AutoModelForCausalLM.from_pretrained(
        location,
        revision=revision,
        device_map=device_map(device),
        local_files_only=True,  # the base stage pinned what is in the cache: never download
        **kwargs,
    )
    if quantization == "nf4" and device == "cpu":
        keep_cpu_nf4_layout(model)
    if device == "cuda":
        skip_cudnn_attention()
    return model


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
