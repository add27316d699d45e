"""Stage export: the best checkpoint as a self-contained adapter folder for chat and serving.

    python stages/export.py --checkpoints models/checkpoints --base models/base \
        --train-metrics metrics/train.json --eval-metrics metrics/eval.json \
        --split-metrics metrics/split.json --data data/processed/train.jsonl \
        --data data/processed/test.jsonl --out models/adapter

Reads params `persona`, `model`, `gpu`, `train` and `split` (written into kotune.json and the card).
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.export import export_adapter
from kotune.files import atomic_dir, read_json


def main(cfg: Config, args: argparse.Namespace) -> None:
    metrics = {
        "train": read_json(args.train_metrics),
        "eval": read_json(args.eval_metrics),
        "split": read_json(args.split_metrics),
    }
    checkpoint = args.checkpoints / metrics["train"]["best_checkpoint"]
    with atomic_dir(args.out) as tmp:
        export_adapter(cfg, checkpoint, args.base, args.data, metrics, tmp)
    print(f"export: {checkpoint.name} → {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in (
        "--checkpoints",
        "--base",
        "--train-metrics",
        "--eval-metrics",
        "--split-metrics",
        "--out",
    ):
        parser.add_argument(flag, type=Path, required=True)
    parser.add_argument("--data", type=Path, action="append", required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args))
