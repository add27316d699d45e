"""The embedded tiny model: a byte-level BPE tokenizer trained on the train split, a small
GPT-NeoX (Polyglot-ko's architecture) built from config, and a short causal-LM warm-up so it
writes Korean before LoRA ever sees it."""

from __future__ import annotations

import math
import time
from typing import Any

from kotune.config import BaseConfig, ScratchModelConfig

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int, max_len: int) -> Any:
    """Byte-level BPE (as GPT-NeoX / Polyglot use) learned from `texts`; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_len,
    )


def build_model(shape: ScratchModelConfig, tokenizer: Any, seed: int) -> Any:
    """A randomly initialised GPT-NeoX of `shape` (untied head, parallel residual: Polyglot's)."""
    from dataclasses import replace

    import torch
    from transformers import GPTNeoXForCausalLM

    from kotune.modeling.shapes import hf_config, scratch_shape

    torch.manual_seed(seed)
    config = hf_config(
        "gpt_neox",
        replace(scratch_shape(shape), vocab_size=len(tokenizer)),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPTNeoXForCausalLM(config)


def pack_windows(token_ids: list[list[int]], eos_id: int, seq_len: int) -> list[list[int]]:
    """Concatenate documents (each ended by eos) and cut the stream into full windows."""
    stream = [t for doc in token_ids for t in (*doc, eos_id)]
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def warm_up(
    model: Any, tokenizer: Any, texts: list[str], cfg: BaseConfig
) -> tuple[dict[str, Any], dict[str, float]]:
    """A short causal-LM run over packed windows of `texts`; returns (metrics: the losses, which
    are the same every run; timing: seconds and tokens/s, which are not)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions split per thread: another count, other bits
    try:
        return _warm_up(model, tokenizer, texts, cfg)
    finally:
        torch.set_num_threads(threads)


def _warm_up(
    model: Any, tokenizer: Any, texts: list[str], cfg: BaseConfig
) -> tuple[dict[str, Any], dict[str, float]]:
    import torch
    from tqdm.auto import tqdm

    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    windows = torch.tensor(pack_windows(ids, tokenizer.eos_token_id, cfg.seq_len))
    if cfg.steps == 0 or len(windows) == 0:
        return {"warmup_steps": 0, "warmup_windows": len(windows)}, {}
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    start, losses = time.perf_counter(), []
    for _ in tqdm(range(cfg.steps), desc="base warm-up", unit="step"):
        batch = windows[torch.randint(len(windows), (cfg.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    tail = losses[-10:]
    metrics = {
        "warmup_first_loss": round(losses[0], 4),
        "warmup_final_loss": round(sum(tail) / len(tail), 4),
        "warmup_steps": cfg.steps,
        "warmup_windows": len(windows),
    }
    timing = {
        "warmup_seconds": round(seconds, 2),
        "warmup_tokens_per_second": round(cfg.steps * cfg.batch_size * cfg.seq_len / seconds, 1),
    }
    return metrics, timing
