"""Stage clean: normalise text, mask personal data, drop empty/over-long turns and duplicates,
check that no PII is left, and draw the data: top nouns and turn lengths.

    python stages/clean.py data/interim/conversations.jsonl --out data/interim/clean.jsonl \
        --audit data/interim/pii_audit.jsonl --metrics metrics/clean.json \
        --nouns metrics/plots/top_nouns.csv --lengths metrics/plots/turn_lengths.csv

Reads params `clean` and `persona.pii` (and the names file it points to). Every dropped turn or
conversation and every masked span is counted in the metrics and said in one line; the audit
says where (record, message, kind, offsets), never what. Runs on every core.
"""

import argparse
import json
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.cleaning import clean_file, describe
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import read_names, write_csv, write_json
from kotune.profiling import sample_every, top_nouns, turn_length_table


def main(cfg: Config, args: argparse.Namespace) -> None:
    from kiwipiepy import Kiwi

    pii = cfg.persona.pii
    names = read_names(pii.names_file) if pii.names_file else []
    cleaned = clean_file(args.source, args.out, args.audit, cfg.clean, pii, names)
    stats = cleaned.stats
    nouns = []
    if cfg.clean.top_nouns:
        with args.out.open("rb") as handle:
            texts = []
            for i in sample_every(cleaned.sizes, cfg.clean.noun_sample_chars):
                handle.seek(cleaned.offsets[i])
                texts += [m["content"] for m in json.loads(handle.readline())["messages"]]
        nouns = top_nouns(texts, cfg.clean.top_nouns, Kiwi())
    write_json(args.metrics, stats)
    write_csv(args.nouns, [{"noun": n, "count": c} for n, c in nouns], ["noun", "count"])
    write_csv(args.lengths, turn_length_table(cleaned.lengths), ["length", "user", "assistant"])
    masked = sum(v for k, v in stats.items() if k.startswith("masked_"))
    print(
        f"clean: kept {stats['conversations_out']} of {stats['conversations_in']} conversations "
        f"({describe(stats, cfg.clean)}), masked {masked} PII spans"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    for flag in ("--out", "--audit", "--metrics", "--nouns", "--lengths"):
        parser.add_argument(flag, type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args))
