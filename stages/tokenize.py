"""Stage tokenize: examples → input_ids and labels (-100 on the prompt), saved as a datasets
DatasetDict with train and test splits.

    python stages/tokenize.py --train data/processed/train.jsonl --test data/processed/test.jsonl \
        --base models/base --out data/tokenized --metrics metrics/tokenize.json

Reads params `tokenize`, `gpu.max_seq_len` (the profile's cap on the persona's length), `model`
(prompt format, end-of-turn token) and `persona` (system prompt).
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import DataError, run_cli
from kotune.files import atomic_dir, write_json
from kotune.inference.loading import load_tokenizer
from kotune.modeling.manifest import base_location
from kotune.prompting import config_prompt_builder
from kotune.records import read_records, training_examples
from kotune.tokenizing import tokenize_split


def main(cfg: Config, splits: dict[str, Path], base: Path, out: Path, metrics: Path) -> None:
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # "Saving the dataset (1/1 shards)" for a file written in a blink

    tokenizer = load_tokenizer(*base_location(base))
    builder = config_prompt_builder(tokenizer, cfg)
    datasets, stats = {}, {}
    for name, path in splits.items():
        examples = [e for r in read_records(path) for e in training_examples(r)]
        rows, counts = tokenize_split(builder, examples, cfg.max_seq_len)
        if not rows:
            raise DataError(
                f"{path}: no example fits in {cfg.max_seq_len} tokens (tokenize.max_seq_len "
                f"{cfg.tokenize.max_seq_len}, gpu.max_seq_len {cfg.gpu.max_seq_len})"
            )
        datasets[name] = Dataset.from_list(rows)
        stats.update({f"{name}_{key}": value for key, value in counts.items()})
    with atomic_dir(out) as tmp:
        DatasetDict(datasets).save_to_disk(str(tmp))
    write_json(metrics, stats)
    print(f"tokenize: {stats['train_examples']} train / {stats['test_examples']} test examples")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    splits = {"train": args.train, "test": args.test}
    run_cli(lambda: main(load_config(), splits, args.base, args.out, args.metrics))
