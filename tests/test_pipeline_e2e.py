"""The real pipeline, end to end, in a temporary git + DVC copy of the project on a reduced budget:
`dvc exp run -S …` composes conf/ through Hydra, every stage runs, and the exact artifacts and
metric keys are checked; then chat answers, and a forced rerun gives byte-identical data."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 120 warm-up steps and 20 QLoRA steps (fewer and the answers are not Korean yet), an evaluation
# (and checkpoint) every 10, 6 generated answers
BUDGET = [
    "base.steps=120",
    "train.max_steps=20",
    "train.eval_steps=10",
    "train.logging_steps=1",
    "evaluate.max_examples=6",
    "tokenize.max_seq_len=384",
]
DATA_ARTIFACTS = ["data/interim", "data/processed", "data/tokenized"]
# any run time or machine fact (written independently of kotune.reproducible's own pattern)
RUN_TIME = re.compile(r"runtime|second|peak_|thread|measured_at|machine")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "kotune test",
        "GIT_AUTHOR_EMAIL": "test@kotune.invalid",
        "GIT_COMMITTER_NAME": "kotune test",
        "GIT_COMMITTER_EMAIL": "test@kotune.invalid",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def sh(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=cwd, env=env(), capture_output=True, text=True, input=stdin, timeout=1500
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def tree_hashes(root: Path, paths: list[str]) -> dict[str, str]:
    hashes = {}
    for top in paths:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                hashes[path.relative_to(root).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return hashes


def copy_project(repo: Path) -> Path:
    """The committed project (git ls-files) in a fresh git repository at `repo`."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "copy", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("e2e") / "kotune")
    sh("dvc", "exp", "run", *[a for o in BUDGET for a in ("-S", o)], cwd=repo)
    return repo


def read_metrics(project: Path, name: str) -> dict:
    return json.loads((project / "metrics" / f"{name}.json").read_text(encoding="utf-8"))


def test_every_stage_ran_and_wrote_exactly_its_artifacts(project):
    lock = (project / "dvc.lock").read_text(encoding="utf-8")
    for stage in ["ingest", "clean", "split", "base", "tokenize", "train", "evaluate", "export"]:
        assert f"\n  {stage}:\n" in lock
    assert sorted(p.name for p in (project / "models/adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "base",
        "kotune.json",
        "manifest.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vllm_chat_template.jinja",
    ]
    assert sorted(p.name for p in (project / "models/base").iterdir()) == [
        "config.json",
        "generation_config.json",
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    checkpoints = sorted(p.name for p in (project / "models/checkpoints").iterdir())
    assert checkpoints == ["checkpoint-10", "checkpoint-20", "fingerprint.json", "run_metrics.json"]
    assert not (project / "models/unfinished").exists()  # the run finished: DVC keeps it
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "trainer_state.json",
        "optimizer.pt",
    ):
        assert (project / "models/checkpoints/checkpoint-20" / name).is_file()
    assert sorted(p.name for p in (project / "data/tokenized").iterdir()) == [
        "dataset_dict.json",
        "test",
        "train",
    ]
    for loss in ("train/loss.tsv", "eval/loss.tsv"):
        assert (project / "metrics/train_live/plots/metrics" / loss).is_file()


def test_params_were_composed_by_hydra_with_the_overrides(project):
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    assert params["train"]["max_steps"] == 20 and params["base"]["steps"] == 120
    assert params["persona"]["name"] == "mencius" and params["model"]["name"] == "tiny"


def test_metric_keys(project):
    assert set(read_metrics(project, "split")) == {
        "train_conversations",
        "test_conversations",
        "train_examples",
        "test_examples",
        "conversations_on_both_sides",
    }
    assert read_metrics(project, "split")["conversations_on_both_sides"] == 0
    train = read_metrics(project, "train")
    assert {
        "best_checkpoint",
        "best_step",
        "best_eval_loss",
        "final_train_loss",
        "trainable_params",
        "trainable_percent",
        "train_tokens_seen",
    } <= set(train)
    assert train["global_step"] == 20 and train["best_checkpoint"] in {
        "checkpoint-10",
        "checkpoint-20",
    }
    assert train["lora_targets"] == "dense,dense_4h_to_h,dense_h_to_4h,query_key_value"
    assert 0 < train["trainable_percent"] < 10
    evaluation = read_metrics(project, "eval")
    assert set(evaluation) == {
        "checkpoint",
        "eval_loss",
        "perplexity",
        "rouge1_kiwi",
        "rouge2_kiwi",
        "rougeL_kiwi",
        "bleu_kiwi",
        "chrf",
        "scored",
        "skipped_prompt_too_long",
        "empty_predictions",
        "invalid_utf8_predictions",
    }
    assert evaluation["scored"] == 6 and evaluation["checkpoint"] == train["best_checkpoint"]
    assert evaluation["eval_loss"] > 0
    predictions = (project / "metrics/predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 6
    assert set(json.loads(predictions[0])) == {"id", "prompt", "reference", "prediction"}


def test_export_holds_provenance(project):
    adapter = project / "models/adapter"
    settings = json.loads((adapter / "kotune.json").read_text(encoding="utf-8"))
    assert settings["base"] == {
        "source": "bundled",
        "path": "base",
        "name": "tiny",
        "family": "gpt_neox",
    }
    assert "### 질문:" in settings["stop_patterns"] and "\n질문:" in settings["stop_patterns"]
    manifest = json.loads((adapter / "manifest.json").read_text(encoding="utf-8"))
    assert (
        manifest["files"]["adapter_model.safetensors"]
        == hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
    )
    assert set(manifest["data"]) == {"data/processed/train.jsonl", "data/processed/test.jsonl"}
    # no git commit: the commit that records the adapter's hash in dvc.lock comes after it
    assert "git_commit" not in manifest and manifest["best_checkpoint"] == "checkpoint-20"
    card = (adapter / "README.md").read_text(encoding="utf-8")
    train = read_metrics(project, "train")
    assert train["best_checkpoint"] in card and "rougeL_kiwi" in card


def test_chat_answers_from_the_exported_folder_alone(project, tmp_path):
    moved = tmp_path / "adapter"
    shutil.copytree(project / "models/adapter", moved)  # nothing outside the folder is needed
    result = sh(
        str(BIN / "kotune"),
        "chat",
        "--adapter",
        str(moved),
        "--max-new-tokens",
        "32",
        cwd=tmp_path,
        stdin="맹자님, 인이란 무엇입니까?\n/reset\n호연지기는 무엇입니까?\n",
    )
    answers = result.stdout.splitlines()
    assert len(answers) == 2, result.stdout
    assert any(re.search("[가-힣]", a) for a in answers), result.stdout
    for pattern in ("### 질문", "### 답변", "질문:"):
        assert pattern not in result.stdout


def test_plots_and_metrics_are_readable_by_dvc(project):
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=project).stdout)
    assert "metrics/eval.json" in json.dumps(shown)
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=project).stdout)["data"]
    assert {"loss", "learning_rate", "top_nouns", "turn_lengths"} <= set(plots)
    for name in ("loss", "top_nouns", "turn_lengths"):
        values = plots[name][0]["content"]["data"]["values"]
        assert values, f"plot {name} has no data"
    assert {"noun", "count"} <= set(plots["top_nouns"][0]["content"]["data"]["values"][0])


def declared_output_files(project: Path) -> list[Path]:
    """Every file under an output, metric or plot dvc.yaml declares: what dvc.lock hashes and
    git tracks."""
    import yaml

    pipeline = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    files = []
    for stage in pipeline["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key) or []:
                path = project / (item if isinstance(item, str) else next(iter(item)))
                files += [path] if path.is_file() else sorted(path.rglob("*"))
    return [f for f in files if f.is_file()]


def run_times_in(value, where=""):
    """Every key under `value` (JSON) that names a run time or machine fact (RUN_TIME)."""
    if isinstance(value, dict):
        return [f"{where}.{k}" for k in value if RUN_TIME.search(k)] + [
            hit for k, v in value.items() for hit in run_times_in(v, f"{where}.{k}")
        ]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in run_times_in(v, f"{where}[{i}]")]
    return []


def test_run_times_are_in_the_timing_files_and_in_no_declared_output(project):
    checked = []
    for path in declared_output_files(project):
        name = path.relative_to(project).as_posix()
        assert not name.startswith("metrics/timing/")
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            assert not run_times_in(data), (name, run_times_in(data))
            checked.append(name)
        elif path.suffix in (".tsv", ".csv"):
            assert not RUN_TIME.search(path.read_text(encoding="utf-8").split("\n")[0]), name
    for name in ("checkpoint-10/trainer_state.json", "checkpoint-20/trainer_state.json"):
        assert f"models/checkpoints/{name}" in checked
    assert {"metrics/train.json", "metrics/base.json", "models/adapter/manifest.json"} <= set(
        checked
    )
    base = json.loads((project / "metrics/timing/base.json").read_text(encoding="utf-8"))
    train = json.loads((project / "metrics/timing/train.json").read_text(encoding="utf-8"))
    assert base["warmup_seconds"] > 0 and base["warmup_tokens_per_second"] > 0
    assert train["runtime_seconds"] > 0 and train["train_tokens_per_second"] > 0
    assert base["machine"]["cpu_cores"] >= 1 and train["machine"]["torch"]
    ignored = sh("git", "check-ignore", "metrics/timing/train.json", cwd=project).stdout
    assert ignored.strip() == "metrics/timing/train.json"  # git-ignored, as it changes every run
    assert "path: metrics/timing" not in (project / "dvc.lock").read_text(encoding="utf-8")


def test_a_forced_rerun_gives_byte_identical_data(project):
    before = tree_hashes(project, DATA_ARTIFACTS)
    assert len(before) >= 8
    # the data stages alone (-s): base, which tokenize reads, is not among the data artifacts
    # and its weights' reproducibility is tested in tests/modeling/test_base_determinism.py
    sh("dvc", "repro", "--force", "-s", "ingest", "clean", "split", "tokenize", cwd=project)
    assert tree_hashes(project, DATA_ARTIFACTS) == before
