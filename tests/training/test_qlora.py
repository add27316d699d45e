"""Real 4-bit NF4 QLoRA on CPU with tiny models of each architecture family."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from kotune.errors import KotuneError
from kotune.inference.loading import find_lora_targets
from kotune.training.checkpoints import (
    last_checkpoint,
    prepare_checkpoints_dir,
    resumable_checkpoint,
    run_finished,
    train_loss_figures,
    trim_curves,
)

ROOT = Path(__file__).resolve().parents[2]
# the train stage's arguments, as dvc.yaml gives them
STAGE = [
    "--base",
    "models/base",
    "--data",
    "data/tokenized",
    "--out",
    "models/checkpoints",
    "--live",
    "metrics/train_live",
    "--metrics",
    "metrics/train.json",
    "--unfinished",
    "models/unfinished",
]

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


def nf4_tiny_model(family, path, compute_dtype="float32"):
    """The family's tiny model saved to `path` and loaded back in 4-bit NF4 by kotune, on CPU."""
    from kotune.inference.loading import load_model

    return load_model(
        str(tiny_model(family, path)),
        None,
        quantization="nf4",
        compute_dtype=compute_dtype,
        device="cpu",
    )


@pytest.mark.parametrize("family", list(SHAPES))
def test_lora_targets_are_every_linear_layer_but_the_head(family, tmp_path):

    model = nf4_tiny_model(family, tmp_path, "float32")
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert find_lora_targets(model) == SHAPES[family][3]


@pytest.mark.parametrize("family", ["gpt_neox", "qwen2"])
def test_vocabulary_matrices_stay_in_the_compute_dtype(family, tmp_path):
    """peft upcasts every 16-bit weight to fp32; kotune puts the embeddings and head back (a
    measured 3-5x on an H100), and keeps the norms in fp32."""
    from peft import prepare_model_for_kbit_training

    from kotune.inference.loading import keep_vocab_matrices_in

    model = nf4_tiny_model(family, tmp_path, "bfloat16")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    assert model.get_input_embeddings().weight.dtype == torch.float32  # what peft does
    keep_vocab_matrices_in(model, "bfloat16")
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.dtype == torch.bfloat16
    norms = [m for n, m in model.named_modules() if "norm" in n.rsplit(".", 1)[-1].lower()]
    assert norms and all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)


def test_qlora_steps_with_evaluations_between_lower_the_loss_and_leave_the_base_frozen(tmp_path):
    """Train, evaluate (no grad, as the Trainer does every eval_steps), train again."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = nf4_tiny_model("gpt_neox", tmp_path, "float32")
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


def checkpoint(ckpts, step, complete=True, stop=False):
    path = ckpts / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:  # the Trainer writes trainer_state.json last
        control = {"args": {"should_training_stop": stop}, "attributes": {}}
        state = {"global_step": step, "stateful_callbacks": {"TrainerControl": control}}
        (path / "trainer_state.json").write_text(json.dumps(state))
    return path


def test_resume_only_when_the_fingerprint_matches(tmp_path):
    ckpts = tmp_path / "checkpoints"
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) is None
    checkpoint(ckpts, 10)
    checkpoint(ckpts, 20)
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) == ckpts / "checkpoint-20"
    assert resumable_checkpoint(ckpts, "abc", resume=True) == ckpts / "checkpoint-20"
    assert resumable_checkpoint(ckpts, "changed", resume=True) is None
    assert resumable_checkpoint(ckpts, "abc", resume=False) is None
    assert prepare_checkpoints_dir(ckpts, "abc", resume=False) is None
    assert not (ckpts / "checkpoint-20").exists()
    checkpoint(ckpts, 5)
    assert prepare_checkpoints_dir(ckpts, "changed", resume=True) is None
    assert list(ckpts.iterdir()) == [ckpts / "fingerprint.json"]
    assert json.loads((ckpts / "fingerprint.json").read_text()) == {"fingerprint": "changed"}


def test_a_save_cut_off_by_a_kill_is_not_resumed_from_but_removed(tmp_path):
    ckpts = tmp_path / "checkpoints"
    prepare_checkpoints_dir(ckpts, "abc", resume=True)
    checkpoint(ckpts, 2)
    checkpoint(ckpts, 4)
    checkpoint(ckpts, 6, complete=False)  # killed while saving: no trainer_state.json yet
    assert last_checkpoint(ckpts) == ckpts / "checkpoint-4"
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) == ckpts / "checkpoint-4"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "checkpoint-2",
        "checkpoint-4",
        "fingerprint.json",
    ]
    # killed before its first checkpoint was complete: start over
    for path in ckpts.glob("checkpoint-*"):
        shutil.rmtree(path)
    checkpoint(ckpts, 2, complete=False)
    assert prepare_checkpoints_dir(ckpts, "abc", resume=True) is None
    assert list(ckpts.iterdir()) == [ckpts / "fingerprint.json"]


def test_an_unfinished_run_kept_outside_dvc_comes_back_after_a_checkout(tmp_path):
    """What `dvc exp run` does before it runs: the checkpoints folder checked out as dvc.lock
    has it (the last finished run, another fingerprint); the stopped run's links survive."""
    from kotune.training.checkpoints import keep_unfinished, restore_unfinished

    ckpts, kept = tmp_path / "checkpoints", tmp_path / "unfinished"
    prepare_checkpoints_dir(ckpts, "new", resume=True, unfinished_dir=kept)
    saved = checkpoint(ckpts, 10)
    (saved / "adapter.bin").write_bytes(b"step 10")
    state = type("State", (), {"is_world_process_zero": True})()
    keep_unfinished(ckpts, kept).on_save(None, state, None)
    checkpoint(ckpts, 20)
    keep_unfinished(ckpts, kept).on_save(None, state, None)
    assert (kept / "checkpoint-10" / "adapter.bin").stat().st_ino == (
        saved / "adapter.bin"
    ).stat().st_ino  # hard links: no second copy
    shutil.rmtree(ckpts)  # the checkout: the old finished run comes back instead
    checkpoint(ckpts, 90, stop=True)
    (ckpts / "fingerprint.json").write_text(json.dumps({"fingerprint": "old"}))
    assert prepare_checkpoints_dir(ckpts, "new", resume=True, unfinished_dir=kept) == (
        ckpts / "checkpoint-20"
    )
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "checkpoint-10",
        "checkpoint-20",
        "fingerprint.json",
    ]
    assert (ckpts / "checkpoint-10" / "adapter.bin").read_bytes() == b"step 10"
    # another fingerprint (changed params) or resume off: the kept run is dropped
    assert not restore_unfinished(ckpts, kept, "other", resume=True) and not kept.exists()


def test_a_run_has_finished_when_its_checkpoint_says_training_should_stop(tmp_path):
    assert run_finished(checkpoint(tmp_path, 8, stop=True))
    assert not run_finished(checkpoint(tmp_path, 6))


@pytest.mark.parametrize(
    "log_history, mean, last",
    [
        ([], None, None),
        ([{"step": 2, "eval_loss": 1.0}], None, None),
        # logged at steps 1, 3, 4: each loss is the mean since the log before
        (
            [
                {"step": 1, "loss": 4.0},
                {"step": 3, "loss": 2.0},
                {"step": 3, "eval_loss": 9.0},
                {"step": 4, "loss": 1.0},
            ],
            (4.0 + 2.0 * 2 + 1.0) / 4,
            1.0,
        ),
    ],
)
def test_train_loss_figures_weight_each_log_by_the_steps_it_covers(log_history, mean, last):
    assert train_loss_figures(log_history) == (mean, last)


def test_curves_logged_past_the_resumed_checkpoint_are_dropped(tmp_path):
    table = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    table.parent.mkdir(parents=True)
    table.write_text("step\tloss\n1\t4.0\n2\t3.0\n3\t2.5\n")
    trim_curves(tmp_path, 2)
    assert table.read_text() == "step\tloss\n1\t4.0\n2\t3.0\n"


def tiny_project(root, tokenizer, overrides, train_examples=40, test_examples=8):
    """What stages/train.py reads, in `root`: params.yaml (the composed defaults + `overrides`),
    models/base (a 2-layer GPT-NeoX, random weights, and its manifest) and data/tokenized
    (arithmetic sequences the adapter can learn, the first 4 tokens masked as a prompt)."""
    from datasets import Dataset, DatasetDict

    from kotune.config import ScratchModelConfig, compose
    from kotune.files import digest_of, sha256_tree, write_json
    from kotune.modeling.scratch import build_model

    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(
        yaml.safe_dump(compose(overrides, ROOT / "conf"), allow_unicode=True), encoding="utf-8"
    )
    base = root / "models" / "base"
    shape = ScratchModelConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    build_model(shape, tokenizer, seed=0).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_json(
        base / "manifest.json", {"source": "scratch", "fingerprint": digest_of(sha256_tree(base))}
    )
    symbols = 48  # a small shared alphabet: what is learned on train lowers the test loss too

    def rows(count, offset):
        for i in range(offset, offset + count):
            length, stride = 12 + (i * 7) % 29, 1 + i % 5
            ids = [2 + (i + k * stride) % symbols for k in range(length)]  # not eos, pad
            yield {"input_ids": ids, "labels": [-100] * 4 + ids[4:]}

    DatasetDict(
        train=Dataset.from_list(list(rows(train_examples, 0))),
        test=Dataset.from_list(list(rows(test_examples, 1000))),
    ).save_to_disk(str(root / "data" / "tokenized"))
    return root


def train(root):
    """The train stage's work on a tiny project, in this process (no metrics file written);
    returns its metrics."""
    return train_timed(root)[0]


def train_timed(root):
    """(metrics, timing) of the train stage's work on a tiny project, in this process."""
    from kotune.config import load_config
    from kotune.training.qlora import train_adapter

    return train_adapter(
        load_config(root / "params.yaml"),
        root / "models" / "base",
        root / "data" / "tokenized",
        root / "models" / "checkpoints",
        root / "metrics" / "train_live",
        root / "models" / "unfinished",
    )


def run_stage(root):
    """stages/train.py in `root`, as DVC runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train.py"), *STAGE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )


def load_stage():
    spec = importlib.util.spec_from_file_location("train_stage", ROOT / "stages" / "train.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    return stage


def test_a_run_that_cannot_fit_the_card_stops_before_loading_anything(tmp_path, tiny_tokenizer):
    root = tiny_project(tmp_path, tiny_tokenizer, ["gpu.memory_gib=0.001"])
    with pytest.raises(KotuneError, match="needs about .* GiB"):
        train(root)
    assert not (root / "models" / "checkpoints").exists()


def test_train_metrics_hold_the_memory_estimate_and_peaks(tmp_path, tiny_tokenizer):
    from kotune.config import load_config
    from kotune.modeling.memory import check_fits

    overrides = ["gpu.memory_gib=64", "train.max_steps=2", "train.eval_steps=2"]
    root = tiny_project(tmp_path, tiny_tokenizer, overrides)
    metrics, timing = train_timed(root)
    estimate = check_fits(load_config(root / "params.yaml"), root / "models" / "base")
    assert metrics["estimated_memory_gib"] == estimate["card"] > 0  # what the card must have
    # peaks are run-time figures: in the timing file, never in the hashed metrics
    assert timing["peak_allocated_gib"] is None and timing["peak_reserved_gib"] is None  # CPU
    assert not {"peak_allocated_gib", "peak_reserved_gib"} & set(metrics)
    assert metrics["num_processes"] == 1 and metrics["global_step"] == 2


def test_cuda_out_of_memory_in_training_is_one_line_with_advice(tmp_path, monkeypatch):
    from kotune.config import compose, parse_config
    from kotune.modeling.memory import oom_message
    from kotune.training import qlora

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(qlora, "train_adapter", out_of_memory)
    cfg = parse_config(compose([], ROOT / "conf"))
    with pytest.raises(KotuneError) as error:
        load_stage().main(
            cfg, *(tmp_path / name for name in ["base", "data", "out", "live", "m.json"])
        )
    assert str(error.value) == oom_message(cfg)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("family", list(SHAPES))
def test_packed_batches_give_the_padded_loss_without_cross_example_attention(
    family, tmp_path, tiny_tokenizer
):
    """gpu.packing: one row per micro-batch, position_ids restarting. Same loss as padding (and
    the same gradient, up to float error); positions that run on (examples attending to each
    other) must miss, or the check could not fail."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from kotune.training.qlora import data_collator

    model = nf4_tiny_model(family, tmp_path, "float32")
    # as the Trainer sets it (TrainingArguments.use_cache=False); with a cache transformers
    # would not look for packed rows
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=find_lora_targets(model)
    )
    model = get_peft_model(model, config)
    for name, param in model.named_parameters():  # B = 0 would hide the adapter from the check
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    assert tiny_tokenizer.pad_token_id is not None
    generator = torch.Generator().manual_seed(1)
    examples = []
    for n in (7, 19, 12, 30):
        ids = torch.randint(10, 300, (n,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2 :]})

    def run(batch):
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        return out.loss.detach(), grads, out.logits.detach()

    def unpadded(logits):  # the examples' positions, in order, from either layout
        if logits.shape[0] == 1:
            return logits[0]
        return torch.cat([logits[i, : len(e["input_ids"])] for i, e in enumerate(examples)])

    packed = data_collator(True, tiny_tokenizer)([dict(e) for e in examples])
    padded = data_collator(False, tiny_tokenizer)([dict(e) for e in examples])
    assert packed["input_ids"].shape == (1, 68) and "attention_mask" not in packed
    assert padded["input_ids"].shape == (4, 32)
    model.train()
    loss_packed, grads_packed, logits_packed = run(packed)
    loss_padded, grads_padded, logits_padded = run(padded)
    assert torch.allclose(loss_packed, loss_padded, rtol=0, atol=1e-5), (loss_packed, loss_padded)
    assert torch.allclose(unpadded(logits_packed), unpadded(logits_padded), rtol=0, atol=1e-4)
    for a, b in zip(grads_packed, grads_padded, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    _, _, logits_leaky = run(dict(packed, position_ids=torch.arange(68)[None]))
    gap = (unpadded(logits_leaky) - unpadded(logits_padded)).abs().max()
    assert gap > 1e-2, f"cross-example attention went unnoticed ({gap})"
