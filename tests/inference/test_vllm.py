"""What export writes for vLLM: an adapter its LoRA loader accepts (where vLLM has LoRA for the
architecture), the persona's prompt as a chat template, the command; a merged folder for the
others."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kotune.inference.vllm import TEMPLATE_FILE, max_lora_rank, vllm_problems

KOTUNE = str(Path(sys.executable).with_name("kotune"))


def write_adapter(folder: Path, config: dict, modules: list[str]) -> Path:
    """adapter_config.json and a safetensors file with LoRA tensors for `modules`."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    base = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "bias": "none"}
    (folder / "adapter_config.json").write_text(json.dumps({**base, **config}))
    tensors = {
        f"base_model.model.{m}.lora_{ab}.weight": torch.zeros(2, 2) for m in modules for ab in "AB"
    }
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


QWEN = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"]


@pytest.mark.parametrize(
    ("config", "modules", "problem"),
    [
        ({}, QWEN, None),
        ({"use_rslora": True, "lora_dropout": 0.1}, QWEN, None),
        ({"modules_to_save": ["lm_head"]}, QWEN, "modules_to_save must be empty"),
        ({"use_dora": True}, QWEN, "use_dora must be false"),
        ({"bias": "lora_only"}, QWEN, "bias must be none"),
        ({"r": 1024}, QWEN, "r must be at most 512"),
        ({"rank_pattern": {"q_proj": 16}}, QWEN, "ignored by vLLM"),
        ({"layers_to_transform": [0]}, QWEN, "ignored by vLLM"),
        ({}, ["model.layers.0.self_attn.rotary_emb"], "not a LoRA weight"),
    ],
)
def test_vllms_rules_for_adapter_config(tmp_path, config, modules, problem):
    problems = vllm_problems(write_adapter(tmp_path / "a", config, modules), "qwen2")
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("r", "flag"), [(1, 1), (4, 8), (8, 8), (16, 16), (17, 32), (300, 320)])
def test_the_smallest_max_lora_rank_that_admits_r(r, flag):
    assert max_lora_rank(r) == flag


def test_the_tiny_models_export_says_how_vllm_serves_it(tiny_adapter):
    problems = vllm_problems(tiny_adapter, "gpt_neox")
    assert len(problems) == 1 and "no LoRA support for the gpt_neox" in problems[0]
    card = (tiny_adapter / "README.md").read_text(encoding="utf-8")
    assert "kotune merge --adapter models/adapter -o models/merged" in card
    assert "vllm serve models/merged --served-model-name mencius" in card
    assert "kotune serve --adapter models/adapter" in card


def test_the_persona_template_renders_kotunes_own_prompt(tiny_adapter):
    from kotune.inference.adapter import adapter_prompt_builder, read_settings
    from kotune.inference.loading import load_tokenizer

    settings = read_settings(tiny_adapter)
    tokenizer = load_tokenizer(str(tiny_adapter))
    template = (tiny_adapter / TEMPLATE_FILE).read_text(encoding="utf-8")
    builder = adapter_prompt_builder(tokenizer, settings)
    context = [
        {"role": "user", "content": "인이란?"},
        {"role": "assistant", "content": "사람의 마음이오."},
        {"role": "user", "content": "의란?"},
    ]
    render = lambda messages: tokenizer.apply_chat_template(  # noqa: E731
        messages, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    assert render(context) == builder.render(context)  # the persona's system prompt first
    own = [{"role": "system", "content": "너는 공자다."}, *context]
    assert render(own) == builder.render(context).replace(settings.system_prompt, "너는 공자다.")


def test_merge_writes_a_model_folder_that_answers_as_the_adapter(tiny_adapter, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.inference.adapter import load_exported

    out = tmp_path / "merged"
    result = subprocess.run(
        [KOTUNE, "merge", "--adapter", str(tiny_adapter), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"vllm serve {out} --served-model-name mencius" in result.stderr
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    reference = load_exported(tiny_adapter)
    ids = torch.tensor([reference.tokenizer("### 질문: 인이란?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(merged(input_ids=ids).logits, reference.model(input_ids=ids).logits)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "인이란?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.startswith(reference.settings.system_prompt) and prompt.endswith("### 답변:")
    again = subprocess.run(
        [KOTUNE, "merge", "--adapter", str(tiny_adapter), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
