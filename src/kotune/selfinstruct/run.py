"""A self-instruct run from a config to its files: the records (Alpaca JSONL) and the metrics;
what `kotune selfinstruct` and the generate stage both call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotune.config import GenerateConfig
from kotune.files import write_json, write_jsonl
from kotune.selfinstruct.engine import METRIC_KEYS, SelfInstruct
from kotune.selfinstruct.seeds import read_seed_tasks


def zero_metrics() -> dict[str, int]:
    """What the generate stage reports when generation is disabled."""
    return dict(sorted((key, 0) for key in METRIC_KEYS))


def generate_files(
    cfg: GenerateConfig,
    out: str | Path,
    cache_dir: str | Path,
    metrics: str | Path | None,
    api_key: str,
    show_progress: bool | None = None,
    morphemes: Any = None,
    unfinished: str | Path | None = None,
) -> SelfInstruct:
    """Run self-instruct from `cfg.seeds`; write the Alpaca records (JSONL) and the metrics.

    Whatever stops the run once answers were applied (the end, Ctrl-C, a teacher that keeps
    failing) leaves the records so far in `out`: every answer is in the cache, so the same
    command continues and ends with the file an uninterrupted run writes. Nothing is written
    if it stops before (bad seeds, a wrong URL or key). `morphemes`: a KiwiMorphemes to reuse.
    `unfinished`: a folder outside DVC's outputs keeping every answer until the run finishes
    (the generate stage's: `dvc exp run` resets its outputs before it runs the stage again)."""
    run = SelfInstruct(cfg, read_seed_tasks(cfg.seeds), cache_dir, api_key, morphemes, unfinished)
    try:
        run.run(show_progress)
        run.cache.drop_kept()
    finally:
        if run.requests:
            write_jsonl(out, run.records())
            if metrics:
                write_json(metrics, run.metrics())
    return run
