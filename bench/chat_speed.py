"""Chat speed on the GPU: the 5.8B shape with a LoRA adapter, int8 vs NF4 vs bf16.

A benchmark, not a test: time to first token for a 500-token prompt and decode tokens/s, for one
chat and for 8 concurrent chats (batched generation), per way of loading the model.

    python bench/chat_speed.py --out DIR                  # H100: ~4 minutes
    python bench/chat_speed.py --out DIR --loadings nf4,bf16-merged --new-tokens 128
    python bench/chat_speed.py --smoke --out /tmp/cs      # CPU, tiny shape: the same code path

Loadings, each through kotune.inference.loading (load_model, then attach_adapter: the
adapter merged when the base is unquantised, as `kotune chat` loads an exported folder):
  int8         bitsandbytes LLM.int8 (the seed's chatbot.py), adapter unmerged
  nf4          4-bit NF4 (kotune's t4 and rtx3060ti chat_quantization), adapter unmerged
  bf16-adapter bf16 base + the adapter unmerged (two matmuls per layer)
  bf16-merged  bf16 with the adapter merged in (kotune's chat for chat_quantization: none)
The base has random weights of the exact shape (bench/lookalike.py) and the adapter is LoRA
r/alpha/dropout from conf/config.yaml on every linear layer, B = 0 as after initialisation: its
cost is the same as a trained one's. The prompt is random token ids.

Timing: `model.generate`, greedy, the persona's repetition_penalty, min_new_tokens =
max_new_tokens (EOS cannot end a run early), no stop strings (kotune adds them; they need the
real tokenizer); the device synchronised around each call; one warm-up generation per setting
not timed. TTFT = a generate of 1 new token (prefill + first token); decode tok/s per chat =
(N − 1) / (t(N tokens) − t(1 token)); aggregate = × chats. Medians of --runs. The decode
ceiling is memory-bound: bytes read per step (the weights as loaded, less the input embedding,
which is only indexed, plus the KV cache) ÷ this card's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookalike import (  # noqa: E402
    SPECIAL_IDS,
    model_spec,
    random_base,
    read_conf,
    train_settings,
)
from measure import (  # noqa: E402
    GIB,
    begin_run,
    copy_gbps,
    device_facts,
    free,
    markdown_table,
    peak_gib,
    reset_peak,
    seconds,
)

LOADINGS = ["int8", "nf4", "bf16-adapter", "bf16-merged"]
MODEL = "koalpaca-5.8b"


def make_adapter(base_dir: Path, adapter_dir: Path, persona: str, device: str) -> None:
    """A LoRA adapter (B = 0) on every linear layer of the base, saved as peft saves one."""
    import torch

    from kotune.inference.loading import add_lora, find_lora_targets, load_model

    settings = train_settings(persona)
    model = load_model(
        str(base_dir), None, quantization="none", compute_dtype="bfloat16", device=device
    )
    torch.manual_seed(0)
    model = add_lora(
        model,
        settings.lora_r,
        settings.lora_alpha,
        settings.lora_dropout,
        find_lora_targets(model),
    )
    model.save_pretrained(str(adapter_dir))


def load_chat(base_dir: Path, adapter_dir: Path, loading: str, device: str) -> Any:
    """kotune's loading path (kotune.inference.loading) for a local base and adapter folder."""
    from kotune.inference.loading import attach_adapter, load_model

    quantization = {"int8": "int8", "nf4": "nf4"}.get(loading, "none")
    model = load_model(
        str(base_dir), None, quantization=quantization, compute_dtype="bfloat16", device=device
    )
    return attach_adapter(model, adapter_dir, merge=loading == "bf16-merged")


def time_generation(
    model: Any, chats: int, args: argparse.Namespace, device: str, penalty: float
) -> dict[str, Any]:
    """TTFT and decode rate for `chats` prompts of args.prompt_tokens random ids."""
    import torch

    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(chats)
    ids = torch.randint(2, vocab, (chats, args.prompt_tokens), generator=generator).to(device)

    def generate(new_tokens: int) -> Any:
        with torch.no_grad():
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                repetition_penalty=penalty,
                pad_token_id=SPECIAL_IDS["pad_token_id"],
                eos_token_id=SPECIAL_IDS["eos_token_id"],
            )

    reset_peak(device)
    out = generate(4)  # warm-up: kernels, cuBLAS handles, the cache's first allocation
    assert out.shape[1] == args.prompt_tokens + 4, "generation ended early"
    first = statistics.median(seconds(lambda: generate(1), device) for _ in range(args.runs + 1))
    full = statistics.median(
        seconds(lambda: generate(args.new_tokens), device) for _ in range(args.runs)
    )
    per_chat = (args.new_tokens - 1) / max(full - first, 1e-6)  # CPU noise can invert them
    # a chat's next turn has a prompt length the process has not seen: no cached attention plan
    fresh = []
    for extra in range(1, 4):
        ids = torch.randint(2, vocab, (chats, args.prompt_tokens + extra), generator=generator)
        ids = ids.to(device)
        fresh.append(seconds(lambda: generate(1), device))
    return {
        "chats": chats,
        "ttft_ms": round(1000 * first, 1),
        "ttft_new_length_ms": round(1000 * statistics.median(fresh), 1),
        "generate_s": round(full, 3),
        "decode_tok_s_per_chat": round(per_chat, 1),
        "decode_tok_s_total": round(per_chat * chats, 1),
        "peak_gib": peak_gib(device),
    }


def decode_bytes(model: Any, weights_bytes: int, chats: int, context: int) -> int:
    """Bytes one decode step reads: the weights (the input embedding is only indexed) and the
    KV cache of every chat (keys and values, every layer, the compute dtype's 2 bytes)."""
    config = model.config
    embedding = model.get_input_embeddings().weight
    kv_per_token = 2 * config.num_hidden_layers * config.hidden_size * 2
    if hasattr(config, "num_key_value_heads"):
        kv_per_token = kv_per_token * config.num_key_value_heads // config.num_attention_heads
    return (
        weights_bytes
        - embedding.numel() * embedding.element_size()
        + chats * context * kv_per_token
    )


def run_loading(ctx: dict[str, Any], loading: str, args: argparse.Namespace) -> list[dict]:
    import torch

    device = ctx["device"]
    free(device)
    before = torch.cuda.memory_allocated() if device == "cuda" else 0
    start = time.perf_counter()
    model = load_chat(ctx["base_dir"], ctx["adapter_dir"], loading, device)
    load_s = time.perf_counter() - start
    if device == "cuda":
        weights = torch.cuda.memory_allocated() - before
    else:  # no allocator counters on the CPU: the parameters' own storage
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    for chats in (1, args.chats):
        row = {
            "loading": loading,
            "load_s": round(load_s, 1),
            "weights_gib": round(weights / GIB, 2),
        }
        try:
            row.update(time_generation(model, chats, args, device, ctx["penalty"]))
        except Exception as error:  # e.g. int8 without CUDA: report, go on
            row["error"] = f"{type(error).__name__}: {error}"[:300]
            rows.append(row)
            continue
        context = args.prompt_tokens + args.new_tokens // 2  # the mean context while decoding
        moved = decode_bytes(model, weights, chats, context)
        row["decode_bytes_gib"] = round(moved / GIB, 2)
        row["decode_ceiling_tok_s_per_chat"] = round(ctx["bandwidth_gbps"] * 1e9 / moved, 1)
        row["share_of_ceiling"] = round(
            row["decode_tok_s_per_chat"] / row["decode_ceiling_tok_s_per_chat"], 3
        )
        rows.append(row)
        print(f"{loading} × {chats}: {row}", flush=True)
    model = None
    free(device)
    return rows


def fastest_lines(rows: list[dict], chats: int) -> list[str]:
    ok = [r for r in rows if "error" not in r]
    lines = []
    for count in sorted({r["chats"] for r in ok}):
        group = [r for r in ok if r["chats"] == count]
        ttft = min(group, key=lambda r: r["ttft_ms"])
        decode = max(group, key=lambda r: r["decode_tok_s_per_chat"])
        lines.append(
            f"- {count} chat{'s' if count > 1 else ''}: fastest first token {ttft['loading']} "
            f"({ttft['ttft_ms']} ms), fastest decode {decode['loading']} "
            f"({decode['decode_tok_s_per_chat']} tok/s per chat, "
            f"{decode['decode_tok_s_total']} in all)"
        )
    return lines


def main(args: argparse.Namespace) -> None:

    device = begin_run(args.smoke, args.out)
    if device == "cuda":  # kotune's chat turns torch's cuDNN attention off (a plan per length)
        import torch

        torch.backends.cuda.enable_cudnn_sdp(args.cudnn_attention)
    started = time.perf_counter()
    loadings = args.loadings.split(",")
    unknown = [name for name in loadings if name not in LOADINGS]
    if unknown:
        raise SystemExit(f"unknown loadings {unknown}; known: {', '.join(LOADINGS)}")
    family, shape = model_spec(MODEL, args.smoke)
    facts = device_facts(device)
    bandwidth = copy_gbps(device, mib=64 if args.smoke else 2048)
    base_dir, build_s = random_base(family, shape, args.scratch, device)
    adapter_dir = base_dir.parent / f"{base_dir.name}-lora"
    if not (adapter_dir / "adapter_config.json").is_file():
        make_adapter(base_dir, adapter_dir, args.persona, device)
        free(device)
    penalty = read_conf("persona", f"{args.persona}.yaml")["persona"]["generation"][
        "repetition_penalty"
    ]
    ctx = {
        "device": device, "base_dir": base_dir, "adapter_dir": adapter_dir,
        "bandwidth_gbps": bandwidth, "penalty": penalty,
    }  # fmt: skip
    print(f"bandwidth {bandwidth:.0f} GB/s; base built in {build_s:.0f} s", flush=True)
    rows: list[dict] = []
    report = {"device": facts, "copy_bandwidth_gbps": round(bandwidth, 1), "model": MODEL,
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
              "repetition_penalty": penalty, "smoke": args.smoke,
              "cudnn_attention": args.cudnn_attention, "rows": rows}  # fmt: skip
    durations = [60.0]  # seconds per loading so far: the next is expected to take the longest
    for loading in loadings:
        if time.perf_counter() - started + max(durations) > args.budget_s:
            rows.append({"loading": loading, "error": "skipped: time budget"})
            continue
        begin = time.perf_counter()
        try:
            rows.extend(run_loading(ctx, loading, args))
        except Exception as error:  # a loading that cannot run here
            rows.append({"loading": loading, "error": f"{type(error).__name__}: {error}"[:300]})
        free(device)  # here, not in the except: the traceback holds the failed model
        durations.append(time.perf_counter() - begin)
        (args.out / "chat_speed.json").write_text(json.dumps(report, indent=1))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "chat_speed.json").write_text(json.dumps(report, indent=1))

    columns = [
        ("loading", "loading"), ("chats", "chats"), ("ttft_ms", "TTFT ms"), ("ttft_new_length_ms", "TTFT new length ms"),
        ("decode_tok_s_per_chat", "decode tok/s per chat"), ("decode_tok_s_total", "tok/s all chats"),
        ("decode_ceiling_tok_s_per_chat", "bandwidth ceiling tok/s"), ("share_of_ceiling", "of ceiling"),
        ("weights_gib", "weights GiB"), ("peak", "peak alloc/res GiB"), ("load_s", "load s"),
        ("error", "error"),
    ]  # fmt: skip
    for row in rows:
        peak = row.get("peak_gib") or {}
        row["peak"] = f"{peak['allocated']}/{peak['reserved']}" if peak.get("allocated") else None
    lines = [
        f"device: {facts.get('gpu') or 'cpu'}; torch {facts['torch']}, transformers "
        f"{facts['transformers']}, peft {facts.get('peft')}, bitsandbytes "
        f"{facts.get('bitsandbytes')}; copy bandwidth (measured) {bandwidth:.0f} GB/s",
        f"{MODEL} shape, LoRA r8 on every linear layer; prompt {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new tokens (min = max), greedy, repetition_penalty {penalty}; "
        f"cuDNN attention {'on' if args.cudnn_attention else 'off'}",
        "",
        markdown_table(rows, columns),
        "",
        *fastest_lines(rows, args.chats),
    ]
    table = "\n".join(lines)
    (args.out / "chat_speed.md").write_text(table + "\n")
    print(f"\n## chat_speed ({report['wall_s']:.0f} s)\n\n{table}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for chat_speed.json/.md")
    parser.add_argument("--loadings", default=",".join(LOADINGS), help=f"comma list of {LOADINGS}")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=64, help="generated per chat per run")
    parser.add_argument("--chats", type=int, default=8, help="concurrent chats (besides 1)")
    parser.add_argument("--runs", type=int, default=2, help="timed generations (median)")
    parser.add_argument("--persona", default="mencius", help="whose repetition_penalty")
    parser.add_argument(
        "--scratch", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "kotune-bench"
    )
    parser.add_argument("--budget-s", type=float, default=420, help="skip what would run past this")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, short prompts")
    parser.add_argument(
        "--cudnn-attention",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch's cuDNN attention backend (default off, as kotune's chat)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.prompt_tokens, args.new_tokens, args.runs = 32, 8, 1
    main(args)
