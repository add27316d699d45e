"""Stage train: QLoRA (4-bit NF4 base + LoRA) with the Trainer; a checkpoint every eval_steps,
early stopping on eval_loss, resumable.

    python stages/train.py --base models/base --data data/tokenized --out models/checkpoints \
        --live metrics/train_live --metrics metrics/train.json

Reads params `train`, `gpu`, `model`, `tokenize` and `persona` (all part of the resume check).
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import write_json
from kotune.training.qlora import train_adapter


def main(cfg: Config, base: Path, data: Path, out: Path, live: Path, metrics: Path) -> None:
    stats = train_adapter(cfg, base, data, out, live)
    write_json(metrics, stats)
    print(f"train: best {stats['best_checkpoint']} (eval_loss {stats['best_eval_loss']})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.base, args.data, args.out, args.live, args.metrics))
