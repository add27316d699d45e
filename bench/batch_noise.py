"""Why a bf16 base's Δ own (batched vs one at a time) is larger than an NF4 base's: on the CPU.

bench/train_speed.py checks each variant's batching against the same 8 examples run one at a
time (Δ own, tolerance 0.01 nats). On the H200 the bf16-base variants measured 0.013, where the
NF4 base had measured 0.007 on the H100 with the same padded batches. This runs the same check —
train_speed's own `build_model` and `check_losses`, the same examples, right padding to a
multiple of 8 — on a random GPT-NeoX base of a middle size, for:

- fp32 throughout: batching must not change the result (a masking or padding fault would);
- the bf16 base under bf16 autocast (h200's setting), eager and compiled per block;
- the NF4 base under bf16 autocast (h100-padded's);
- the bf16 base with its embedding output in fp32 (every later residual add is then fp32);
- a negative control: the bf16 base with LEFT padding and no attention mask, so that every
  example attends to its padding (with right padding a causal model never sees the padding,
  mask or no mask; rotary positions shifted by left padding change nothing either: relative).

For each it also reports the dtype of the residual stream (hidden states after layer 1 and the
last layer). CUDA's autocast runs layer_norm in fp32 (its float32 list), the CPU's leaves it in
bf16: LayerNorm is run in fp32 here as on CUDA, so that every other op sees the dtypes it sees
there. CPU kernels are not CUDA's: the sizes of the Δs differ from the GPU's.

    nice python bench/batch_noise.py --out DIR     # ~5–10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookalike import (  # noqa: E402
    IGNORE_INDEX,
    SPECIAL_IDS,
    draw_examples,
    length_pairs,
    random_base,
    train_settings,
)
from train_speed import (  # noqa: E402
    CHECK_EXAMPLES,
    TOL_OWN,
    all_variants,
    build_model,
    check_losses,
    loss_gap,
)

from kotune.config import ModelShape  # noqa: E402


def residual_dtypes(model, example: dict, dtype) -> list[str]:
    """dtype of the hidden states after the first and after the last decoder layer."""
    import torch

    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        states = model(input_ids=ids, output_hidden_states=True).hidden_states
    return [
        str(states[1].dtype).removeprefix("torch."),
        str(states[-2].dtype).removeprefix("torch."),
    ]


def layer_norm_in_fp32(model) -> None:
    """Every LayerNorm computes in fp32 and returns fp32, as CUDA's autocast makes it do."""
    import torch
    import torch.nn.functional as F

    def forward(x, norm):
        with torch.autocast("cpu", enabled=False):
            weight, bias = norm.weight.float(), norm.bias.float()
            return F.layer_norm(x.float(), norm.normalized_shape, weight, bias, norm.eps)

    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.forward = lambda x, norm=module: forward(x, norm)


def unmasked_left_padding_gap(model, examples: list[dict], solo, dtype) -> dict:
    """The negative control: batches of 8 padded on the LEFT without an attention mask, so that
    every example attends to its padding: what a padding-side or mask fault does."""
    import torch
    import torch.nn.functional as F

    width = max(len(e["input_ids"]) for e in examples)
    width = 8 * -(-width // 8)
    pad = SPECIAL_IDS["pad_token_id"]
    ids = [[pad] * (width - len(e["input_ids"])) + e["input_ids"] for e in examples]
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        logits = model(input_ids=torch.tensor(ids)).logits
    losses, kept = [], []
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        labels = torch.tensor(example["labels"][1:])
        keep = labels != IGNORE_INDEX
        scores = logits[row, width - n : width - 1][keep].float()
        losses.append(F.cross_entropy(scores, labels[keep], reduction="none"))
        kept.append(scores)
    return loss_gap((torch.cat(losses), torch.cat(kept)), solo)


def table(results: list[dict], args: argparse.Namespace, torch_version: str) -> str:
    lines = [
        f"GPT-NeoX {args.layers} × {args.hidden}, vocab {args.vocab}, random weights, CPU "
        f"(torch {torch_version}); 8 Mencius-length examples, right padding to a multiple of 8",
        "",
        "| case | Δ own loss (mean / max nats) | Δ own logits (rel. L2) | residual stream dtype |",
        "|---|---|---|---|",
    ]
    for r in results:
        own = r["own"]
        lines.append(
            f"| {r['case']} | {own['loss_mean_abs']:.2g} / {own['loss_max_abs']:.2g} | "
            f"{own['logits_rel']:.2g} | {' → '.join(r['residual_dtype_after_layer_1_and_last'])} |"
        )
        if "control_unmasked_left_padding" in r:
            c = r["control_unmasked_left_padding"]
            lines.append(
                f"| control: the same, LEFT-padded without an attention mask | "
                f"{c['loss_mean_abs']:.2g} / {c['loss_max_abs']:.2g} | {c['logits_rel']:.2g} | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=30080)  # Polyglot-ko's
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/kotune-batch-noise"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(2)
    shape = ModelShape(
        hidden_size=args.hidden, num_layers=args.layers, num_heads=args.hidden // 64,
        num_kv_heads=args.hidden // 64, intermediate_size=4 * args.hidden,
        vocab_size=args.vocab, max_position_embeddings=2048, rotary_pct=0.25,
    )  # fmt: skip
    base_dir, _ = random_base("gpt_neox", shape, args.scratch, "cpu")
    settings = train_settings("mencius")
    pairs, _ = length_pairs("mencius")
    check = draw_examples(pairs, CHECK_EXAMPLES, shape.vocab_size, seed=1)
    ctx = {"check": check, "max_len": settings.max_seq_len, "device": "cpu"}
    h200 = replace(all_variants()["h200"], liger=False)  # (Liger: CUDA only, no GPT-NeoX kernels)
    fp32 = replace(h200, dtype="float32")
    cases = [
        ("fp32 throughout, eager", replace(fp32, compile=False)),
        ("fp32 throughout, compiled per block", fp32),
        ("bf16 base, eager (h200-eager)", replace(h200, compile=False)),
        ("bf16 base, compiled per block (h200)", h200),
        ("NF4 base, eager (h100-padded)", replace(h200, quantization="nf4", compile=False)),
        ("bf16 base, fp32 embedding output", replace(h200, compile=False)),
    ]
    results = []
    for label, variant in cases:
        start = time.perf_counter()
        torch._dynamo.reset()
        model = build_model(base_dir, variant, settings, "cpu", ctx)
        layer_norm_in_fp32(model)
        if "fp32 embedding" in label:
            model.get_input_embeddings().float()  # the residual stream starts (and stays) fp32
        dtype = getattr(torch, variant.dtype)
        ctx.pop("reference", None)
        found = check_losses(model, ctx, variant)
        row = {
            "case": label,
            "own": found["check_own"],
            "residual_dtype_after_layer_1_and_last": residual_dtypes(model, check[0], dtype),
        }
        if label.startswith("bf16 base, eager"):
            solo = ctx["reference"][1]
            row["control_unmasked_left_padding"] = unmasked_left_padding_gap(
                model, check, solo, dtype
            )
        row["seconds"] = round(time.perf_counter() - start, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
        model = None
    (args.out / "batch_noise.json").write_text(
        json.dumps(
            {"shape": shape.__dict__, "tolerance_own": TOL_OWN, "results": results}, indent=1
        )
    )
    text = table(results, args, torch.__version__)
    (args.out / "batch_noise.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
