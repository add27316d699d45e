"""Stage clean: normalise text, mask personal data, drop empty/over-long turns and duplicates,
check that no PII is left, and draw the data: top nouns and turn lengths.

    python stages/clean.py data/interim/conversations.jsonl --out data/interim/clean.jsonl \
        --audit data/interim/pii_audit.jsonl --metrics metrics/clean.json \
        --nouns metrics/plots/top_nouns.csv --lengths metrics/plots/turn_lengths.csv

Reads params `clean` and `persona.pii` (and the names file it points to). Every dropped turn or conversation and every masked span
is counted in the metrics; the audit says where (record, message, kind, offsets), never what.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.cleaning import clean_dataset
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import paused_gc, read_jsonl, read_names, write_csv, write_json, write_jsonl
from kotune.profiling import sample_texts, top_nouns, turn_length_table
from kotune.records import check_record


def main(cfg: Config, args: argparse.Namespace) -> None:
    from kiwipiepy import Kiwi

    pii = cfg.persona.pii
    names = read_names(pii.names_file) if pii.names_file else []
    kiwi = Kiwi() if pii.kiwi_names else None
    with paused_gc():
        records = []
        for lineno, record in read_jsonl(args.source):
            check_record(record, f"{args.source}:{lineno}")
            records.append(record)
        kept, stats, audit = clean_dataset(records, cfg.clean, pii, names, kiwi)
        del records
    texts = sample_texts(
        [m["content"] for r in kept for m in r["messages"]], cfg.clean.noun_sample_chars
    )
    nouns = top_nouns(texts, cfg.clean.top_nouns, Kiwi()) if cfg.clean.top_nouns else []
    write_jsonl(args.out, kept)
    write_jsonl(args.audit, audit)
    write_json(args.metrics, stats)
    write_csv(args.nouns, [{"noun": n, "count": c} for n, c in nouns], ["noun", "count"])
    write_csv(args.lengths, turn_length_table(kept), ["length", "user", "assistant"])
    masked = sum(v for k, v in stats.items() if k.startswith("masked_"))
    print(
        f"clean: kept {stats['conversations_out']} of {stats['conversations_in']} conversations, masked {masked} PII spans"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    for flag in ("--out", "--audit", "--metrics", "--nouns", "--lengths"):
        parser.add_argument(flag, type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args))
