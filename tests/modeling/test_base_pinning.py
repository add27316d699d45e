"""The base stage for real models: pin what is in the cache or a local folder, check its shape,
and fail in one line (no traceback, no download, no partial models/base/) when it is missing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kotune.config import ModelShape, compose, parse_config
from kotune.errors import KotuneError
from kotune.modeling.base import pin_pretrained_base
from kotune.modeling.shapes import save_random_model

ROOT = Path(__file__).resolve().parents[2]
SMALL = ModelShape(64, 2, 4, 4, 128, 300, 128, False, 0.5)


def params(*overrides) -> dict:
    return compose(list(overrides), ROOT / "conf")


def run_base_stage(tmp_path, data: dict, env: dict | None = None):
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
    )
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "stages/base.py"),
            "train.jsonl",
            "--out",
            "models/base",
            "--metrics",
            "metrics/base.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_hub_model_missing_from_the_cache_is_one_line(tmp_path):
    result = run_base_stage(
        tmp_path,
        params("model=koalpaca-polyglot-5.8b", "gpu=t4"),
        env={"HF_HOME": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("kotune: error: model beomi/KoAlpaca-Polyglot-5.8B@main is not in the")
    assert "`hf download beomi/KoAlpaca-Polyglot-5.8B --revision main`" in line
    assert not (tmp_path / "models" / "base").exists() and not (tmp_path / "metrics").exists()
    assert not [p for p in (tmp_path / "models").rglob("*") if p.is_file()]  # nothing partial


def test_a_cached_snapshot_is_pinned_to_its_commit(tmp_path):
    """A model in the Hugging Face cache layout (snapshots/<commit>) is found offline and the
    manifest records that commit and every file's hash."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--kotune--tiny-neox"
    snapshot = save_random_model("gpt_neox", SMALL, repo / "snapshots" / commit, dtype="float32")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    data = params("model=polyglot-ko-1.3b")
    data["model"].update(hub_id="kotune/tiny-neox", shape=SMALL.__dict__)
    result = run_base_stage(
        tmp_path, data, env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "models" / "base" / "manifest.json").read_text())
    assert manifest["revision"] == commit and manifest["hub_id"] == "kotune/tiny-neox"
    assert set(manifest["files"]) == {p.name for p in snapshot.iterdir()}
    assert all(len(digest) == 64 for digest in manifest["files"].values())


def local_config(folder: Path, **model):
    data = params("model=polyglot-ko-1.3b")
    data["model"].update(source="local", path=str(folder), **model)
    return parse_config(data)


def test_a_yaml_shape_that_is_not_the_real_one_is_refused(tmp_path):
    folder = save_random_model("gpt_neox", SMALL, tmp_path / "m", dtype="float32")
    wrong = {**SMALL.__dict__, "num_layers": 3, "vocab_size": 301}
    with pytest.raises(KotuneError) as error:
        pin_pretrained_base(local_config(folder, shape=wrong), tmp_path / "base")
    assert "num_layers: declared 3, config.json 2" in str(error.value)
    assert "vocab_size: declared 301, config.json 300" in str(error.value)
    with pytest.raises(KotuneError, match="model_type 'gpt_neox', but model.family is 'llama'"):
        pin_pretrained_base(local_config(folder, family="llama", shape=None), tmp_path / "b2")
    pin_pretrained_base(local_config(folder, shape=SMALL.__dict__), tmp_path / "base")
    assert json.loads((tmp_path / "base" / "manifest.json").read_text())["path"] == str(folder)


def test_a_local_path_without_a_model_is_named(tmp_path):
    with pytest.raises(KotuneError, match="no config.json there"):
        pin_pretrained_base(local_config(tmp_path, shape=None), tmp_path / "base")
