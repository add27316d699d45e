"""Architecture shapes: a family + ModelShape to a Hugging Face config and back.

Used to check a model's yaml against its real config.json, to estimate memory before loading,
and to build random-weight look-alikes of the real shapes (tests on tiny versions; timing and
memory on a GPU with the full shape). Random weights are never presented as a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotune.config import ModelShape, ScratchModelConfig

# Per family: the Hugging Face config class and how its field names map onto ModelShape.
_FIELDS = {
    "gpt_neox": {
        "hidden_size": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "num_kv_heads": "num_attention_heads",  # no grouped-query attention in GPT-NeoX
        "intermediate_size": "intermediate_size",
        "vocab_size": "vocab_size",
        "max_position_embeddings": "max_position_embeddings",
        "tie_word_embeddings": "tie_word_embeddings",
    },
    "llama": {
        "hidden_size": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "num_kv_heads": "num_key_value_heads",
        "intermediate_size": "intermediate_size",
        "vocab_size": "vocab_size",
        "max_position_embeddings": "max_position_embeddings",
        "tie_word_embeddings": "tie_word_embeddings",
    },
}
_FIELDS["qwen2"] = _FIELDS["llama"]


def scratch_shape(scratch: ScratchModelConfig) -> ModelShape:
    """The embedded tiny model's recipe as a shape (GPT-NeoX: one kv head per head, untied)."""
    return ModelShape(
        hidden_size=scratch.hidden_size,
        num_layers=scratch.num_layers,
        num_heads=scratch.num_heads,
        num_kv_heads=scratch.num_heads,
        intermediate_size=scratch.intermediate_size,
        vocab_size=scratch.vocab_size,
        max_position_embeddings=scratch.max_position_embeddings,
        rotary_pct=scratch.rotary_pct,
    )


def config_class(family: str) -> Any:
    from transformers import GPTNeoXConfig, LlamaConfig, Qwen2Config

    return {"gpt_neox": GPTNeoXConfig, "llama": LlamaConfig, "qwen2": Qwen2Config}[family]


def hf_config(family: str, shape: ModelShape, **extra: Any) -> Any:
    """The Hugging Face config of `family` with `shape` (extra: token ids, dtype, …)."""
    kwargs = {hf: getattr(shape, ours) for ours, hf in _FIELDS[family].items()}
    if family == "gpt_neox":
        kwargs.update(rotary_pct=shape.rotary_pct, use_parallel_residual=True)
    if family == "qwen2":
        kwargs.update(use_sliding_window=False)
    return config_class(family)(**kwargs, **extra)


def shape_of(config: Any) -> ModelShape:
    """A loaded Hugging Face config as a ModelShape (the facts the estimate needs)."""
    family = config.model_type
    if family not in _FIELDS:
        raise ValueError(f"unsupported model_type {family!r} (gpt_neox, llama, qwen2)")
    values = {ours: getattr(config, hf) for ours, hf in _FIELDS[family].items()}
    if family == "gpt_neox":
        rope = getattr(config, "rope_parameters", None) or {}  # transformers 5 keeps it here
        values["rotary_pct"] = float(
            rope.get("partial_rotary_factor", getattr(config, "rotary_pct", 1.0))
        )
    values["tie_word_embeddings"] = bool(values["tie_word_embeddings"])
    return ModelShape(**values)


def shape_mismatches(declared: ModelShape, actual: ModelShape) -> list[str]:
    """`field: declared X, config.json Y` for every fact that differs."""
    return [
        f"{name}: declared {getattr(declared, name)}, config.json {getattr(actual, name)}"
        for name in ModelShape.__dataclass_fields__
        if getattr(declared, name) != getattr(actual, name)
    ]


def parameter_count(family: str, shape: ModelShape) -> dict[str, int]:
    """Parameters by kind: `linear` (the layers 4-bit quantisation stores), `embedding`
    (input embeddings and an untied head, kept in the compute dtype), `norm` (and biases)."""
    h, f, layers = shape.hidden_size, shape.intermediate_size, shape.num_layers
    head_dim = h // shape.num_heads
    kv = shape.num_kv_heads * head_dim
    attention = h * h + 2 * h * kv + h * h  # q, k, v, o
    mlp = 3 * h * f if family in ("llama", "qwen2") else 2 * h * f
    embedding = shape.vocab_size * h * (1 if shape.tie_word_embeddings else 2)
    norm = layers * 2 * h + h
    if family == "gpt_neox":  # LayerNorm biases, and biases on every linear layer
        norm *= 2
        norm += layers * (3 * h + h + f + h)
    elif family == "qwen2":  # biases on q, k, v
        norm += layers * (h + 2 * kv)
    return {"linear": layers * (attention + mlp), "embedding": embedding, "norm": norm}


def save_random_model(
    family: str,
    shape: ModelShape,
    out_dir: str | Path,
    *,
    dtype: str = "bfloat16",
    seed: int = 0,
    device: str = "cpu",
    **token_ids: Any,
) -> Path:
    """A randomly initialised model of `shape`, saved in Hugging Face format (safetensors).

    For tests (tiny shapes) and for timing/memory of the real shapes; never a trained model.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = hf_config(family, shape, **token_ids)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


def torch_dtype(name: str) -> Any:
    """torch's dtype for a config's name of it (float32, bfloat16, float16)."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
