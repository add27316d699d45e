"""Serving speed: `kotune serve` through HTTP with 1, 8 and 32 concurrent streams, side by side
with plain sequential `generate` on the same model in the same run.

    python bench/serve_speed.py --out DIR              # H200: the 5.8B shape, bf16 merged (~7 min)
    python bench/serve_speed.py --smoke --out DIR      # CPU: a tiny shape, the same code path

The base has random weights of the exact KoAlpaca-Polyglot-5.8B shape (bench/lookalike.py) with
a LoRA adapter (B = 0, r/alpha from conf/config.yaml) on every linear layer, exported as kotune
exports a folder: kotune.json (the mencius persona's prompt, stops, generation), the manifest,
and a byte-level BPE tokenizer learned from data/raw with filler tokens up to the model's
vocabulary (random weights emit any id). The server is `python -m kotune.cli serve` in its own
process: the adapter merged into bf16 (kotune's chat loading for the big cards), the slot KV
cache, the decode step compiled with CUDA graphs (`--compile`; `--no-compile` for eager).

Each stream asks a different question of ~--prompt-tokens tokens, greedy, max_tokens =
--new-tokens with the end-of-text id banned (logit_bias), so every stream decodes exactly that
many tokens; the client is the standard library (threads, one HTTP connection each, SSE lines).
Per stream: first-token latency = first content chunk − request sent; decode tok/s = (tokens − 1)
÷ (last chunk − first chunk). Aggregate tok/s = all tokens ÷ (last chunk − first request). After
one untimed warm-up round, --runs rounds per stream count; medians.

Baseline: kotune's loading path in this process (`load_exported`, bf16 merged), then
`model.generate` for the same prompts one after another (greedy, the persona's
repetition_penalty, min_new_tokens = max_new_tokens): first token = a 1-token generate; decode
tok/s = (N − 1) ÷ (t(N) − t(1)). The decode ceiling: bytes per step (weights less the input
embedding, plus the attended keys/values) ÷ this card's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookalike import ROOT, SPECIAL_IDS, model_spec, random_base, read_conf  # noqa: E402
from measure import begin_run, copy_gbps, device_facts, free, markdown_table, seconds  # noqa: E402

MODEL = "koalpaca-5.8b"


# ---------------------------------------------------------------------------- the adapter folder


def data_texts() -> list[str]:
    """Every turn of the shipped Mencius sample (questions, answers, dialogues)."""
    from kotune.ingest import ingest

    records, _ = ingest("mencius", [ROOT / "data/raw/mencius"], {})
    return [m["content"] for r in records for m in r["messages"]]


def lookalike_tokenizer(vocab_size: int, texts: list[str]) -> Any:
    """A byte-level BPE learned from the data (eos id 0, pad id 1, as the random base says),
    padded with filler tokens to the model's vocabulary size."""
    from kotune.modeling.scratch import train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size, 2, 4096)
    assert tokenizer.eos_token_id == SPECIAL_IDS["eos_token_id"]
    assert tokenizer.pad_token_id == SPECIAL_IDS["pad_token_id"]
    missing = vocab_size - len(tokenizer)
    if missing > 0:
        tokenizer.add_tokens([f"<|filler{i}|>" for i in range(missing)])
    return tokenizer


def export_lookalike(base_dir: Path, folder: Path, device: str, texts: list[str]) -> None:
    """An exported adapter folder for the random base, as kotune's export writes one."""
    from chat_speed import make_adapter

    from kotune.config import GenerationConfig
    from kotune.files import sha256_tree
    from kotune.inference.adapter import AdapterSettings, BaseSettings, write_settings

    persona = read_conf("persona", "mencius.yaml")["persona"]
    config = json.loads((base_dir / "config.json").read_text())
    make_adapter(base_dir, folder, "mencius", device)
    lookalike_tokenizer(config["vocab_size"], texts).save_pretrained(folder)
    settings = AdapterSettings(
        persona="mencius",
        base=BaseSettings(name=MODEL, family="gpt_neox", source="local", path=str(base_dir)),
        prompt_format="koalpaca",
        system_prompt=persona["system_prompt"],
        stop_patterns=[*persona["stop_patterns"], "### 질문:", "### 답변:"],
        generation=GenerationConfig(**persona["generation"]),
        chat_quantization="none",
        compute_dtype="bfloat16",
        device=device,
    )
    write_settings(folder, settings)
    manifest = {"files": sha256_tree(folder)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def questions(tokenizer: Any, texts: list[str], count: int, tokens: int) -> list[str]:
    """`count` different user messages of about `tokens` tokens each (consecutive turns of the
    data, starting at a different turn for each)."""
    out = []
    for i in range(count):
        parts, length, j = [], 0, (i * 37) % len(texts)
        while length < tokens:
            parts.append(texts[j % len(texts)])
            length += len(tokenizer(texts[j % len(texts)], add_special_tokens=False)["input_ids"])
            j += 1
        ids = tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"][:tokens]
        out.append(tokenizer.decode(ids))
    return out


# ---------------------------------------------------------------------------- the HTTP client


def stream(port: int, question: str, new_tokens: int) -> dict[str, Any]:
    """One streamed chat completion; timestamps of the request and of every content chunk."""
    body = json.dumps(
        {
            "model": "mencius",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": new_tokens,
            "temperature": 0,
            "logit_bias": {str(SPECIAL_IDS["eos_token_id"]): -100},
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    chunks, usage = [], None
    for line in response:
        if not line.startswith(b"data: {"):
            continue
        data = json.loads(line[6:])
        if data.get("choices") and data["choices"][0]["delta"].get("content"):
            chunks.append(time.perf_counter())
        if data.get("usage"):
            usage = data["usage"]
        if "error" in data:
            raise RuntimeError(data["error"]["message"])
    connection.close()
    return {
        "sent": sent,
        "chunks": chunks,
        "tokens": usage["completion_tokens"],
        "prompt": usage["prompt_tokens"],
    }


def run_streams(port: int, prompts: list[str], new_tokens: int) -> dict[str, Any]:
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    start = threading.Barrier(len(prompts))

    def one(i: int) -> None:
        start.wait()
        results[i] = stream(port, prompts[i], new_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for r in results if r is not None and r["chunks"]]
    if len(done) != len(prompts):
        raise RuntimeError(f"{len(prompts) - len(done)} streams failed")
    first = [1000 * (r["chunks"][0] - r["sent"]) for r in done]
    rates = [(r["tokens"] - 1) / max(r["chunks"][-1] - r["chunks"][0], 1e-9) for r in done]
    span = max(r["chunks"][-1] for r in done) - min(r["sent"] for r in done)
    return {
        "streams": len(prompts),
        "prompt_tokens": round(statistics.mean(r["prompt"] for r in done)),
        "tokens_per_stream": round(statistics.mean(r["tokens"] for r in done), 1),
        "ttft_ms": round(statistics.median(first), 1),
        "ttft_max_ms": round(max(first), 1),
        "decode_tok_s_per_stream": round(statistics.median(rates), 1),
        "aggregate_tok_s": round(sum(r["tokens"] for r in done) / span, 1),
    }


def serve(
    adapter: Path, port: int, args: argparse.Namespace, device: str, log: Path
) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "kotune.cli", "serve", "--adapter", str(adapter), "--port", str(port),
        "--slots", str(max(args.streams)), "--context", str(args.context), "--device", device,
    ]  # fmt: skip
    if args.compile:
        command.append("--compile")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + args.start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"kotune serve exited {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(1)
    process.kill()
    raise RuntimeError("kotune serve did not start in time")


# ---------------------------------------------------------------------------- the baseline


def sequential_generate(
    adapter: Path, prompts: list[str], args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Plain `model.generate`, one prompt after another, on kotune's loading of the folder."""
    import torch

    from kotune.inference.adapter import adapter_prompt_builder, load_exported

    loaded = load_exported(adapter, device=device)
    model, tokenizer = loaded.model, loaded.tokenizer
    builder = adapter_prompt_builder(tokenizer, loaded.settings)
    penalty = loaded.settings.generation.repetition_penalty

    def generate(ids: Any, count: int) -> Any:
        with torch.no_grad():
            return model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                min_new_tokens=count, do_sample=False, repetition_penalty=penalty,
                pad_token_id=SPECIAL_IDS["pad_token_id"], eos_token_id=SPECIAL_IDS["eos_token_id"],
            )  # fmt: skip

    encoded = [
        torch.tensor([builder.prompt_ids([{"role": "user", "content": p}])], device=device)
        for p in prompts
    ]
    generate(encoded[0], 4)  # warm-up
    first = [seconds(lambda ids=ids: generate(ids, 1), device) for ids in encoded]
    full = [seconds(lambda ids=ids: generate(ids, args.new_tokens), device) for ids in encoded]
    rates = [(args.new_tokens - 1) / max(f - t, 1e-9) for f, t in zip(full, first, strict=True)]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    result = {
        "streams": len(prompts),
        "prompt_tokens": round(statistics.mean(len(ids[0]) for ids in encoded)),
        "ttft_ms": round(1000 * statistics.median(first), 1),
        "decode_tok_s_per_stream": round(statistics.median(rates), 1),
        "aggregate_tok_s": round(len(prompts) * args.new_tokens / sum(full), 1),
        "weight_bytes": weights - embedding.numel() * embedding.element_size(),
    }
    return result


def kv_bytes_per_token(base_dir: Path) -> int:
    config = json.loads((base_dir / "config.json").read_text())
    return 2 * config["num_hidden_layers"] * config["hidden_size"] * 2  # keys + values, bf16


# ---------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    device = begin_run(args.smoke, args.out)
    started = time.perf_counter()
    family, shape = model_spec(MODEL, args.smoke)
    facts = device_facts(device)
    bandwidth = copy_gbps(device, mib=64 if args.smoke else 2048)
    base_dir, build_s = random_base(family, shape, args.scratch, device)
    adapter = base_dir.parent / f"{base_dir.name}-served"
    texts = data_texts()
    if not (adapter / "manifest.json").is_file():
        export_lookalike(base_dir, adapter, device, texts)
        free(device)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    prompts = questions(tokenizer, texts, max(args.streams), args.prompt_tokens)
    print(f"bandwidth {bandwidth:.0f} GB/s; base built in {build_s:.0f} s", flush=True)

    port = args.port
    server_start = time.perf_counter()
    process = serve(adapter, port, args, device, args.out / "serve.log")
    server_rows = []
    try:
        start_s = round(time.perf_counter() - server_start, 1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/health")
        compiled = json.loads(connection.getresponse().read())["compiled"]
        for n in args.streams:  # untimed warm-up: first allocations, every decode bucket
            run_streams(port, prompts[:n], min(args.new_tokens, 8))
        for n in args.streams:
            runs = [run_streams(port, prompts[:n], args.new_tokens) for _ in range(args.runs)]
            row = {k: statistics.median([r[k] for r in runs]) for k in runs[0] if k != "streams"}
            row.update(way="kotune serve (HTTP)", streams=n)
            server_rows.append(row)
            print(row, flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    free(device)
    base_row = sequential_generate(adapter, prompts[: args.baseline_prompts], args, device)
    base_row["way"] = "sequential generate"
    free(device)
    weight_bytes = base_row.pop("weight_bytes")
    context = base_row["prompt_tokens"] + args.new_tokens // 2  # generate attends to its tokens
    rows = [base_row, *server_rows]
    single = next(r for r in server_rows if r["streams"] == 1)
    for row in rows:
        attended = args.context if row["way"].startswith("kotune") else context  # slots: all
        step_bytes = weight_bytes + row["streams"] * attended * kv_bytes_per_token(base_dir)
        row["ceiling_tok_s_per_stream"] = round(bandwidth * 1e9 / step_bytes, 1)
        row["of_ceiling"] = round(
            row["decode_tok_s_per_stream"] / row["ceiling_tok_s_per_stream"], 3
        )
        row["vs_sequential"] = round(row["aggregate_tok_s"] / base_row["aggregate_tok_s"], 2)
        row["vs_one_stream"] = round(row["aggregate_tok_s"] / single["aggregate_tok_s"], 2)
    report = {
        "device": facts, "model": MODEL, "copy_bandwidth_gbps": round(bandwidth, 1),
        "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "context": args.context,
        "compile": args.compile, "compiled": compiled, "smoke": args.smoke, "server_start_s": start_s,
        "rows": rows, "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (args.out / "serve_speed.json").write_text(json.dumps(report, indent=1))
    columns = [
        ("way", "way"), ("streams", "streams"), ("prompt_tokens", "prompt tokens"),
        ("ttft_ms", "first token ms (median)"), ("ttft_max_ms", "first token ms (max)"),
        ("decode_tok_s_per_stream", "decode tok/s per stream"), ("aggregate_tok_s", "tok/s all streams"),
        ("vs_sequential", "× sequential"), ("vs_one_stream", "× one stream"),
        ("ceiling_tok_s_per_stream", "bandwidth ceiling tok/s"), ("of_ceiling", "of ceiling"),
    ]  # fmt: skip
    table = "\n".join(
        [
            f"device: {facts.get('gpu') or 'cpu'}; torch {facts['torch']}, transformers "
            f"{facts['transformers']}; copy bandwidth {bandwidth:.0f} GB/s; {MODEL} shape"
            f"{' (tiny: --smoke)' if args.smoke else ''}, "
            f"{'float32' if device == 'cpu' else 'bf16'} merged LoRA r8; server decode "
            f"{'compiled' if compiled else 'eager'}, context {args.context}, "
            f"{args.new_tokens} new tokens per stream; server up in {start_s} s",
            "",
            markdown_table(rows, columns),
        ]
    )
    (args.out / "serve_speed.md").write_text(table + "\n")
    print(f"\n## serve_speed ({report['wall_s']:.0f} s)\n\n{table}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for serve_speed.json/.md")
    parser.add_argument("--streams", default="1,8,32", help="concurrent stream counts")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=1024, help="the server's --context")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--baseline-prompts", type=int, default=4, help="sequential generate of N")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--start-timeout-s", type=float, default=420)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--scratch", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "kotune-bench"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, short prompts")
    args = parser.parse_args()
    args.streams = [int(n) for n in args.streams.split(",")]
    if args.smoke:
        args.prompt_tokens, args.new_tokens, args.context, args.runs = 32, 24, 256, 1
    main(args)
