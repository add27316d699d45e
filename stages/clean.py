"""Stage clean: normalise text, (mask PII), drop empty/over-long turns and duplicates.

    python stages/clean.py data/interim/conversations.jsonl --out data/interim/clean.jsonl \
        --metrics metrics/clean.json

Reads params `clean`. Every dropped turn or conversation is counted in the metrics.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.cleaning import clean_conversations
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import read_jsonl, write_json, write_jsonl
from kotune.records import check_record


def main(cfg: Config, source: Path, out: Path, metrics: Path) -> None:
    records = []
    for lineno, record in read_jsonl(source):
        check_record(record, f"{source}:{lineno}")
        records.append(record)
    kept, stats = clean_conversations(records, cfg.clean)
    write_jsonl(out, kept)
    write_json(metrics, stats)
    print(f"clean: kept {stats['conversations_out']} of {stats['conversations_in']} conversations")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.source, args.out, args.metrics))
