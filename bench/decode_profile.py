"""Where a decode step's time goes, in one process and without HTTP: the model's decode call
alone against the engine's whole step, for 1, 8 and 32 running answers.

    python bench/decode_profile.py --out DIR            # H200: the 5.8B shape, bf16 merged (~3 min)
    python bench/decode_profile.py --smoke --out DIR    # CPU: a tiny shape, the same code path

The model is serve_speed.py's: a random-weight KoAlpaca-Polyglot-5.8B look-alike exported as
kotune exports it, loaded by `load_exported` (LoRA merged into bf16), in an Engine with
--widths slots and the decode step compiled for exactly those widths (CUDA graphs on a GPU).

Per width w, medians over --steps steps:
  eager      the engine's decode function called with its static inputs, not compiled
  graph      the same captured by hand in one torch.cuda.CUDAGraph and replayed (GPU only):
             the floor a decode step can reach on this card, launches gone
  compiled   the engine's compiled decode called directly (dynamo's guards, inductor's launches)
  replay     what the engine calls each step on a GPU: the compiled decode captured in a CUDA
             graph per width, replayed (and whether its greedy ids equal the compiled call's)
  engine     the engine's whole loop iteration with w answers running (inputs to the device,
             decode, choice of the tokens, detokenization, stop checks, the callers' sinks):
             the time between two steps' starts while exactly w answers run
  host       engine − (replay, else compiled): the engine's own per-step overhead
Each answer is greedy with the persona's repetition penalty and the end of text banned
(logit_bias), as serve_speed's streams are; the sink only collects the text.
--profile: torch.profiler's top host ops over 20 engine steps at width 1 (profile_w1.txt).
The dynamo/inductor counters (graph breaks, recompiles, CUDA graph skips) go into the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookalike import SPECIAL_IDS, model_spec, random_base  # noqa: E402
from measure import begin_run, copy_gbps, device_facts, free, markdown_table, median_ms  # noqa: E402
from serve_speed import MODEL, data_texts, export_lookalike, questions  # noqa: E402


def bare_args(batcher: Any, width: int) -> tuple[Any, ...]:
    """The decode function's inputs for `width` rows: the engine's own static buffers."""
    return batcher.decode_args(width)


def hand_graph_ms(batcher: Any, width: int, steps: int) -> float | None:
    """The eager decode function captured in one CUDA graph and replayed (None if it cannot be
    captured: the reason is printed)."""
    import torch

    args = bare_args(batcher, width)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(3):
                    batcher.decode_function(*args)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                batcher.decode_function(*args)
    except Exception as error:  # noqa: BLE001 - a diagnostic, not the engine's path
        print(f"hand capture at width {width} failed: {type(error).__name__}: {error}")
        return None
    ms = median_ms(graph.replay, "cuda", steps)
    del graph
    return ms


def engine_steps(engine: Any, prompts: list[str], width: int, steps: int, profile: Path | None):
    """Median ms between the starts of two engine steps while exactly `width` answers run."""
    batcher = engine.batcher
    stamps: list[tuple[float, int]] = []
    original = batcher._step
    profiler: list[Any] = []

    def timed() -> None:  # the engine's thread
        stamps.append((time.perf_counter(), len(batcher.rows)))
        if profile is not None and len(stamps) == 5:
            profiler.append(start_profiler())
        if profiler and len(stamps) == 25:
            profiler[0].stop()
        original()

    eos = SPECIAL_IDS["eos_token_id"]
    params = engine.params(max_new_tokens=steps + 8, do_sample=False, logit_bias=((eos, -100.0),))
    done = threading.Semaphore(0)
    texts: list[list[str]] = [[] for _ in range(width)]

    def sink(i: int, event: Any) -> None:
        if hasattr(event, "text"):
            texts[i].append(event.text)
        else:
            done.release()

    batcher._step = timed
    try:
        prepared = [engine.prompt([{"role": "user", "content": p}], steps + 8) for p in prompts]
        with batcher.condition:  # every answer joins in the same prefill
            for i, prompt in enumerate(prepared[:width]):
                engine.submit(prompt, params, lambda e, i=i: sink(i, e))
        for _ in range(width):
            done.acquire()
    finally:
        del batcher._step
    if profiler:
        (profile / "profile_w1.txt").write_text(host_table(profiler[0]))
    gaps = [
        1000 * (b[0] - a[0])
        for a, b in zip(stamps, stamps[1:], strict=False)
        if a[1] == width and b[1] == width
    ]
    return statistics.median(gaps[2:]), len(gaps)


def start_profiler() -> Any:
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(activities=activities)
    profiler.start()
    return profiler


def host_table(profiler: Any) -> str:
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


def counters() -> dict[str, Any]:
    from torch._dynamo.utils import counters as dynamo

    keep = ("stats", "graph_break", "recompiles", "inductor")
    return {k: {str(n): v for n, v in dynamo[k].items()} for k in keep if k in dynamo}


def main(args: argparse.Namespace) -> None:
    import torch

    device = begin_run(args.smoke, args.out)
    started = time.perf_counter()
    family, shape = model_spec(MODEL, args.smoke)
    base_dir, build_s = random_base(family, shape, args.scratch, device)
    adapter = base_dir.parent / f"{base_dir.name}-served"
    texts = data_texts()
    if not (adapter / "manifest.json").is_file():
        export_lookalike(base_dir, adapter, device, texts)
        free(device)
    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine

    loaded = load_exported(adapter, device=device)
    loaded_s = time.perf_counter() - started
    widths = sorted(args.widths)
    engine = Engine(
        loaded.model, loaded.tokenizer, loaded.settings, slots=widths[-1],
        context=args.context, compile=args.compile, buckets=widths,
    )  # fmt: skip
    batcher = engine.batcher
    compile_s = time.perf_counter() - started - loaded_s
    print(f"base {build_s:.0f} s, loaded at {loaded_s:.0f} s, engine ready in {compile_s:.0f} s")
    prompts = questions(loaded.tokenizer, texts, widths[-1], args.prompt_tokens)

    rows = []
    for width in widths:
        row: dict[str, Any] = {"width": width}
        with torch.inference_mode():
            args_w = bare_args(batcher, width)
            row["eager_ms"] = median_ms(lambda a=args_w: batcher.decode_function(*a), device, 10)
            if device == "cuda" and args.hand_graph:
                row["graph_ms"] = hand_graph_ms(batcher, width, args.steps)
            if args.compile:
                compiled = getattr(batcher, "compiled", batcher.forward_decode)
                row["compiled_ms"] = median_ms(
                    lambda a=args_w, c=compiled: c(*a), device, args.steps
                )
                if batcher.forward_decode is not compiled:  # the engine replays CUDA graphs
                    row["replay_ms"] = median_ms(
                        lambda a=args_w: batcher.forward_decode(*a), device, args.steps
                    )
                    replayed = batcher.forward_decode(*args_w)[1].clone()
                    row["replay_agrees"] = bool((compiled(*args_w)[1] == replayed).all())
        profile = args.out if args.profile and width == 1 else None
        row["engine_ms"], row["engine_steps"] = engine_steps(
            engine, prompts, width, args.steps, profile
        )
        called = row.get("replay_ms", row.get("compiled_ms", row["eager_ms"]))
        row["host_ms"] = row["engine_ms"] - called
        row["tok_s_per_stream"] = 1000 / row["engine_ms"]
        row["tok_s_all"] = width * 1000 / row["engine_ms"]
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    engine.close()

    facts = device_facts(device)
    if device == "cuda":
        weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        embedding = loaded.model.get_input_embeddings().weight
        weights -= embedding.numel() * embedding.element_size()
        kv = 2 * shape.num_layers * shape.hidden_size * 2 * args.context
        gbps = copy_gbps(device)
        for row in rows:
            row["ceiling_ms"] = (weights + row["width"] * kv) / gbps / 1e6
        facts["copy_gbps"] = round(gbps)
    result = {
        "facts": facts, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
        "counters": counters(), "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (args.out / "decode_profile.json").write_text(json.dumps(result, indent=2))
    columns = [
        ("width", "running answers"), ("eager_ms", "eager call ms"),
        ("graph_ms", "hand graph (eager) ms"), ("compiled_ms", "compiled call ms"),
        ("replay_ms", "engine's graph replay ms"), ("replay_agrees", "replay = compiled ids"),
        ("engine_ms", "engine step ms"), ("host_ms", "engine host ms"),
        ("ceiling_ms", "bandwidth floor ms"), ("tok_s_per_stream", "tok/s per answer"),
        ("tok_s_all", "tok/s all"),
    ]  # fmt: skip
    present = [c for c in columns if any(c[0] in r for r in rows)]
    table = markdown_table(rows, present)
    (args.out / "decode_profile.md").write_text(table + "\n")
    print(table)
    print(json.dumps(result["counters"]))
    print(f"wall {result['wall_s']} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/kotune-serve-bench"))
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=48, help="decode steps timed per width")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--hand-graph", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", action="store_true", help="top host ops at width 1")
    main(parser.parse_args())
