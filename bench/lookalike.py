"""Random-weight look-alikes of the real bases and a workload drawn from the real data, for
bench/train_speed.py and bench/chat_speed.py.

- shapes, GPU profiles and training settings are read from conf/ (model/*.yaml, gpu/*.yaml,
  config.yaml, persona/*.yaml) with plain YAML, so the GPU machine needs no Hydra;
- a base of an exact shape is built once in a scratch folder by kotune's `save_random_model`
  (bf16 safetensors) and then loaded like any local model through kotune's `load_model`;
- examples are random token ids with the (prompt, answer) lengths of bench/data/token_lengths.json,
  labels -100 on the prompt, drawn with a seed so that every variant sees the same ones.
Random weights time and size the real shapes; their loss means nothing.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from measure import free  # noqa: E402

from kotune.config import GpuConfig, ModelShape  # noqa: E402

LENGTHS = ROOT / "bench" / "data" / "token_lengths.json"
IGNORE_INDEX = -100
SPECIAL_IDS = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}  # random ids start at 2

# bench name → conf/model file; smoke: a tiny shape of the same family (same code path, CPU)
MODELS = {
    "koalpaca-5.8b": "koalpaca-polyglot-5.8b",
    "qwen2.5-7b": "qwen2.5-7b-instruct",
    "bllossom-8b": "bllossom-8b",  # Llama-3 8B's shape
    "koalpaca-12.8b": "koalpaca-polyglot-12.8b",
}
TINY = {
    "gpt_neox": ModelShape(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=256,
        vocab_size=1024, max_position_embeddings=2048, rotary_pct=0.25,
    ),
    "qwen2": ModelShape(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192,
        vocab_size=2048, max_position_embeddings=2048,
    ),
    "llama": ModelShape(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192,
        vocab_size=2048, max_position_embeddings=2048,
    ),
}  # fmt: skip


def read_conf(*parts: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf" / Path(*parts)).read_text(encoding="utf-8"))


def model_spec(name: str, smoke: bool = False) -> tuple[str, ModelShape]:
    """(family, shape) of a bench model name, from its conf/model yaml (tiny when smoke)."""
    model = read_conf("model", f"{MODELS[name]}.yaml")["model"]
    family = model["family"]
    return family, TINY[family] if smoke else ModelShape(**model["shape"])


def gpu_profile(name: str) -> GpuConfig:
    """A conf/gpu profile as kotune's typed GpuConfig."""
    return GpuConfig(**read_conf("gpu", f"{name}.yaml")["gpu"])


@dataclass(frozen=True)
class TrainSettings:
    """What the composed config would say for `persona` (conf/config.yaml + the persona's own
    `train` overrides): the numbers the benchmark's training math uses."""

    effective_batch_size: int
    max_seq_len: int
    lr: float
    max_grad_norm: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float


def train_settings(persona: str) -> TrainSettings:
    base = read_conf("config.yaml")
    train = {**base["train"], **read_conf("persona", f"{persona}.yaml").get("train", {})}
    lora = train["lora"]
    return TrainSettings(
        effective_batch_size=train["effective_batch_size"],
        max_seq_len=base["tokenize"]["max_seq_len"],
        lr=train["lr"],
        max_grad_norm=train["max_grad_norm"],
        lora_r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
    )


def random_base(
    family: str, shape: ModelShape, scratch: Path, device: str, seed: int = 0
) -> tuple[Path, float]:
    """A bf16 random-weight model of `shape` in `scratch` (built once, reused while its stamp
    matches); returns its folder and the seconds spent building it (0 when reused)."""
    from kotune.modeling.shapes import save_random_model

    folder = scratch / f"{family}-h{shape.hidden_size}-l{shape.num_layers}-v{shape.vocab_size}"
    stamp = folder / "lookalike.json"
    wanted = {"family": family, "shape": shape.__dict__, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder, 0.0
    start = time.perf_counter()
    save_random_model(
        family, shape, folder, dtype="bfloat16", seed=seed, device=device, **SPECIAL_IDS
    )
    stamp.write_text(json.dumps(wanted))  # last: a folder cut off mid-save is rebuilt
    free(device)
    return folder, time.perf_counter() - start


def length_pairs(persona: str, scale: float = 1.0) -> tuple[list[tuple[int, int]], int]:
    """The persona's (prompt, answer) token counts (× scale, at least 2 and 1) and its number of
    train examples."""
    data = json.loads(LENGTHS.read_text(encoding="utf-8"))["personas"][persona]
    pairs = [
        (max(2, round(p * scale)), max(1, round(a * scale)))
        for p, a in data["prompt_answer_tokens"]
    ]
    return pairs, data["summary"]["examples"]


def draw_examples(
    pairs: list[tuple[int, int]], count: int, vocab_size: int, seed: int
) -> list[dict[str, list[int]]]:
    """`count` examples with lengths drawn (with replacement) from `pairs`, then random token
    ids: two generators, so that the lengths do not depend on the vocabulary's size."""
    lengths = random.Random(seed).choices(pairs, k=count)
    ids = random.Random(seed + 1_000_003)
    return [example_of(prompt, answer, vocab_size, ids) for prompt, answer in lengths]


def example_of(prompt: int, answer: int, vocab_size: int, rng: random.Random) -> dict[str, list]:
    ids = [rng.randrange(2, vocab_size) for _ in range(prompt + answer)]
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]}


def predicted_tokens(example: dict[str, list[int]]) -> int:
    """Tokens the loss is computed on: labels other than -100 after the causal shift."""
    return sum(label != IGNORE_INDEX for label in example["labels"][1:])
