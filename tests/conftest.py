"""Shared fixtures: the project root, the small Mencius fixture and a tokenizer trained on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory):
    """$XDG_DATA_HOME in a temporary folder for the whole run: a `kotune serve` started without
    --db (its chat database defaults to $XDG_DATA_HOME/kotune/) never writes the user's home."""
    import os

    folder = tmp_path_factory.mktemp("xdg-data")
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mencius_small() -> dict:
    return json.loads((FIXTURES / "mencius_small.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def mencius_records(mencius_small) -> list[dict]:
    from kotune.formats import mencius

    return mencius.parse(mencius_small, "mencius_small.json", {})[0]


@pytest.fixture(scope="session")
def tiny_tokenizer(mencius_records):
    """A byte-level BPE tokenizer trained on the fixture, as the base stage trains one."""
    from kotune.modeling.base import corpus_texts
    from kotune.modeling.scratch import train_tokenizer

    return train_tokenizer(
        corpus_texts(mencius_records) + ["### 질문:", "### 답변:"] * 4, 600, 2, 512
    )


def tiny_config(base_steps: int = 200, persona: str = "mencius", **scratch):
    """The defaults (mencius, tiny, cpu) with a smaller scratch model and a short warm-up
    (200 steps: enough for different questions to get different answers)."""
    from kotune.config import compose, parse_config

    data = compose([f"persona={persona}", "model=tiny", "gpu=cpu"], ROOT / "conf")
    shape = dict(
        vocab_size=600,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=256,
        max_position_embeddings=256,
    )
    data["model"]["scratch"].update({**shape, **scratch})
    data["tokenize"]["max_seq_len"] = min(256, data["model"]["scratch"]["max_position_embeddings"])
    data["base"].update(steps=base_steps, batch_size=8, seq_len=64, warmup_steps=10)
    data["persona"]["generation"]["max_new_tokens"] = 24
    return parse_config(data)


def export_tiny_adapter(cfg, records, root: Path) -> Path:
    """models/adapter made fast: the scratch base built by the base stage's code, a freshly
    initialised LoRA saved as a checkpoint, then the real export."""
    import torch

    from kotune.export import export_adapter
    from kotune.files import write_jsonl
    from kotune.inference.loading import load_for_training
    from kotune.modeling.base import build_scratch_base

    train = root / "train.jsonl"
    write_jsonl(train, records)
    base_dir = root / "models" / "base"
    build_scratch_base(records, cfg, base_dir)
    torch.manual_seed(cfg.train.seed)
    model, _, targets = load_for_training(cfg, base_dir)
    checkpoint = root / "models" / "checkpoints" / "checkpoint-1"
    model.save_pretrained(checkpoint)
    trainable, total = model.get_nb_trainable_parameters()
    metrics = {
        "train": {
            "lora_targets": ",".join(targets),
            "trainable_params": trainable,
            "trainable_percent": round(100 * trainable / total, 4),
            "grad_accum_steps": cfg.grad_accum_steps,
            "best_checkpoint": checkpoint.name,
            "best_eval_loss": None,
            "global_step": 0,
            "planned_steps": 0,
            "stopped_early": False,
        },
        "eval": {},
        "split": {
            "train_conversations": len(records),
            "test_conversations": 0,
            "train_examples": 0,
            "test_examples": 0,
        },
    }
    adapter = root / "models" / "adapter"
    export_adapter(cfg, checkpoint, base_dir, [train], metrics, adapter)
    return adapter


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, mencius_records) -> Path:
    """An exported adapter folder on a tiny scratch base warmed up for 200 steps: it answers in
    Korean, differently per question, and usually ends its answers within 24 tokens."""
    return export_tiny_adapter(
        tiny_config(), mencius_records, tmp_path_factory.mktemp("tiny-adapter")
    )


@pytest.fixture(scope="session")
def menu_adapter(tmp_path_factory, mencius_records) -> Path:
    """The tiny adapter exported as the menu persona (preferences on, its name and system
    prompt in kotune.json): what the web chat's tests serve with `kotune serve`."""
    return export_tiny_adapter(
        tiny_config(persona="menu"), mencius_records, tmp_path_factory.mktemp("menu-adapter")
    )


@pytest.fixture(scope="session")
def babbling_adapter(tmp_path_factory, mencius_records) -> Path:
    """The same export on random weights and a 1,024-token context: greedy decoding of it
    practically never ends before its token limit (an answer long enough to interrupt)."""
    cfg = tiny_config(base_steps=0, max_position_embeddings=1024)
    return export_tiny_adapter(cfg, mencius_records, tmp_path_factory.mktemp("babbling-adapter"))


@pytest.fixture(scope="session")
def long_context_adapter(tmp_path_factory, mencius_records) -> Path:
    """tiny_adapter's export with a 4,096-token context (its rotary positions add no weights):
    room for a self-instruct prompt, ~2,600 of its tokens with 8 menu examples."""
    cfg = tiny_config(max_position_embeddings=4096)
    return export_tiny_adapter(cfg, mencius_records, tmp_path_factory.mktemp("long-adapter"))
