"""Stage ingest: the persona's raw data in its format → conversation records.

    python stages/ingest.py --generated data/generated/selfinstruct.jsonl
      --out data/interim/conversations.jsonl --metrics metrics/ingest.json

Reads params `persona.data` (format, path, options) and `persona.generate` (enabled,
add_to_data), the files under data.path and, when generation is enabled, the generated records.
What was skipped (system notices, photos, …) is counted in the metrics and said in one line.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import write_json
from kotune.ingest import describe, ingest_persona


def main(cfg: Config, generated: Path | None, out: Path, metrics: Path) -> None:
    stats = ingest_persona(cfg.persona.data, cfg.persona.generate, generated, out)
    write_json(metrics, stats)
    skipped = describe(stats)
    print(
        f"ingest: {stats['conversations']} conversations, {stats['examples']} examples"
        + (f" ({skipped})" if skipped else "")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=Path, help="the generate stage's records")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.generated, args.out, args.metrics))
