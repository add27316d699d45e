"""The stages say what the user needs and no more: the train stage shows one progress bar and
its closing line (the Trainer's log dicts go to DVCLive only; no library warnings about their
own internals, no weight-loading bar), the tokenize stage no dataset-saving bars."""

import subprocess
import sys

from test_qlora import ROOT, run_stage, tiny_project
from test_resume import BUDGET

from kotune.files import write_jsonl

NOISE = [
    "{'loss'",
    "{'eval_loss'",
    "{'train_runtime'",
    "Warning",
    "warnings.warn",
    "is_gradient_checkpointing",
    "kernels-community",
    "Loading weights",
    "Saving the dataset",
]


def bars(stderr: str) -> set[int]:
    """The distinct progress bars drawn: tqdm redraws one bar with \\r, so each bar is told by
    its total (`12/100`)."""
    import re

    return {int(m.group(1)) for m in re.finditer(r"\| *\d+/(\d+) \[", stderr)}


def test_the_train_stage_shows_one_bar_and_one_line(tmp_path, tiny_tokenizer):
    root = tiny_project(tmp_path / "run", tiny_tokenizer, BUDGET)
    result = run_stage(root)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for noise in NOISE:
        assert noise not in output, f"{noise!r} in:\n{output[-3000:]}"
    assert bars(result.stderr) == {8}  # the 8 training steps; no bar per evaluation
    assert [line for line in result.stdout.splitlines() if line.strip()] == [
        line for line in result.stdout.splitlines() if line.startswith("train: best checkpoint-")
    ]
    assert (root / "metrics/train_live/plots/metrics/train/loss.tsv").is_file()  # logs: DVCLive


def test_the_tokenize_stage_draws_no_dataset_bars(tmp_path, tiny_tokenizer, mencius_records):
    root = tiny_project(tmp_path / "run", tiny_tokenizer, ["tokenize.max_seq_len=512"])
    write_jsonl(root / "train.jsonl", mencius_records[:-3])
    write_jsonl(root / "test.jsonl", mencius_records[-3:])
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/tokenize.py"), "--train", "train.jsonl"]
        + ["--test", "test.jsonl", "--base", "models/base", "--out", "tokenized"]
        + ["--metrics", "tokenize.json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    assert result.stdout.startswith("tokenize: ") and result.stdout.count("\n") == 1
