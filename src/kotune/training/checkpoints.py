"""A training run's checkpoints and curves: which run a checkpoint belongs to (its fingerprint),
which one to resume from, and the curves and loss figures that survive a resume.

Every checkpoint-N is kept (DVC versions them); a run resumes only from the last complete one of
a run with the same fingerprint.
"""

from __future__ import annotations

import json
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
    return digest_of({"params": json.dumps(params, sort_keys=True), "base": base, **data})


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


def prepare_checkpoints_dir(checkpoints_dir: Path, fingerprint: str, resume: bool) -> Path | None:
    """The checkpoint to resume from (anything saved after it removed: a cut-off save), or None
    after emptying the folder for a fresh run. Rank 0 alone calls this."""
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
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            accelerator = trainer.accelerator
            weights = accelerator.get_state_dict(trainer.model)  # collective: every rank
            if accelerator.is_main_process:
                partial = folder.with_name(folder.name + ".adapter")
                shutil.rmtree(partial, ignore_errors=True)
                model = accelerator.unwrap_model(trainer.model)
                model.save_pretrained(partial, state_dict=weights, safe_serialization=True)
                files = sorted(partial.iterdir(), key=lambda p: p.name == ADAPTER_WEIGHTS)
                for file in files:  # the weights last: their presence marks the save complete
                    file.replace(folder / file.name)
                partial.rmdir()
            accelerator.wait_for_everyone()

    return WholeAdapter()
