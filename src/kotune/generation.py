"""Answer generation with the persona's settings and stop patterns (evaluate and chat)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kotune.config import GenerationConfig
from kotune.prompting import cut_at_stop


def generation_kwargs(
    gen: GenerationConfig, tokenizer: Any, stops: list[str], stop_token_ids: Sequence[int]
) -> dict[str, Any]:
    """Arguments for `model.generate`: the end-of-turn and eos ids and the stop strings end an
    answer (`stop_token_ids`: PromptBuilder.stop_token_ids)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": gen.max_new_tokens,
        "do_sample": gen.do_sample,
        "repetition_penalty": gen.repetition_penalty,
        "eos_token_id": list(stop_token_ids),
        "pad_token_id": tokenizer.pad_token_id,
    }
    if stops:  # transformers refuses an empty list of stop strings
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)
    if gen.do_sample:
        kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
    return kwargs


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    gen: GenerationConfig,
    stops: list[str],
    stop_token_ids: Sequence[int],
    batch_size: int,
    desc: str = "generate",
) -> list[str]:
    """Generate for every prompt (left-padded batches); each answer is cut at its first stop."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    answers: list[str] = []
    kwargs = generation_kwargs(gen, tokenizer, stops, stop_token_ids)
    batches = range(0, len(prompt_ids), batch_size)
    for start in tqdm(batches, desc=desc, unit="batch"):
        batch = prompt_ids[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
            )
        for row in output[:, width:]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            answers.append(cut_at_stop(text, stops).strip())
    return answers
