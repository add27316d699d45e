"""Real 4-bit NF4 QLoRA on CPU with tiny models of each architecture family."""

import json

import pytest
import torch

from kotune.training.qlora import find_lora_targets, prepare_checkpoints_dir

SHAPES = {
    "gpt_neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(rotary_pct=0.5, tie_word_embeddings=False),
        ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"],
    ),
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(num_key_value_heads=2),
        ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
    ),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(num_key_value_heads=2, tie_word_embeddings=True),
        ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
    ),
}


def tiny_model(family, path):
    import transformers

    config_cls, model_cls, extra, _ = SHAPES[family]
    config = getattr(transformers, config_cls)(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        **extra,
    )
    torch.manual_seed(0)
    getattr(transformers, model_cls)(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("family", list(SHAPES))
def test_lora_targets_are_every_linear_layer_but_the_head(family, tmp_path):
    from kotune.modeling.loading import load_model

    model = load_model(
        str(tiny_model(family, tmp_path)),
        None,
        quantization="nf4",
        compute_dtype="float32",
        device="cpu",
    )
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert find_lora_targets(model) == SHAPES[family][3]


def test_qlora_steps_with_evaluations_between_lower_the_loss_and_leave_the_base_frozen(tmp_path):
    """Train, evaluate (no grad, as the Trainer does every eval_steps), train again."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from kotune.modeling.loading import load_model

    model = load_model(
        str(tiny_model("gpt_neox", tmp_path)),
        None,
        quantization="nf4",
        compute_dtype="float32",
        device="cpu",
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=find_lora_targets(model),
            task_type="CAUSAL_LM",
        ),
    )
    frozen = {
        n: p.data.reshape(-1).clone() for n, p in model.named_parameters() if not p.requires_grad
    }
    torch.manual_seed(0)
    batch = torch.randint(0, 300, (4, 32))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        model.train()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        model.eval()
        with torch.no_grad():  # bitsandbytes must not repack the 4-bit weights here
            model(input_ids=batch)
    assert losses[2] < losses[0] - 0.01, losses
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param.data.reshape(-1), frozen[name]), (
                f"{name} changed but belongs to the frozen base"
            )


def test_resume_only_when_the_fingerprint_matches(tmp_path):
    ckpts = tmp_path / "checkpoints"
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) is None
    (ckpts / "checkpoint-10").mkdir()
    (ckpts / "checkpoint-20").mkdir()
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) == ckpts / "checkpoint-20"
    assert prepare_checkpoints_dir(ckpts, "abc", resume=False) is None
    assert not (ckpts / "checkpoint-20").exists()
    (ckpts / "checkpoint-5").mkdir()
    assert prepare_checkpoints_dir(ckpts, "changed", resume=True) is None
    assert list(ckpts.iterdir()) == [ckpts / "fingerprint.json"]
    assert json.loads((ckpts / "fingerprint.json").read_text()) == {"fingerprint": "changed"}
