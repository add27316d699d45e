"""Stage ingest: the persona's raw data in its format → conversation records.

    python stages/ingest.py --out data/interim/conversations.jsonl --metrics metrics/ingest.json

Reads params `persona` (data.format, data.path, data.options) and the files under data.path.
What was skipped (system notices, photos, …) is counted in the metrics and said in one line.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import write_json
from kotune.ingest import describe, ingest_file


def main(cfg: Config, out: Path, metrics: Path) -> None:
    data = cfg.persona.data
    stats = ingest_file(data.format, [Path(data.path)], data.options, out)
    write_json(metrics, stats)
    skipped = describe(stats)
    print(
        f"ingest: {stats['conversations']} conversations, {stats['examples']} examples"
        + (f" ({skipped})" if skipped else "")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.out, args.metrics))
