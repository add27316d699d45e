"""QLoRA training: the base in 4-bit NF4 (bitsandbytes), LoRA adapters (peft), the Trainer.

QLoRA is LoRA plus one switch: `gpu.quantization: nf4` loads the frozen base in 4 bits;
`none` keeps it in the compute dtype. Everything else is the same code path.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from kotune.config import Config
from kotune.inference.loading import load_for_training
from kotune.modeling.memory import check_fits, peak_memory
from kotune.reproducible import untimed_trainer_logs, without_timing
from kotune.training.checkpoints import (
    TRAINER_STATE,
    checkpoint_step,
    drop_unfinished,
    eager_adamw,
    keep_unfinished,
    last_checkpoint,
    live_callback,
    log_at_checkpoints,
    prepare_checkpoints_dir,
    restore_whole_adapter,
    resumable_checkpoint,
    run_fingerprint,
    run_finished,
    save_run_metrics,
    saved_run_metrics,
    train_loss_figures,
    trim_curves,
    whole_adapter_writer,
)
from kotune.training.speedups import (
    check_liger_kernels,
    compile_blocks,
    compile_when_it_pays,
    liger_applies,
    liger_kernel_config,
    step_timer,
)


def data_collator(packing: bool, tokenizer: Any) -> Any:
    """Batches for the Trainer. Packed (gpu.packing): the micro-batch's examples concatenated into
    one row, position_ids restarting at 0 for each, no attention mask, so that transformers builds
    a block-diagonal causal mask (sdpa/eager) and no example attends to another; labels get -100
    at each boundary. Padded: right padding to a multiple of 8, labels -100 on the padding."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if packing:
        return DataCollatorWithFlattening(return_tensors="pt")
    return DataCollatorForSeq2Seq(
        tokenizer, label_pad_token_id=-100, pad_to_multiple_of=8, return_tensors="pt"
    )


def training_arguments(cfg: Config, output_dir: Path) -> Any:
    from transformers import TrainingArguments

    gpu, train = cfg.gpu, cfg.train
    on_gpu = gpu.device == "cuda"
    several = cfg.world_size > 1
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
        # padded batches: similar lengths together, less padding; packed rows have none to save,
        # and a random mix keeps each row near the average length (and memory)
        train_sampling_strategy="random" if gpu.packing else "group_by_length",
        include_num_input_tokens_seen="non_padding",
        seed=train.seed,
        data_seed=train.seed,
        report_to="none",
        dataloader_num_workers=0,
        # a resumed run goes on with early stopping's patience count where the checkpoint left it
        restore_callback_states_from_checkpoint=True,
        ddp_find_unused_parameters=False if several and gpu.distributed == "ddp" else None,
        ddp_backend="gloo" if not on_gpu and several else None,
        use_liger_kernel=liger_applies(gpu, cfg.model.family),
        # with compiled blocks only the fused linear cross-entropy (outside them): speedups.py
        liger_kernel_config=liger_kernel_config(gpu, cfg.model.family),
    )


class TrainingStopped(Exception):
    """Ctrl-C during training: every checkpoint saved so far is kept for the next run."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        self.step, self.checkpoint = step, checkpoint
        then = (
            f"continue from {checkpoint.name}" if checkpoint else "start over (no checkpoint yet)"
        )
        # DVC_EXP_NAME: set by `dvc exp run` for its stages; with Hydra on it composes
        # params.yaml again from conf/, so the same -S options give the same run
        again = (
            "run the same dvc exp run (same -S options) again"
            if os.environ.get("DVC_EXP_NAME")
            else "run dvc repro (or this command) again"
        )
        super().__init__(f"stopped at step {step}; {again} to {then}")


def quiet_training() -> None:
    """Keep what the libraries print to what the user needs: one progress bar (the Trainer's),
    no warnings about their own internals. The Trainer's log dicts go to DVCLive only
    (QuietProgress)."""
    import logging
    import warnings

    # transformers' own use of its deprecated name (peft and the Trainer call it)
    warnings.filterwarnings(
        "ignore", message=r".*is_gradient_checkpointing.*deprecated", category=FutureWarning
    )
    # bitsandbytes on CPUs with AVX512-BF16 offers a kernel downloaded from the hub: never here
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" of a base that loads in a second


def quiet_progress() -> Any:
    """The Trainer's progress bar without the raw log dicts it writes under it and without a
    second bar for each evaluation."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_prediction_step(self, args, state, control, **kwargs):
            if self.training_bar is None:
                super().on_prediction_step(args, state, control, **kwargs)

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

        def on_interrupt(self) -> None:
            """Ctrl-C: end the bar's line, so that what is said next starts a line of its own."""
            for bar in (self.prediction_bar, self.training_bar):
                if bar is not None:
                    bar.close()
            self.prediction_bar = self.training_bar = None

    return QuietProgress()


def train_adapter(
    cfg: Config,
    base_dir: Path,
    tokenized_dir: Path,
    checkpoints_dir: Path,
    live_dir: Path,
    unfinished_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train LoRA on the base; returns (metrics, timing): the flat metrics for metrics/train.json
    (the same every run of the same params and data on the same kind of CPU) and this session's
    run-time figures (seconds, tokens/s, peak memory: metrics/timing/train.json).

    Under torchrun every process runs this with its own 4-bit copy of the base; under FSDP each
    holds a shard of it. Rank 0 alone prepares the checkpoints folder and writes the curves (the
    Trainer saves on rank 0 only; FSDP checkpoints hold each rank's shard and the whole adapter).
    `unfinished_dir`: where a stopped run's checkpoints survive `dvc exp run` (see checkpoints).
    """
    quiet_training()
    from datasets import load_from_disk
    from transformers import EarlyStoppingCallback, Trainer, set_seed
    from transformers.trainer_callback import TrainerState

    estimate = check_fits(cfg, base_dir)  # before loading: a run that cannot fit fails in seconds
    liger = liger_kernel_config(cfg.gpu, cfg.model.family)
    if liger:
        check_liger_kernels(cfg.model.family, liger)
    args = training_arguments(cfg, checkpoints_dir)  # under torchrun: joins the process group
    main = args.process_index == 0
    set_seed(cfg.train.seed)
    model, tokenizer, targets = load_for_training(cfg, base_dir)
    trainable, total = model.get_nb_trainable_parameters()
    if cfg.gpu.compile is True:
        compile_blocks(model)

    data = load_from_disk(str(tokenized_dir))
    columns = ["input_ids", "labels"]
    train_set = data["train"].select_columns(columns)
    eval_set = data["test"].select_columns(columns)

    fingerprint = run_fingerprint(cfg, tokenized_dir, base_dir)
    # rank 0 empties or trims the folder first; the others then read the same decision from it
    with args.main_process_first(local=False, desc="checkpoints"):
        if main:
            resume_from = prepare_checkpoints_dir(
                checkpoints_dir, fingerprint, cfg.train.resume, unfinished_dir
            )
            if resume_from is None and live_dir.exists():
                shutil.rmtree(live_dir)
            elif resume_from is not None:
                trim_curves(live_dir, checkpoint_step(resume_from))
        else:
            resume_from = resumable_checkpoint(checkpoints_dir, fingerprint, cfg.train.resume)
    callbacks = [
        EarlyStoppingCallback(
            early_stopping_patience=cfg.train.early_stopping_patience,
            early_stopping_threshold=cfg.train.early_stopping_threshold,
        ),
        log_at_checkpoints(),
    ]
    if main:
        callbacks.append(live_callback(live_dir, resume=resume_from is not None))
        if unfinished_dir is not None:
            callbacks.append(keep_unfinished(checkpoints_dir, unfinished_dir))
    timer = step_timer()
    untimed = untimed_trainer_logs()  # checkpoints' trainer_state.json without run times
    callbacks += [timer, untimed]
    compiler = None
    if cfg.gpu.compile == "auto":
        compiler = compile_when_it_pays(model, cfg.gpu.compile_warmup_s)
        callbacks.append(compiler)
    if resume_from is not None and cfg.gpu.distributed == "fsdp":
        restore_whole_adapter(model, resume_from)
    if cfg.gpu.distributed == "fsdp":  # its shards hold no LoRA weights: a warning for each
        logging.getLogger("torch.distributed.fsdp._state_dict_utils").setLevel(logging.ERROR)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=data_collator(cfg.gpu.packing, tokenizer),
        callbacks=callbacks,
        optimizer_cls_and_kwargs=eager_adamw(args) if cfg.gpu.distributed == "fsdp" else None,
    )
    if cfg.gpu.distributed == "fsdp":
        trainer.add_callback(whole_adapter_writer(trainer))
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # its choice when transformers logs errors only
    progress = quiet_progress()
    trainer.add_callback(progress)
    start = time.perf_counter()
    if resume_from is not None and run_finished(resume_from):
        # the run had ended (max_steps or early stopping): report it as it was, without training
        saved = saved_run_metrics(checkpoints_dir)
        if saved is not None:
            leave_process_group()
            # nothing trained in this session: its timing says so (the run's own is gone)
            return without_timing(saved), {"session_steps": 0, "found_finished_run": True}
        state = TrainerState.load_from_json(str(resume_from / TRAINER_STATE))
    else:
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except KeyboardInterrupt:
            progress.on_interrupt()
            raise TrainingStopped(
                trainer.state.global_step, last_checkpoint(checkpoints_dir)
            ) from None
        state = trainer.state
    seconds = time.perf_counter() - start
    resumed_step = checkpoint_step(resume_from) if resume_from else 0
    session_steps = state.global_step - resumed_step
    # tokens of this session only: a resumed run must not claim the earlier run's throughput
    session_tokens = state.num_input_tokens_seen - getattr(
        trainer, "_initial_num_input_tokens_seen", state.num_input_tokens_seen
    )
    best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
    mean_loss, final_loss = train_loss_figures(state.log_history)
    max_steps = state.max_steps
    metrics = {
        "best_checkpoint": best.name if best else None,
        "best_step": checkpoint_step(best) if best else None,
        "best_eval_loss": round(state.best_metric, 5) if state.best_metric is not None else None,
        "final_train_loss": round(final_loss, 5) if final_loss is not None else None,
        "mean_train_loss": round(mean_loss, 5) if mean_loss is not None else None,
        "global_step": state.global_step,
        "planned_steps": max_steps,
        "stopped_early": state.global_step < max_steps,
        "epochs": round(state.epoch or 0.0, 3),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "lora_targets": ",".join(targets),
        "grad_accum_steps": cfg.grad_accum_steps,
        "num_processes": args.world_size,
        "distributed": cfg.gpu.distributed if args.world_size > 1 else None,
        "compiled_at_step": 0
        if cfg.gpu.compile is True
        else compiler and compiler.compiled_at_step,
        "liger": ",".join(name for name, on in liger.items() if on) if liger else None,
        "resumed_from_step": resumed_step,
        "session_steps": session_steps,
        "train_tokens_seen": int(state.num_input_tokens_seen),  # every process's, every session's
        "device": cfg.gpu.device,
        "estimated_memory_gib": estimate["card"] if estimate else None,
    }
    timing = {
        **timer.figures(),  # steps alone, after warm-up: what bench/train_speed.py measures
        "runtime_seconds": round(seconds, 2),
        "eval_seconds": round(untimed.eval_seconds, 2),
        "session_steps": session_steps,
        "train_tokens_per_second": (
            round(session_tokens / seconds, 1) if session_steps > 0 else None
        ),
        **peak_memory(),
    }
    if main:
        save_run_metrics(checkpoints_dir, metrics)
        drop_unfinished(unfinished_dir)
    leave_process_group()  # every rank is done with collectives here
    return metrics, timing


def leave_process_group() -> None:
    """Destroy torchrun's process group, if any: exiting with it alive makes torch warn."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
