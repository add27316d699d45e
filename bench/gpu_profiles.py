"""The pipeline on a real GPU, per GPU profile: peak memory and seconds per step (a benchmark,
not a test; needs CUDA and bitsandbytes).

Each case runs the real stage scripts (base → tokenize → train) in its own folder with its own
params.yaml: the tiny model built by the base stage, and random-weight models of the exact
shapes of the real bases (polyglot-ko-1.3b, KoAlpaca-Polyglot-5.8B) loaded from a local folder
the way a downloaded model is. Random weights are for timing and memory only; their loss means
nothing. They use the tiny model's tokenizer (a 5,681-token BPE inside the real 30,080-row
embedding), so sequence lengths are the Mencius sample's as the tiny tokenizer cuts them.

    python bench/gpu_profiles.py compose          # here (needs Hydra): bench/gpu/params/*.yaml
    python bench/gpu_profiles.py run --out DIR [CASE …]   # on the GPU machine

Peak memory is torch's max allocated / reserved in the train stage (metrics/timing/train.json),
which excludes the CUDA context (~0.5 GiB): compare reserved + context with the card.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "bench" / "gpu" / "params"

# case: (model, gpu profile, extra overrides, random weights?)
CASES = {
    "tiny-h100": ("tiny", "h100-80gb", [], False),
    "tiny-t4": ("tiny", "t4", ["train.max_steps=30"], False),
    "polyglot1.3b-rtx3060ti": (
        "polyglot-ko-1.3b",
        "rtx3060ti-8gb",
        ["train.max_steps=12", "train.eval_steps=12"],
        True,
    ),
    "koalpaca5.8b-t4": (
        "koalpaca-polyglot-5.8b",
        "t4",
        ["train.max_steps=12", "train.eval_steps=12"],
        True,
    ),
    "koalpaca5.8b-h100": (
        "koalpaca-polyglot-5.8b",
        "h100-80gb",
        ["train.max_steps=12", "train.eval_steps=12"],
        True,
    ),
    # issue 16: the h200-141gb profile through the Trainer, against train_speed.py's loop on
    # the same shape (steady tok/s after 3 warm-up steps): as shipped (compile auto: a 15-step
    # run does not pay for compilation, so eager, like train_speed's h200-eager), and compiled
    "koalpaca5.8b-h200": (
        "koalpaca-polyglot-5.8b",
        "h200-141gb",
        ["train.max_steps=15", "train.eval_steps=15"],
        True,
    ),
    "koalpaca5.8b-h200-compiled": (
        "koalpaca-polyglot-5.8b",
        "h200-141gb",
        ["train.max_steps=15", "train.eval_steps=15", "gpu.compile=true"],
        True,
    ),
    # issue 17, on two GPUs (nvidia-h200-x2): t4x2 (DDP) and FSDP-QLoRA, 5.8B and 12.8B
    "koalpaca5.8b-t4x2": (
        "koalpaca-polyglot-5.8b",
        "t4x2",
        ["train.max_steps=15", "train.eval_steps=15"],
        True,
    ),
    "koalpaca5.8b-h200x2-fsdp": (
        "koalpaca-polyglot-5.8b",
        "h200x2-fsdp",
        ["train.max_steps=15", "train.eval_steps=15"],
        True,
    ),
    "koalpaca12.8b-h200x2-fsdp": (
        "koalpaca-polyglot-12.8b",
        "h200x2-fsdp",
        ["train.max_steps=15", "train.eval_steps=15"],
        True,
    ),
    # the same settings on one card (4 × accumulation 2): the loss curve and per-card peak
    # the two-card runs are compared with
    "koalpaca5.8b-h200x2-fsdp-1card": (
        "koalpaca-polyglot-5.8b",
        "h200x2-fsdp",
        ["train.max_steps=15", "train.eval_steps=15", "gpu.num_processes=1", "gpu.distributed=ddp"],
        True,
    ),
    "koalpaca12.8b-h200x2-fsdp-1card": (
        "koalpaca-polyglot-12.8b",
        "h200x2-fsdp",
        ["train.max_steps=15", "train.eval_steps=15", "gpu.num_processes=1", "gpu.distributed=ddp"],
        True,
    ),
    "koalpaca5.8b-t4x2-1card": (
        "koalpaca-polyglot-5.8b",
        "t4x2",
        ["train.max_steps=15", "train.eval_steps=15", "gpu.num_processes=1"],
        True,
    ),
}


def compose_all() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from kotune.config import compose, parse_config

    PARAMS.mkdir(parents=True, exist_ok=True)
    for case, (model, gpu, extra, _) in CASES.items():
        data = compose([f"model={model}", f"gpu={gpu}", *extra], ROOT / "conf")
        parse_config(data)
        (PARAMS / f"{case}.yaml").write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        )
        print(f"wrote {PARAMS / case}.yaml")


def stage(work: Path, log, name: str) -> float:
    """Run a stage exactly as dvc.yaml's cmd says (its script from this checkout), in `work`."""
    cmd = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"])
    assert cmd[:2] == ["exec", "python"], cmd  # cmd: exec python stages/<name>.py …
    command = [sys.executable, str(ROOT / cmd[2]), *cmd[3:]]
    start = time.perf_counter()
    print(f"$ {' '.join(command)}", file=log, flush=True)
    result = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise RuntimeError(f"{name} failed ({result.returncode}); see the log")
    return time.perf_counter() - start


def random_base(model_dir: Path, params: dict, tokenizer_from: Path) -> float:
    """A random-weight model of the yaml's exact shape, saved as a local Hugging Face folder."""
    sys.path.insert(0, str(ROOT / "src"))
    from kotune.config import parse_config
    from kotune.modeling.shapes import save_random_model

    start = time.perf_counter()
    cfg = parse_config(params)
    dtype = "float16" if cfg.gpu.compute_dtype == "float16" else "bfloat16"
    save_random_model(
        cfg.model.family,
        cfg.model.shape,
        model_dir,
        dtype=dtype,
        device="cuda",
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    import torch

    torch.cuda.empty_cache()  # this process keeps nothing on the card while the stages run
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_from / name, model_dir / name)
    return time.perf_counter() - start


def run_case(case: str, out: Path, scratch: Path) -> dict:
    model, gpu, _, random = CASES[case]
    work = scratch / case
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    processed = ROOT / "data" / "processed"
    if not (processed / "train.jsonl").is_file():  # the GPU machine has no DVC outputs: carried
        processed = ROOT / ".carry" / "processed"
    shutil.copytree(processed, work / "data" / "processed", ignore=shutil.ignore_patterns(".*"))
    params = yaml.safe_load((PARAMS / f"{case}.yaml").read_text())
    seconds: dict[str, float] = {}
    with open(out / f"{case}.log", "w") as log:
        if random:
            model_dir = scratch / f"{model}-random"
            if not (model_dir / "config.json").is_file():
                tokenizer = scratch / "tiny-h100" / "models" / "base"
                if not tokenizer.is_dir():  # the tiny case ran elsewhere: its tokenizer, carried
                    tokenizer = ROOT / ".carry" / "tok"
                seconds["random_weights"] = random_base(model_dir, params, tokenizer)
            params["model"].update(source="local", path=str(model_dir), hub_id=None)
        (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        built = scratch / "tiny-h100" / "models" / "base"
        if model == "tiny" and case != "tiny-h100" and built.is_dir():
            shutil.copytree(built, work / "models" / "base")  # same data and base params
        else:
            seconds["base"] = stage(work, log, "base")
        seconds["tokenize"] = stage(work, log, "tokenize")
        seconds["train"] = stage(work, log, "train")
    train = json.loads((work / "metrics" / "train.json").read_text())
    # run times, tokens/s and peak memory: the stage writes them apart from its metrics
    timing = work / "metrics" / "timing" / "train.json"
    if timing.is_file():
        train.update(json.loads(timing.read_text()))
    # the per-step train loss (DVCLive's curve): two-GPU runs are compared with one card's
    curve = work / "metrics" / "train_live" / "plots" / "metrics" / "train" / "loss.tsv"
    lines = curve.read_text().splitlines() if curve.is_file() else []
    columns = lines[0].split("\t") if lines else []
    rows = [dict(zip(columns, line.split("\t"))) for line in lines[1:]]
    result = {
        "case": case,
        "micro_batch_size": params["gpu"]["micro_batch_size"],
        "model": model,
        "gpu_profile": gpu,
        "random_weights": random,
        "stage_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "train": train,
        "train_loss_by_step": {int(row["step"]): float(row["loss"]) for row in rows},
    }
    (out / f"{case}.json").write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    import torch

    lines = [
        f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}",
        "| case | profile | micro×accum | steps | s/step | real tok/s | steady tok/s | steady "
        "s/step | compiled at | peak alloc GiB | peak reserved GiB | estimate GiB | best eval_loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["train"]
        step = t.get("seconds_per_step") or t["runtime_seconds"] / max(1, t["global_step"])
        lines.append(
            f"| {r['case']} | {r['gpu_profile']} | {r.get('micro_batch_size', '?')}×"
            f"{t['grad_accum_steps']} | {t['global_step']} | {step:.3f} | "
            f"{t.get('train_tokens_per_second')} | {t.get('steady_tokens_per_second')} | "
            f"{t.get('steady_seconds_per_step')} | {t.get('compiled_at_step')} | "
            f"{t.get('peak_allocated_gib')} | "
            f"{t.get('peak_reserved_gib')} | {t.get('estimated_memory_gib')} | "
            f"{t['best_eval_loss']}{' (random)' if r['random_weights'] else ''} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("compose")
    p_run = sub.add_parser("run")
    p_run.add_argument("cases", nargs="*", default=list(CASES))
    p_run.add_argument("--out", type=Path, required=True)
    p_run.add_argument("--scratch", type=Path, default=Path("/tmp/kotune-gpu"))
    args = parser.parse_args()
    if args.command == "compose":
        compose_all()
        return
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    results = []
    for case in args.cases:
        print(f"== {case}", flush=True)
        try:
            results.append(run_case(case, args.out, args.scratch))
            print(json.dumps(results[-1]["train"]), flush=True)
        except RuntimeError as error:
            print(f"{case}: {error}", flush=True)
            print((args.out / f"{case}.log").read_text()[-4000:], flush=True)
        (args.out / "summary.md").write_text(table(results) + "\n")  # a cut-off run keeps it
    print(table(results))


if __name__ == "__main__":
    main()
