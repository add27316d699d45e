"""Stage base: the model LoRA adapts. Scratch: tokenizer + tiny GPT-NeoX trained on the train
split; hub/local: the pinned revision and file hashes of existing weights.

    python stages/base.py data/processed/train.jsonl --out models/base --metrics metrics/base.json \
        --timing metrics/timing/base.json

Reads params `model`, `base` and `persona` (system prompt, learned as words by the tokenizer).
The warm-up's seconds and tokens/s go to --timing (git-ignored, not a DVC output: see
kotune.reproducible), so that models/base and metrics/base.json are the same bytes every run.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import atomic_dir, write_json
from kotune.modeling.base import build_scratch_base, pin_pretrained_base
from kotune.records import read_records
from kotune.reproducible import pin_cpu_math, write_timing


def main(cfg: Config, train: Path, out: Path, metrics: Path, timing: Path | None = None) -> None:
    if cfg.model.source == "scratch":
        pin_cpu_math()  # the same bits on any x86-64 CPU with AVX2 (before torch loads)
    with atomic_dir(out) as tmp:
        if cfg.model.source == "scratch":
            records = list(read_records(train))
            stats, figures = build_scratch_base(records, cfg, tmp)
        else:
            stats, figures = pin_pretrained_base(cfg, tmp), {}
    write_json(metrics, {"source": cfg.model.source, **stats})
    write_timing(timing, figures)
    print(f"base: {cfg.model.name} ({cfg.model.source}) in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--timing", type=Path, help="run-time figures (not a DVC output)")
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.train, args.out, args.metrics, args.timing))
