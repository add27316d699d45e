"""Stage evaluate: the best checkpoint on the test split — eval_loss, perplexity, and generated
answers scored with ROUGE-1/2/L and BLEU on Kiwi morphemes and chrF.

    python stages/evaluate.py --base models/base --checkpoints models/checkpoints \
        --train-metrics metrics/train.json --data data/tokenized --test data/processed/test.jsonl \
        --metrics metrics/eval.json --predictions metrics/predictions.jsonl

Reads params `evaluate`, `persona` (generation, stop patterns), `model` and `gpu`. On the CPU
the math is pinned as in train (kotune.reproducible): the same loss and answers on any x86-64
CPU with AVX2.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.evaluation import evaluate_adapter
from kotune.files import read_json, write_json, write_jsonl
from kotune.records import read_records
from kotune.reproducible import pin_cpu_math


def main(cfg: Config, args: argparse.Namespace) -> None:
    from datasets import load_from_disk

    best = read_json(args.train_metrics)["best_checkpoint"]
    test_rows = load_from_disk(str(args.data))["test"].to_list()
    test_records = list(read_records(args.test))
    stats, predictions = evaluate_adapter(
        cfg, args.base, args.checkpoints / best, test_rows, test_records
    )
    write_jsonl(args.predictions, predictions)
    write_json(args.metrics, {"checkpoint": best, **stats})
    print(f"evaluate: {best} eval_loss {stats['eval_loss']}, rougeL {stats['rougeL_kiwi']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in (
        "--base",
        "--checkpoints",
        "--train-metrics",
        "--data",
        "--test",
        "--metrics",
        "--predictions",
    ):
        parser.add_argument(flag, type=Path, required=True)
    args = parser.parse_args()

    def run() -> None:
        cfg = load_config()
        if cfg.gpu.device == "cpu":
            pin_cpu_math()  # before torch loads
        main(cfg, args)

    run_cli(run)
