"""QLoRA training: the base in 4-bit NF4 (bitsandbytes), LoRA adapters (peft), the Trainer.

QLoRA is LoRA plus one switch: `gpu.quantization: nf4` loads the frozen base in 4 bits;
`none` keeps it in the compute dtype. Everything else is the same code path.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from kotune.config import Config, to_dict
from kotune.files import digest_of, sha256_tree
from kotune.modeling.loading import base_location, load_model, load_tokenizer, read_manifest

FINGERPRINT = "fingerprint.json"
# Trainer log keys drawn as curves → DVCLive names (plots/metrics/<name>.tsv)
CURVES = {
    "loss": "train/loss",
    "eval_loss": "eval/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
}


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


def run_fingerprint(cfg: Config, tokenized_dir: Path, base_dir: Path) -> str:
    """What a checkpoint was trained from: the params that shape training and the data/base
    hashes. Resuming is allowed only when this is unchanged."""
    params = {
        "model": to_dict(cfg.model),
        "gpu": to_dict(cfg.gpu),
        "tokenize": to_dict(cfg.tokenize),
        "train": {k: v for k, v in to_dict(cfg.train).items() if k != "resume"},
        "system_prompt": cfg.persona.system_prompt,
    }
    data = sha256_tree(tokenized_dir)
    base = read_manifest(base_dir)["fingerprint"]
    return digest_of({"params": json.dumps(params, sort_keys=True), "base": base, **data})


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    found = [p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def prepare_checkpoints_dir(checkpoints_dir: Path, fingerprint: str, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None after emptying the folder for a fresh run."""
    stamp = checkpoints_dir / FINGERPRINT
    if resume and stamp.is_file():
        recorded = json.loads(stamp.read_text())["fingerprint"]
        checkpoint = last_checkpoint(checkpoints_dir)
        if recorded == fingerprint and checkpoint is not None:
            return checkpoint
    if checkpoints_dir.exists():
        shutil.rmtree(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n")
    return None


def live_callback(live_dir: Path, resume: bool) -> Any:
    """Training curves through DVCLive, x = the optimizer step (the stock callback counts
    log calls instead), so `dvc plots show` lines up train and eval loss."""
    from dvclive import Live
    from transformers import TrainerCallback

    live = Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)

    class LiveCurves(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            live.step = state.global_step
            for key, name in CURVES.items():
                if isinstance(logs.get(key), (int, float)):
                    live.log_metric(name, logs[key])
            live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                live.end()

    return LiveCurves()


def training_arguments(cfg: Config, output_dir: Path) -> Any:
    from transformers import TrainingArguments

    gpu, train = cfg.gpu, cfg.train
    on_gpu = gpu.device == "cuda"
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=gpu.micro_batch_size,
        per_device_eval_batch_size=gpu.micro_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        learning_rate=train.lr,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float in [0, 1) is a share of all steps
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=gpu.optimizer,
        bf16=on_gpu and gpu.compute_dtype == "bfloat16",
        fp16=on_gpu and gpu.compute_dtype == "float16",
        use_cpu=not on_gpu,
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.eval_steps,  # a checkpoint at every evaluation: best = a saved one
        save_total_limit=None,  # every checkpoint-N is kept and versioned by DVC
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        train_sampling_strategy="group_by_length",  # similar lengths together: less padding
        include_num_input_tokens_seen="non_padding",
        seed=train.seed,
        data_seed=train.seed,
        report_to="none",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if gpu.num_processes > 1 else None,
    )


def train_adapter(
    cfg: Config, base_dir: Path, tokenized_dir: Path, checkpoints_dir: Path, live_dir: Path
) -> dict[str, Any]:
    """Train LoRA on the base; returns the flat metrics for metrics/train.json."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer, set_seed

    set_seed(cfg.train.seed)
    location, revision = base_location(base_dir, read_manifest(base_dir))
    tokenizer = load_tokenizer(location, revision)
    model = load_model(
        location,
        revision,
        quantization=cfg.gpu.quantization,
        compute_dtype=cfg.gpu.compute_dtype,
        device=cfg.gpu.device,
        attention=cfg.gpu.attention,
        double_quant=cfg.gpu.double_quant,
    )
    if cfg.gpu.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gpu.gradient_checkpointing
        )
    elif cfg.gpu.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    targets = cfg.model.lora_targets
    if targets == ["auto"]:
        targets = find_lora_targets(model)
    lora = cfg.train.lora
    model = get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        ),
    )
    trainable, total = model.get_nb_trainable_parameters()

    data = load_from_disk(str(tokenized_dir))
    columns = ["input_ids", "labels"]
    train_set = data["train"].select_columns(columns)
    eval_set = data["test"].select_columns(columns)

    fingerprint = run_fingerprint(cfg, tokenized_dir, base_dir)
    resume_from = prepare_checkpoints_dir(checkpoints_dir, fingerprint, cfg.train.resume)
    if resume_from is None and live_dir.exists():
        shutil.rmtree(live_dir)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, checkpoints_dir),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, label_pad_token_id=-100, pad_to_multiple_of=8, return_tensors="pt"
        ),
        callbacks=[
            EarlyStoppingCallback(
                early_stopping_patience=cfg.train.early_stopping_patience,
                early_stopping_threshold=cfg.train.early_stopping_threshold,
            ),
            live_callback(live_dir, resume=resume_from is not None),
        ],
    )
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    state = trainer.state
    best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
    train_losses = [log["loss"] for log in state.log_history if "loss" in log]
    # tokens of this session only: a resumed run must not claim the earlier run's throughput
    session_tokens = state.num_input_tokens_seen - getattr(
        trainer, "_initial_num_input_tokens_seen", 0
    )
    max_steps = state.max_steps
    metrics = {
        "best_checkpoint": best.name if best else None,
        "best_step": int(best.name.split("-")[-1]) if best else None,
        "best_eval_loss": round(state.best_metric, 5) if state.best_metric is not None else None,
        "final_train_loss": round(train_losses[-1], 5) if train_losses else None,
        "mean_train_loss": round(result.training_loss, 5),
        "global_step": state.global_step,
        "planned_steps": max_steps,
        "stopped_early": state.global_step < max_steps,
        "epochs": round(state.epoch or 0.0, 3),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "lora_targets": ",".join(targets),
        "grad_accum_steps": cfg.grad_accum_steps,
        "runtime_seconds": round(seconds, 2),
        "resumed_from_step": int(resume_from.name.split("-")[-1]) if resume_from else 0,
        "train_tokens_seen": int(state.num_input_tokens_seen),
        "train_tokens_per_second": round(session_tokens / seconds, 1),
        "device": cfg.gpu.device,
        "torch_threads": torch.get_num_threads(),
    }
    return metrics
