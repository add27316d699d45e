"""The export step: a self-contained adapter folder that `kotune chat` and `kotune serve` load
alone, and vLLM too where it supports the architecture.

models/adapter/: adapter_model.safetensors, adapter_config.json, the tokenizer (with its chat
template), kotune.json (base and revision or bundled path, prompt format and end-of-turn token,
persona, stops, generation), vllm_chat_template.jinja (the persona's prompt for vLLM),
README.md (the model card, with the serving commands) and manifest.json (sha256 of every
file, the base's fingerprint, data hashes). A scratch base is bundled under base/ since no hub
holds it. No field records when or where it was made (nor a git commit: the commit that records
this folder's hash in dvc.lock is made after it, and that dvc.lock is its provenance), so a
clone that reruns export gets the same bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kotune.config import Config
from kotune.files import sha256_tree
from kotune.inference.adapter import (
    ADAPTER_FILES,
    BUNDLED_BASE,
    AdapterSettings,
    export_settings,
    write_settings,
)
from kotune.inference.loading import load_tokenizer
from kotune.inference.vllm import TEMPLATE_FILE, persona_template, vllm_command, vllm_problems
from kotune.modeling.manifest import MANIFEST, base_location, read_manifest
from kotune.prompting import config_prompt_builder


def serving_notes(cfg: Config, settings: AdapterSettings, vllm: list[str]) -> str:
    """The card's serving section: kotune serve, and vLLM (or why not, and what instead)."""
    if vllm:
        outside = (
            f"vLLM cannot load this adapter as LoRA: {'; '.join(vllm)}. Merge it into its base "
            f"and serve the merged folder:\n\n```\nkotune merge --adapter models/adapter -o "
            f"models/merged\nvllm serve models/merged --served-model-name {settings.persona}\n```"
        )
    else:
        command = vllm_command(settings, "models/adapter", cfg.train.lora.r)
        outside = f"With vLLM (the persona's prompt in `{TEMPLATE_FILE}`):\n\n```\n{command}\n```"
    return f"""## Serve

```
kotune serve --adapter models/adapter    # OpenAI-compatible API, model id `{settings.persona}`
```

{outside}
"""


def model_card(cfg: Config, settings: AdapterSettings, metrics: dict[str, dict[str, Any]]) -> str:
    train, evaluation, split = metrics["train"], metrics["eval"], metrics["split"]
    base = settings.base
    base_line = (
        f"`{base.hub_id}` at revision `{base.revision}`"
        if base.source == "hub"
        else f"`{base.name}` ({base.source}, `{base.path}`)"
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(evaluation.items()))
    lora = cfg.train.lora
    end_of_turn = f" (answers end with `{settings.end_of_turn}`)" if settings.end_of_turn else ""
    return f"""# kotune adapter: {cfg.persona.name}

A LoRA adapter that makes {base_line} answer as the `{cfg.persona.name}` persona.
Trained by kotune's DVC pipeline ({"4-bit NF4 QLoRA" if cfg.gpu.quantization == "nf4" else "LoRA"},
profile `{cfg.gpu.name}`).

## Use

```
kotune chat --adapter <this folder>
```

## Data

- format `{cfg.persona.data.format}` from `{cfg.persona.data.path}`
- {split["train_conversations"]} training and {split["test_conversations"]} test conversations
  ({split["train_examples"]} / {split["test_examples"]} examples), split by conversation
  (seed {cfg.split.seed})

## Training

- LoRA r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets `{train["lora_targets"]}`
- trainable parameters: {train["trainable_params"]:,} ({train["trainable_percent"]}%)
- learning rate {cfg.train.lr}, effective batch {cfg.train.effective_batch_size}
  (micro-batch {cfg.gpu.micro_batch_size} × accumulation {train["grad_accum_steps"]})
- best checkpoint: `{train["best_checkpoint"]}` (eval_loss {train["best_eval_loss"]}),
  {train["global_step"]} of {train["planned_steps"]} planned steps, stopped early: {train["stopped_early"]}

## Evaluation (test split)

ROUGE and BLEU on Kiwi morphemes, chrF on characters, all 0–100.

| metric | value |
|---|---|
{rows}

## Prompt

Format `{settings.prompt_format}`{end_of_turn}; generation stops at {", ".join(repr(s) for s in settings.stop_patterns)}.
"""


def vllm_files(out_dir: Path, cfg: Config, settings: AdapterSettings, tokenizer: Any) -> list[str]:
    """The persona's chat template for vLLM beside the adapter; returns why vLLM's LoRA loader
    would refuse the adapter ([] when it accepts it)."""
    (out_dir / TEMPLATE_FILE).write_text(persona_template(settings, tokenizer), encoding="utf-8")
    return vllm_problems(out_dir, cfg.model.family)


def export_adapter(
    cfg: Config,
    checkpoint_dir: Path,
    base_dir: Path,
    data_files: list[Path],
    metrics: dict[str, dict[str, Any]],
    out_dir: Path,
) -> dict[str, Any]:
    """Write the adapter folder into `out_dir` (a fresh, empty path)."""
    base_manifest = read_manifest(base_dir)
    out_dir.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(checkpoint_dir / name, out_dir / name)
    tokenizer = load_tokenizer(*base_location(base_dir, base_manifest))
    builder = config_prompt_builder(tokenizer, cfg)
    if base_manifest["source"] == "scratch":
        shutil.copytree(base_dir, out_dir / BUNDLED_BASE)
        tokenizer_files = [
            p for p in base_dir.glob("*") if p.name.startswith(("tokenizer", "special_tokens"))
        ]
        for path in tokenizer_files:
            shutil.copy2(path, out_dir / path.name)
    else:  # hub/local: models/base holds only the manifest; the tokenizer's files vary by model
        tokenizer.save_pretrained(out_dir)
    settings = export_settings(cfg, base_manifest, builder.stop_patterns(cfg.persona.stop_patterns))
    write_settings(out_dir, settings)
    vllm = vllm_files(out_dir, cfg, settings, tokenizer)
    card = model_card(cfg, settings, metrics) + "\n" + serving_notes(cfg, settings, vllm)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    manifest = {
        "files": sha256_tree(out_dir),
        "best_checkpoint": checkpoint_dir.name,
        "base_fingerprint": base_manifest["fingerprint"],
        "data": {p.as_posix(): sha256_tree(p) for p in data_files},
    }
    (out_dir / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {"files": len(manifest["files"]) + 1}
