"""Unsloth's model for bench/train_speed.py's `unsloth-*` variants: the same random-weight base,
examples, LoRA settings and training loop as kotune's variants, only the model comes from
Unsloth's `FastLanguageModel` (its patched attention, RoPE, RMSNorm, fused LoRA and cross-entropy
kernels). Runs in its own process (train_speed's --isolate): Unsloth patches transformers when it
is imported, so it must be imported before transformers and must not touch kotune's variants.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# offline, quiet, no usage statistics (the device reaches no network)
for name, value in {
    "HF_HUB_OFFLINE": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(name, value)


def import_unsloth() -> Any:
    """`import unsloth` first thing in the process (it patches transformers on import)."""
    import unsloth  # noqa: F401

    return unsloth


def ensure_tokenizer(base_dir: Path, vocab_size: int) -> None:
    """Unsloth's loader loads a tokenizer beside the weights: the random bases have none, so a
    small byte-level BPE (kotune's scratch tokenizer) is saved there once. Its ids fit the
    vocabulary; the benchmark feeds token ids directly, so its merges do not matter."""
    if (base_dir / "tokenizer.json").is_file():
        return
    from kotune.modeling.scratch import train_tokenizer

    words = [f"단어{i} token{i}" for i in range(200)]
    tokenizer = train_tokenizer(words, min(vocab_size, 600), 1, 4096)
    tokenizer.save_pretrained(base_dir)


def build_unsloth_model(
    base_dir: Path,
    quantization: str,
    dtype: str,
    max_len: int,
    lora: dict[str, Any],
    targets: list[str],
) -> Any:
    """FastLanguageModel in bf16 (`quantization: none`) or 4-bit NF4, LoRA on `targets` with
    kotune's r/alpha/dropout, no gradient checkpointing (as kotune's big-card variants), seed 0."""
    import torch
    from unsloth import FastLanguageModel

    ensure_tokenizer(base_dir, 600)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=max_len,
        dtype=getattr(torch, dtype),
        load_in_4bit=quantization == "nf4",
        local_files_only=True,
        use_gradient_checkpointing=False,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=targets,
        bias="none",
        use_gradient_checkpointing=False,
        random_state=0,
    )
    model.config.use_cache = False
    return model
