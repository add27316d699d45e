"""Writes bench/data/token_lengths.json: each sample persona's training examples as (prompt,
answer) token counts, the distribution bench/train_speed.py and bench/chat_speed.py draw from.

    .venv/bin/python bench/token_lengths.py            # here, once (needs Hydra; ~1 minute)

Mencius is read from data/tokenized (the default pipeline's own output). The other personas go
through the real stage scripts (ingest → clean → split → base → tokenize) in a temporary folder,
with `base.steps=0` (the tiny model's tokenizer is trained, its warm-up skipped) and
`clean.top_nouns=0` (the noun picture is not needed). Every persona is therefore counted with its
own tiny byte-level BPE (8,000-entry budget, learned from its train split), as `make run` with
that persona would tokenize it — not with Polyglot-ko's or Qwen's tokenizer, which are not on
this offline machine. `chars_per_token` lets a reader rescale to another tokenizer.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "data" / "token_lengths.json"
PERSONAS = ["mencius", "menu", "parentcare", "kakaotalk"]
STAGES = [
    ["ingest.py", "--out", "data/interim/conversations.jsonl", "--metrics", "m/ingest.json"],
    ["clean.py", "data/interim/conversations.jsonl", "--out", "data/interim/clean.jsonl",
     "--audit", "data/interim/pii_audit.jsonl", "--metrics", "m/clean.json",
     "--nouns", "m/nouns.csv", "--lengths", "m/lengths.csv"],
    ["split.py", "data/interim/clean.jsonl", "--train", "data/processed/train.jsonl",
     "--test", "data/processed/test.jsonl", "--metrics", "m/split.json"],
    ["base.py", "data/processed/train.jsonl", "--out", "models/base", "--metrics", "m/base.json"],
    ["tokenize.py", "--train", "data/processed/train.jsonl", "--test",
     "data/processed/test.jsonl", "--base", "models/base", "--out", "data/tokenized",
     "--metrics", "m/tokenize.json"],
]  # fmt: skip


def summary(pairs: list[list[int]]) -> dict[str, float]:
    lengths = sorted(p + a for p, a in pairs)
    return {
        "examples": len(pairs),
        "mean_tokens": round(statistics.fmean(lengths), 1),
        "median_tokens": statistics.median(lengths),
        "p90_tokens": lengths[int(0.9 * (len(lengths) - 1))],
        "max_tokens": lengths[-1],
        "mean_prompt_tokens": round(statistics.fmean(p for p, _ in pairs), 1),
        "mean_answer_tokens": round(statistics.fmean(a for _, a in pairs), 1),
    }


def read_tokenized(folder: Path) -> list[list[int]]:
    """(prompt, answer) token counts of the train split's examples."""
    from datasets import load_from_disk

    train = load_from_disk(str(folder))["train"]
    return [[int(p), int(a)] for p, a in zip(train["prompt_tokens"], train["answer_tokens"])]


def answer_chars(processed_train: Path) -> int:
    """Characters of every assistant turn of the train split: each is one example's answer."""
    chars = 0
    for line in processed_train.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        chars += sum(len(m["content"]) for m in messages if m["role"] == "assistant")
    return chars


def run_persona(persona: str, work: Path) -> Path:
    """The real stages for `persona` in `work`; returns the tokenized folder."""
    sys.path.insert(0, str(ROOT / "src"))
    from kotune.config import compose, parse_config

    params = compose([f"persona={persona}", "base.steps=0", "clean.top_nouns=0"], ROOT / "conf")
    parse_config(params)
    shutil.copytree(ROOT / "data" / "raw" / persona, work / "data" / "raw" / persona)
    (work / "m").mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for stage in STAGES:
        command = [sys.executable, str(ROOT / "stages" / stage[0]), *stage[1:]]
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)
    return work / "data" / "tokenized"


def main() -> None:
    personas = {}
    for persona in PERSONAS:
        with tempfile.TemporaryDirectory() as tmp:
            if persona == "mencius":
                tokenized, train_jsonl = (
                    ROOT / "data/tokenized",
                    ROOT / "data/processed/train.jsonl",
                )
                source = "data/tokenized (the default pipeline's output)"
            else:
                tokenized = run_persona(persona, Path(tmp))
                train_jsonl = Path(tmp) / "data/processed/train.jsonl"
                source = f"stages ingest→tokenize with persona={persona}, base.steps=0"
            pairs = read_tokenized(tokenized)
            chars = answer_chars(train_jsonl)
        answer_tokens = sum(a - 1 for _, a in pairs)  # less the eos each answer ends with
        personas[persona] = {
            "source": source,
            "split": "train",
            # answers' characters per answer token (the answer header adds a few): to rescale
            # these counts to another tokenizer, compare its characters per token on Korean text
            "answer_chars_per_token": round(chars / answer_tokens, 2),
            "summary": summary(pairs),
            "prompt_answer_tokens": pairs,
        }
        print(f"{persona}: {personas[persona]['summary']}")
    data = {
        "about": "(prompt, answer) token counts of each persona's train examples, written by "
        "bench/token_lengths.py; the benchmarks draw random-token examples of these lengths",
        "tokenizer": "kotune's tiny byte-level BPE per persona (stage base, model=tiny), "
        "not the real models' tokenizers (offline here)",
        "max_seq_len": 512,  # tokenize.max_seq_len: no example is longer
        "personas": personas,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # indented, but each persona's pairs on one line: small, and diffs stay readable
    compact = {}
    for name, persona in personas.items():
        compact[name] = json.dumps(persona["prompt_answer_tokens"], separators=(",", ":"))
        persona["prompt_answer_tokens"] = f"@{name}@"
    text = json.dumps(data, ensure_ascii=False, indent=1)
    for name, pairs in compact.items():
        text = text.replace(f'"@{name}@"', pairs)
    OUT.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
