"""Stage generate: self-instruct records from the persona's seed tasks and a teacher model.

    python stages/generate.py --out data/generated/selfinstruct.jsonl --cache data/generated/cache
      --metrics metrics/generate.json --unfinished data/generated/unfinished

Reads params `persona.generate` and the seed tasks file it names. Disabled (the default), it asks
no teacher: the records file is empty, the metrics are zeros and ingest reads persona.data as
shipped, so the default pipeline needs no server. Enabled, it writes the Alpaca records that
ingest then reads; the cache (persisted) holds every answer, so a rerun or a resumed run replays
without a server.

--unfinished: a folder outside DVC's outputs where every answer is also written until the run
finishes. `dvc exp run` checks out the outputs dvc.lock recorded before it runs the stage, which
would take a stopped run's answers out of the cache; they come back from there.
"""

import argparse
from pathlib import Path

import kotune.stagepath  # noqa: F401  (first: stages/ must not shadow the stdlib's tokenize)
from kotune.config import Config, load_config
from kotune.errors import run_cli
from kotune.files import write_json, write_jsonl
from kotune.selfinstruct.client import resolve_api_key
from kotune.selfinstruct.run import generate_files, zero_metrics


def main(cfg: Config, out: Path, cache: Path, metrics: Path, unfinished: Path | None) -> None:
    gen = cfg.persona.generate
    if not gen.enabled:
        write_jsonl(out, [])
        cache.mkdir(parents=True, exist_ok=True)
        write_json(metrics, zero_metrics())
        print("generate: disabled (persona.generate.enabled=false): ingest reads persona.data")
        return
    api_key = resolve_api_key(gen.teacher.api_key_env, required=False)
    run = generate_files(gen, out, cache, metrics, api_key, unfinished=unfinished)
    teacher = run.teacher
    asked = f"{teacher.calls} HTTP calls, {teacher.retries} retries" if teacher else "no server"
    print(
        f"generate: {len(run.kept)} records from {run.requests} requests ({run.replayed} answers "
        f"from {cache}, {asked}); stopped at {run.stopped}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--unfinished", type=Path, help="where a stopped run survives dvc exp run")
    args = parser.parse_args()
    run_cli(lambda: main(load_config(), args.out, args.cache, args.metrics, args.unfinished))
