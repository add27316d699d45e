"""Model shapes, the memory estimate and the fit check, for every model and GPU profile in conf/."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from kotune.config import ModelShape, compose, parse_config
from kotune.errors import KotuneError
from kotune.modeling.memory import check_fits, estimate_for, estimate_training_memory
from kotune.modeling.shapes import hf_config, parameter_count, shape_of

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
HUB_MODELS = [m for m in MODELS if m != "tiny"]
CUDA_GPUS = sorted(p.stem for p in (ROOT / "conf" / "gpu").glob("*.yaml") if p.stem != "cpu")


def config(*overrides):
    return parse_config(compose(list(overrides), ROOT / "conf"))


@pytest.mark.parametrize("model", HUB_MODELS)
def test_parameter_count_matches_the_real_architecture(model):
    """The estimate's parameter count equals transformers' model of that shape (built on meta)."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = config(f"model={model}")
    with torch.device("meta"):
        real = AutoModelForCausalLM.from_config(hf_config(cfg.model.family, cfg.model.shape))
    assert sum(parameter_count(cfg.model.family, cfg.model.shape).values()) == sum(
        p.numel() for p in real.parameters()
    )
    assert shape_of(real.config) == cfg.model.shape


def test_known_sizes_from_the_model_cards():
    billions = {
        "polyglot-ko-1.3b": 1.33,
        "koalpaca-polyglot-5.8b": 5.89,
        "koalpaca-polyglot-12.8b": 12.89,
        "qwen2.5-0.5b-instruct": 0.49,
        "qwen2.5-7b-instruct": 7.62,
        "bllossom-8b": 8.03,
        "eeve-korean-10.8b": 10.80,
    }
    for model, size in billions.items():
        cfg = config(f"model={model}")
        count = sum(parameter_count(cfg.model.family, cfg.model.shape).values())
        assert count / 1e9 == pytest.approx(size, abs=0.01), model


def test_lora_count_matches_the_mencius_seed():
    """The seed reports ~14.6M trainable parameters (0.2488%) for r=8 on every linear layer of
    KoAlpaca-Polyglot-5.8B; the estimate counts the same layers."""
    from kotune.modeling.memory import lora_parameters

    cfg = config("model=koalpaca-polyglot-5.8b")
    lora = lora_parameters("gpt_neox", cfg.model.shape, 8, ["auto"])
    total = sum(parameter_count("gpt_neox", cfg.model.shape).values()) + lora
    assert lora / 1e6 == pytest.approx(14.6, abs=0.1)
    assert 100 * lora / total == pytest.approx(0.2488, abs=0.001)
    assert lora_parameters("gpt_neox", cfg.model.shape, 8, ["query_key_value"]) == 28 * 8 * 4 * 4096


def test_the_seed_hardware_fits_what_the_issue_promises():
    assert estimate_for(config("model=koalpaca-polyglot-5.8b", "gpu=t4")).fits
    assert estimate_for(config("model=polyglot-ko-1.3b", "gpu=rtx3060ti-8gb")).fits


def test_estimate_scales_with_batch_and_checkpointing():
    cfg = config("model=koalpaca-polyglot-5.8b", "gpu=t4")
    args = (cfg.model.family, cfg.model.shape)
    one = estimate_training_memory(
        *args, dataclasses.replace(cfg.gpu, micro_batch_size=1), 1024, 8, ["auto"]
    )
    two = estimate_training_memory(
        *args, dataclasses.replace(cfg.gpu, micro_batch_size=2), 1024, 8, ["auto"]
    )
    assert two.activations == pytest.approx(2 * one.activations)
    assert two.logits == pytest.approx(2 * one.logits)
    assert two.weights == one.weights
    full = estimate_training_memory(
        *args, dataclasses.replace(cfg.gpu, gradient_checkpointing=False), 1024, 8, ["auto"]
    )
    kept = estimate_training_memory(*args, cfg.gpu, 1024, 8, ["auto"])
    assert kept.activations < full.activations / 4
    # 4-bit NF4 with double quantisation: ~4.13 bits a linear weight, far under bf16's 16
    plain = estimate_training_memory(
        *args, dataclasses.replace(cfg.gpu, quantization="none"), 1024, 8, ["auto"]
    )
    linear = parameter_count(*args)["linear"]
    assert (plain.weights - kept.weights) * 1024**3 == pytest.approx(
        linear * (2 - 4.127 / 8) - parameter_count(*args)["norm"] * 2,
        rel=1e-3,
    )


def test_check_fits_refuses_with_the_knobs_to_turn(tmp_path):
    cfg = config("model=qwen2.5-7b-instruct", "gpu=rtx3060ti-8gb")
    with pytest.raises(KotuneError) as error:
        check_fits(cfg, tmp_path)  # no base pinned yet: the yaml's shape is used
    message = str(error.value)
    assert "qwen2.5-7b-instruct" in message and "rtx3060ti-8gb" in message
    assert "gpu.micro_batch_size=1" in message and "kotune fit" in message
    assert check_fits(config("gpu=cpu"), tmp_path) is None  # the CPU has no fixed budget
    assert check_fits(config("model=polyglot-ko-1.3b", "gpu=t4"), tmp_path)["card"] > 1


def test_check_fits_reads_the_pinned_base_shape(tmp_path):
    """A local base is measured by its own config.json, not by what a yaml claims."""
    from transformers import AutoModelForCausalLM  # noqa: F401  (transformers present)

    from kotune.files import write_json

    big = ModelShape(4096, 28, 16, 16, 16384, 30080, 2048, False, 0.25)
    folder = tmp_path / "model"
    folder.mkdir()
    hf_config("gpt_neox", big).save_pretrained(folder)
    base = tmp_path / "base"
    base.mkdir()
    write_json(base / "manifest.json", {"source": "local", "path": str(folder)})
    cfg = config("gpu=rtx3060ti-8gb")  # the tiny model's yaml: would fit trivially
    estimate = check_fits(cfg, base)
    assert estimate["weights"] > 3  # a 5.8B-shaped base, read from config.json


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "kotune.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        **kwargs,
    )


def test_kotune_fit_prints_the_estimate_and_exit_code():
    ok = run_cli("fit", "model=koalpaca-polyglot-5.8b", "gpu=t4")
    assert ok.returncode == 0, ok.stderr
    assert "fits:" in ok.stdout and "weights" in ok.stdout
    too_big = run_cli("fit", "model=qwen2.5-7b-instruct", "gpu=rtx3060ti-8gb")
    assert too_big.returncode == 1
    assert "does not fit" in too_big.stdout and "gpu.micro_batch_size=1" in too_big.stdout
    table = run_cli("fit", "--all")
    assert table.returncode == 0, table.stderr
    rows = [
        line for line in table.stdout.splitlines() if line.startswith("| ") and "model" not in line
    ]
    assert sorted(row.split(" | ")[0][2:] for row in rows) == MODELS
    assert all(row.count("✓") + row.count("✗") == len(CUDA_GPUS) for row in rows)
