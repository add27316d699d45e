"""A training run's checkpoints and curves: which run a checkpoint belongs to (its fingerprint),
which one to resume from, and the curves and loss figures that survive a resume.

Every checkpoint-N is kept (DVC versions them); a run resumes only from the last complete one of
a run with the same fingerprint. An unfinished run's checkpoints are also linked into a folder
DVC does not manage: `dvc exp run` checks every output out as dvc.lock recorded it before it
runs (dvc/repo/experiments/executor/base.py: `dvc_checkout(force=True)`; `persist` only stops
`dvc repro` from deleting), which replaces the stopped run's checkpoints with the last finished
run's; from there the next run gets them back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from kotune.config import Config, to_dict
from kotune.files import digest_of, sha256_tree
from kotune.modeling.manifest import read_manifest

FINGERPRINT = "fingerprint.json"
TRAINER_STATE = "trainer_state.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what evaluate and export read
SHARDED_MODEL = "pytorch_model_fsdp_*"  # the Trainer's per-rank model shards under FSDP

# Part of every run's fingerprint: bumped when checkpoints of the same params and data would come
# out different bytes, so that an older run is trained again rather than resumed or reported.
# 2: trainer_state.json without run times, CPU math pinned (kotune.reproducible).
CHECKPOINT_FORMAT = 2
RUN_METRICS = "run_metrics.json"  # the finished run's metrics, reported again when it is found
# Trainer log keys drawn as curves → DVCLive names (plots/metrics/<name>.tsv)
CURVES = {
    "loss": "train/loss",
    "eval_loss": "eval/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
}


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
    return digest_of(
        {
            "params": json.dumps(params, sort_keys=True),
            "base": base,
            "format": str(CHECKPOINT_FORMAT),
            **data,
        }
    )


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def complete(checkpoint: Path) -> bool:
    """trainer_state.json is written last, so a folder without it is a save cut off by Ctrl-C or
    kill; a sharded (FSDP) one is complete once the whole adapter is written after it."""
    if not (checkpoint / TRAINER_STATE).is_file():
        return False
    sharded = next(checkpoint.glob(SHARDED_MODEL), None) is not None
    return not sharded or (checkpoint / ADAPTER_WEIGHTS).is_file()


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint (an incomplete one cannot be resumed from)."""
    found = [
        p
        for p in checkpoints_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and complete(p)
    ]
    return max(found, key=checkpoint_step, default=None)


def resumable_checkpoint(checkpoints_dir: Path, fingerprint: str, resume: bool) -> Path | None:
    """The last checkpoint of a run with this very fingerprint, when resuming is on."""
    stamp = checkpoints_dir / FINGERPRINT
    if not resume or not stamp.is_file():
        return None
    if json.loads(stamp.read_text())["fingerprint"] != fingerprint:
        return None
    return last_checkpoint(checkpoints_dir)


def prepare_checkpoints_dir(
    checkpoints_dir: Path, fingerprint: str, resume: bool, unfinished_dir: Path | None = None
) -> Path | None:
    """The checkpoint to resume from (anything saved after it removed: a cut-off save), or None
    after emptying the folder for a fresh run. An unfinished run of this fingerprint kept in
    `unfinished_dir` comes back first when it got further. Rank 0 alone calls this."""
    if unfinished_dir is not None:
        restore_unfinished(checkpoints_dir, unfinished_dir, fingerprint, resume)
    checkpoint = resumable_checkpoint(checkpoints_dir, fingerprint, resume)
    if checkpoint is not None:
        step = checkpoint_step(checkpoint)
        for later in checkpoints_dir.glob("checkpoint-*"):
            if later.name.split("-")[-1].isdigit() and checkpoint_step(later) > step:
                shutil.rmtree(later)
        return checkpoint
    if checkpoints_dir.exists():
        shutil.rmtree(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True)
    stamp = checkpoints_dir / FINGERPRINT
    stamp.write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n")
    return None


def _link_tree(source: Path, target: Path) -> None:
    """`source` copied to `target` as hard links (no second copy on disk), plain copies where
    links are not possible (another file system)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def _fingerprint_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / FINGERPRINT).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def restore_unfinished(
    checkpoints_dir: Path, unfinished_dir: Path, fingerprint: str, resume: bool
) -> bool:
    """Put the unfinished run kept in `unfinished_dir` back into `checkpoints_dir` when it is of
    this fingerprint and further than what is there; drop it when it is of another run."""
    kept = _fingerprint_of(unfinished_dir)
    if kept is None or kept != fingerprint or not resume:
        shutil.rmtree(unfinished_dir, ignore_errors=True)
        return False
    kept_last = last_checkpoint(unfinished_dir)
    here = resumable_checkpoint(checkpoints_dir, fingerprint, resume)
    if kept_last is None or (
        here is not None and checkpoint_step(here) >= checkpoint_step(kept_last)
    ):
        return False
    if checkpoints_dir.exists():
        shutil.rmtree(checkpoints_dir)
    _link_tree(unfinished_dir, checkpoints_dir)
    return True


def keep_unfinished(checkpoints_dir: Path, unfinished_dir: Path) -> Any:
    """A Trainer callback linking every checkpoint into `unfinished_dir` as it is saved, where
    `dvc exp run`'s checkout cannot remove it. Rank 0 only; drop_unfinished when the run ends."""
    from transformers import TrainerCallback

    class KeepUnfinished(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            if _fingerprint_of(unfinished_dir) != _fingerprint_of(checkpoints_dir):
                shutil.rmtree(unfinished_dir, ignore_errors=True)
                unfinished_dir.mkdir(parents=True)
                shutil.copy2(checkpoints_dir / FINGERPRINT, unfinished_dir / FINGERPRINT)
            for checkpoint in sorted(checkpoints_dir.glob("checkpoint-*")):
                if (checkpoint / TRAINER_STATE).is_file() and not (
                    unfinished_dir / checkpoint.name
                ).exists():
                    _link_tree(checkpoint, unfinished_dir / checkpoint.name)

    return KeepUnfinished()


def drop_unfinished(unfinished_dir: Path | None) -> None:
    """The run finished: DVC records its checkpoints from here on."""
    if unfinished_dir is not None:
        shutil.rmtree(unfinished_dir, ignore_errors=True)


def save_run_metrics(checkpoints_dir: Path, metrics: dict[str, Any]) -> None:
    """Keep a finished run's metrics with its checkpoints (a DVC output, versioned with them):
    the same figures as metrics/train.json, no run times."""
    text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    (checkpoints_dir / RUN_METRICS).write_text(text, encoding="utf-8")


def saved_run_metrics(checkpoints_dir: Path) -> dict[str, Any] | None:
    """The metrics of the run that trained these checkpoints, if it kept them."""
    try:
        return json.loads((checkpoints_dir / RUN_METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_finished(checkpoint: Path) -> bool:
    """Whether training had ended at this checkpoint (max_steps reached or early stopping): the
    Trainer saves its control flags with the state, after the stop was decided."""
    state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {})
    return bool(control.get("args", {}).get("should_training_stop"))


def trim_curves(live_dir: Path, last_step: int) -> None:
    """Drop curve points logged after `last_step` (an interrupted run got past its checkpoint):
    the resumed run logs those steps again."""
    for table in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        header, *rows = table.read_text(encoding="utf-8").splitlines()
        step = header.split("\t").index("step")
        kept = [row for row in rows if int(row.split("\t")[step]) <= last_step]
        table.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")


def live_callback(live_dir: Path, resume: bool) -> Any:
    """Training curves through DVCLive, x = the optimizer step (the stock callback counts
    log calls instead), so `dvc plots show` lines up train and eval loss. Rank 0 only."""
    from dvclive import Live
    from transformers import TrainerCallback

    live = Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)

    class LiveCurves(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            live.step = state.global_step
            for key, name in CURVES.items():
                if isinstance(logs.get(key), (int, float)):
                    live.log_metric(name, logs[key])
            live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            live.end()

    return LiveCurves()


def log_at_checkpoints() -> Any:
    """Log the train loss at every save as well: then each checkpoint's log history covers every
    step up to it, and a resumed run can still report the mean train loss of the whole run."""
    from transformers import TrainerCallback

    class LogAtCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save:
                control.should_log = True

    return LogAtCheckpoints()


def train_loss_figures(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(mean over every step of the run, last logged) train loss. Each logged `loss` is the mean
    over the steps since the log before, so weighting by that span gives the run's mean; a
    resumed run carries the earlier sessions' logs over from its checkpoint."""
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    if not losses:
        return None, None
    return total / previous, losses[-1]


def whole_adapter_writer(trainer: Any) -> Any:
    """A callback for FSDP runs: after each checkpoint (whose model is saved as per-rank shards,
    for resuming) gather the adapter whole and write it on rank 0 beside them, as a one-process
    run saves it, so that evaluate and export read any checkpoint as usual. Every rank takes part
    in the gathering; the weights file is moved into place last."""
    from transformers import TrainerCallback

    class WholeAdapter(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            from torch.distributed.fsdp import FullStateDictConfig, StateDictType
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            accelerator = trainer.accelerator
            # gathered layer by layer onto rank 0 (into host memory from a GPU: accelerate's
            # get_state_dict; on the CPU that offload frees the weights it reads, so not there)
            whole = FullStateDictConfig(
                offload_to_cpu=accelerator.device.type != "cpu", rank0_only=True
            )
            with FSDP.state_dict_type(trainer.model, StateDictType.FULL_STATE_DICT, whole):
                weights = trainer.model.state_dict()  # collective: every rank
            best = f"{args.output_dir}/checkpoint-{state.best_global_step}"
            if state.best_global_step and state.best_model_checkpoint != best:
                # transformers looks for the best step's folder before its FSDP shards are
                # written, so at a new best it keeps the previous one: name the right one
                state.best_model_checkpoint = best
                if accelerator.is_main_process:
                    state.save_to_json(str(folder / TRAINER_STATE))
            if accelerator.is_main_process:
                partial = folder.with_name(folder.name + ".adapter")
                shutil.rmtree(partial, ignore_errors=True)
                save_adapter(accelerator.unwrap_model(trainer.model), weights, partial)
                files = sorted(partial.iterdir(), key=lambda p: p.name == ADAPTER_WEIGHTS)
                for file in files:  # the weights last: their presence marks the save complete
                    file.replace(folder / file.name)
                partial.rmdir()
            accelerator.wait_for_everyone()

    return WholeAdapter()


def save_adapter(
    model: Any, weights: dict[str, Any], folder: Path, adapter: str = "default"
) -> None:
    """An adapter folder as peft's `save_pretrained` writes it (adapter_config.json and the LoRA
    weights under their names without the adapter's), from a full state dict gathered by FSDP.
    peft's own filter looks the LoRA modules up by their names in the live model, which FSDP has
    wrapped, and finds none of them in the gathered dict."""
    from safetensors.torch import save_file

    marker = f".{adapter}."
    lora = {
        name.replace(marker, "."): tensor.contiguous()
        for name, tensor in weights.items()
        if ".lora_" in name and marker in name
    }
    if not lora:
        raise RuntimeError("no LoRA weights in the gathered state dict")
    folder.mkdir(parents=True)
    model.peft_config[adapter].save_pretrained(folder)
    save_file(lora, folder / ADAPTER_WEIGHTS, metadata={"format": "pt"})


def restore_whole_adapter(model: Any, checkpoint: Path) -> None:
    """Load a checkpoint's whole adapter into the (not yet sharded) peft model. Under FSDP the
    Trainer's own resume restores the optimizer from the shards but not the LoRA weights
    (accelerate 1.15 finds none of the wrapped LoRA parameters in them and skips each): without
    this a resumed run would go on from freshly initialised adapters."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(checkpoint / ADAPTER_WEIGHTS))
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(
            f"{checkpoint / ADAPTER_WEIGHTS}: unexpected {result.unexpected_keys[:3]}"
        )


def eager_adamw(args: Any) -> tuple[type, dict[str, Any]]:
    """The Trainer's AdamW (`optim: adamw_torch`) with its moments created up front, for FSDP.

    accelerate 1.15 resumes a sharded optimizer by reading the checkpoint into a template made
    from the optimizer's current state; torch's AdamW creates its state at the first step, so at
    resume time the template is empty and nothing is read (the moments would restart from zero).
    Zero moments and step 0 are exactly what the first step would create, so a fresh run is
    unchanged."""
    import torch
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    if cls is not torch.optim.AdamW:
        raise RuntimeError(f"FSDP checkpoints need gpu.optimizer adamw_torch, not {args.optim}")

    class EagerAdamW(torch.optim.AdamW):
        def __init__(self, params: Any, **options: Any) -> None:
            super().__init__(params, **options)
            for group in self.param_groups:
                for param in group["params"]:
                    self.state[param] = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                    }

    return EagerAdamW, kwargs
