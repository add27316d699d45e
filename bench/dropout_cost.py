"""What LoRA dropout 0 (the faster path on a GPU) costs in eval_loss, on the personas' own data.

A benchmark, not a test: for each persona, the real stage scripts run as dvc.yaml runs them
(ingest → clean → split → base → tokenize once, then train once per dropout, each in a fresh
folder with the same base, data and seed), i.e. what `dvc exp run -S persona=P -S
train.lora.dropout=D` trains. The default model and profile are the tiny scratch model on the CPU
(`model=tiny gpu=cpu`): evidence about this model, not about a 5.8B one.

    nice python bench/dropout_cost.py --out DIR                       # mencius, kakaotalk; 0.05, 0
    python bench/dropout_cost.py --out DIR --personas menu --dropouts 0.1,0.05,0

A re-run with the same params reuses the prepared base and data (scratch/PERSONA/prepared).
Writes DIR/dropout_cost.json (per persona and dropout: metrics/train.json and the eval_loss curve)
and DIR/dropout_cost.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_profiles import ROOT, stage  # noqa: E402

PREPARE = ("ingest", "clean", "split", "base", "tokenize")


def params_for(persona: str, dropout: float, extra: list[str]) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from kotune.config import compose, parse_config

    data = compose([f"persona={persona}", f"train.lora.dropout={dropout}", *extra], ROOT / "conf")
    parse_config(data)  # a bad override stops here, not in a stage
    return data


def eval_curve(work: Path) -> dict[int, float]:
    """eval_loss at each evaluation (DVCLive's eval/loss.tsv)."""
    path = work / "metrics" / "train_live" / "plots" / "metrics" / "eval" / "loss.tsv"
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]
    return {int(row["step"]): round(float(row["loss"]), 5) for row in rows}


def run_persona(
    persona: str, dropouts: list[float], extra: list[str], scratch: Path, out: Path
) -> list[dict]:
    prepared = scratch / persona / "prepared"
    params = params_for(persona, dropouts[0], extra)
    text = yaml.safe_dump(params, allow_unicode=True)
    done = prepared / "done.yaml"  # written last: the same params reuse base and data
    reuse = done.is_file() and done.read_text() == text
    if not reuse:
        shutil.rmtree(scratch / persona, ignore_errors=True)
        (prepared / "data").mkdir(parents=True)
        (prepared / "data" / "raw").symlink_to(ROOT / "data" / "raw")  # data.path is relative
    results = []
    with open(out / f"{persona}.log", "a") as log:
        seconds: dict[str, float] = {}
        if not reuse:
            (prepared / "params.yaml").write_text(text)
            seconds = {name: round(stage(prepared, log, name), 1) for name in PREPARE}
            done.write_text(text)
        for dropout in dropouts:
            work = scratch / persona / f"dropout-{dropout}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            (work / "params.yaml").write_text(
                yaml.safe_dump(params_for(persona, dropout, extra), allow_unicode=True)
            )
            for shared in ("models/base", "data/tokenized"):
                shutil.copytree(prepared / shared, work / shared)
            train_s = round(stage(work, log, "train"), 1)
            train = json.loads((work / "metrics" / "train.json").read_text())
            results.append(
                {
                    "persona": persona,
                    "dropout": dropout,
                    "overrides": extra,
                    "prepare_seconds": seconds,
                    "train_seconds": train_s,
                    "train": train,
                    "eval_loss_by_step": eval_curve(work),
                }
            )
            print(
                f"{persona} dropout {dropout}: best eval_loss {train['best_eval_loss']} at step "
                f"{train['best_step']} of {train['global_step']} ({train_s} s)",
                flush=True,
            )
    return results


def table(results: list[dict]) -> str:
    """One row per persona and dropout; Δ against the persona's first dropout, and every run's
    eval_loss at the last evaluation step all of the persona's runs reached."""
    lines = [
        "| persona | LoRA dropout | steps (stopped early?) | best eval_loss (step) | Δ vs first "
        "dropout | eval_loss at the last common step | final train loss | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first: dict[str, dict] = {}
    common: dict[str, set[int]] = {}
    curves = [{int(k): v for k, v in r["eval_loss_by_step"].items()} for r in results]  # JSON: str
    for r, curve in zip(results, curves):
        first.setdefault(r["persona"], r)
        common[r["persona"]] = common.get(r["persona"], set(curve)) & set(curve)
    for r, curve in zip(results, curves):
        t, b = r["train"], first[r["persona"]]["train"]
        step = max(common[r["persona"]], default=None)
        at_common = f"{curve[step]} (step {step})" if step else "-"
        lines.append(
            f"| {r['persona']} | {r['dropout']} | {t['global_step']} "
            f"({'yes' if t['stopped_early'] else 'no'}) | {t['best_eval_loss']} ({t['best_step']}) "
            f"| {t['best_eval_loss'] - b['best_eval_loss']:+.4f} | {at_common} | "
            f"{t['final_train_loss']} | {r['train_seconds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--personas", default="mencius,kakaotalk")
    parser.add_argument("--dropouts", default="0.05,0", help="the first is the reference")
    parser.add_argument(
        "--set", action="append", default=[], help="more overrides, e.g. model=… (repeatable)"
    )
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/kotune-dropout"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dropouts = [float(d) for d in args.dropouts.split(",")]
    started = time.perf_counter()
    results: list[dict] = []
    for persona in args.personas.split(","):
        results += run_persona(persona, dropouts, args.set, args.scratch, args.out)
        (args.out / "dropout_cost.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    (args.out / "dropout_cost.md").write_text(text + "\n")
    print(f"\n## dropout_cost ({time.perf_counter() - started:.0f} s)\n\n{text}")


if __name__ == "__main__":
    main()
