"""The evaluate step: eval_loss/perplexity on the test split, then generated answers scored
against the references with Korean-aware metrics. Answers come from the inference engine, with
the settings export writes for this run: what the test split gets is what chat and serve give."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kotune.config import Config
from kotune.inference.adapter import export_settings
from kotune.inference.engine import Engine, PromptTooLong
from kotune.inference.loading import load_trained
from kotune.modeling.manifest import read_manifest
from kotune.prompting import config_prompt_builder
from kotune.records import training_examples
from kotune.scoring import score
from kotune.tokenizing import IGNORE_INDEX


def token_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int) -> float:
    """Mean loss per answer token (every token weighs the same, whatever its batch)."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collate(
                [
                    {"input_ids": r["input_ids"], "labels": r["labels"]}
                    for r in rows[start : start + batch_size]
                ]
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            total += model(**batch).loss.item() * n
            count += n
    return total / count


def evaluate_adapter(
    cfg: Config,
    base_dir: Path,
    adapter_dir: Path,
    test_rows: list[dict[str, Any]],
    test_records: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics for metrics/eval.json and one prediction row per test example."""
    from tqdm.auto import tqdm

    model, tokenizer = load_trained(cfg, base_dir, adapter_dir)
    loss = token_loss(model, tokenizer, test_rows, cfg.evaluate.batch_size)

    builder = config_prompt_builder(tokenizer, cfg)
    stops = builder.stop_patterns(cfg.persona.stop_patterns)
    settings = export_settings(cfg, read_manifest(base_dir), stops)  # as kotune.json will say
    engine = Engine(model, tokenizer, settings, slots=cfg.evaluate.batch_size)
    params = engine.params()
    examples = [e for r in test_records for e in training_examples(r)]
    if cfg.evaluate.max_examples:
        examples = examples[: cfg.evaluate.max_examples]
    prompts, kept, skipped = [], [], 0
    for example in examples:
        try:  # the oldest turns are left out first, as in chat
            prompts.append(
                engine.prompt(example["context"], params.max_new_tokens, drop_oldest=True)
            )
        except PromptTooLong:
            skipped += 1
            continue
        kept.append(example)
    try:
        with tqdm(total=len(prompts), desc="generate", unit="answer") as bar:
            answers = [a.text for a in engine.answer_all(prompts, params, progress=bar.update)]
    finally:
        engine.close()
    predictions = [
        {
            "id": example["id"],
            "prompt": tokenizer.decode(prompt.ids),
            "reference": example["answer"],
            "prediction": answer,
        }
        for example, prompt, answer in zip(kept, prompts, answers, strict=True)
    ]
    metrics = {
        "eval_loss": round(loss, 5),
        "perplexity": round(math.exp(loss), 3),
        "skipped_prompt_too_long": skipped,
        "empty_predictions": sum(1 for a in answers if not a),
        # bytes the model wrote that are no UTF-8 (a stray continuation byte): shown as U+FFFD.
        # Decoding never splits a character itself (kotune.inference.decoding.Detokenizer).
        "invalid_utf8_predictions": sum(1 for a in answers if "\ufffd" in a),
        **score(answers, [e["answer"] for e in kept]),
    }
    return metrics, predictions
