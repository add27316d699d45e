"""Stage split: train/test by conversation (seeded hash), so no test context is trained on.

    python stages/split.py data/interim/clean.jsonl --train data/processed/train.jsonl \
        --test data/processed/test.jsonl --metrics metrics/split.json

Reads params `split` (test_fraction, seed).
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import write_json, write_jsonl
from kotune.records import read_records
from kotune.splitting import split_by_conversation


def main(cfg: Config, source: Path, train: Path, test: Path, metrics: Path) -> None:
    records = list(read_records(source))
    train_records, test_records, stats = split_by_conversation(
        records, cfg.split.test_fraction, cfg.split.seed
    )
    write_jsonl(train, train_records)
    write_jsonl(test, test_records)
    write_json(metrics, stats)
    print(f"split: {stats['train_examples']} train / {stats['test_examples']} test examples")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.source, args.train, args.test, args.metrics))
