"""Stage train: QLoRA (4-bit NF4 base + LoRA) with the Trainer; a checkpoint every eval_steps,
early stopping on eval_loss, resumable.

    python stages/train.py --base models/base --data data/tokenized --out models/checkpoints \
        --live metrics/train_live --metrics metrics/train.json --unfinished models/unfinished \
        --timing metrics/timing/train.json

Reads params `train`, `gpu`, `model`, `tokenize` and `persona` (all part of the resume check).
With `gpu.num_processes` > 1 the same command runs itself on that many processes via torchrun
(`gpu.distributed: ddp`) or `accelerate launch` with an FSDP config (`fsdp`); rank 0 writes the
metrics. Ctrl-C keeps the checkpoints: run it again to continue (exit 130).
--unfinished: a folder outside DVC's outputs where a stopped run's checkpoints are linked as
they are saved, so that `dvc exp run` (which checks its outputs out first) can resume too.
--timing: this session's seconds, tokens/s and peak memory (git-ignored, not a DVC output), so
that the checkpoints and metrics/train.json are the same bytes every run. On the CPU the math is
pinned to one thread and the AVX2 code path (kotune.reproducible): the same bytes on any x86-64
CPU with AVX2.
"""

import argparse
import sys
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import KotuneError, run_cli
from kotune.files import write_json
from kotune.modeling.memory import check_fits, oom_message
from kotune.reproducible import pin_cpu_math, write_timing
from kotune.training.launch import (
    is_main_process,
    needs_launcher,
    relaunch,
    relaunch_fsdp,
    stopped,
)


def main(
    cfg: Config,
    base: Path,
    data: Path,
    out: Path,
    live: Path,
    metrics: Path,
    unfinished: Path | None = None,
    timing: Path | None = None,
) -> int:
    if needs_launcher(cfg.world_size):
        check_fits(cfg, base)  # once here, not once per process
        if cfg.gpu.distributed == "fsdp":  # accelerate launch, the profile's FSDP config
            return relaunch_fsdp(cfg.gpu, cfg.model.family)
        return relaunch(cfg.gpu.num_processes, num_machines=cfg.gpu.num_machines)  # torchrun
    import torch

    from kotune.training.qlora import TrainingStopped, train_adapter

    try:
        stats, figures = train_adapter(cfg, base, data, out, live, unfinished)
    except TrainingStopped as stop:
        if is_main_process():
            print(f"train: {stop}", file=sys.stderr)
        return stopped()
    except torch.OutOfMemoryError:
        raise KotuneError(oom_message(cfg)) from None
    if is_main_process():
        write_json(metrics, stats)
        write_timing(timing, figures)
        print(f"train: best {stats['best_checkpoint']} (eval_loss {stats['best_eval_loss']})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--unfinished", type=Path, help="where a stopped run survives dvc exp run")
    parser.add_argument("--timing", type=Path, help="run-time figures (not a DVC output)")
    args = parser.parse_args()

    def run() -> int:
        cfg = load_config()
        if cfg.gpu.device == "cpu":
            pin_cpu_math()  # before torch loads; torchrun's and accelerate's workers inherit it
        paths = (args.base, args.data, args.out, args.live, args.metrics)
        return main(cfg, *paths, args.unfinished, args.timing)

    run_cli(run)
