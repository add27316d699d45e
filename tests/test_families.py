"""Each architecture family with its prompt format, end to end on a tiny random look-alike:
gpt_neox (KoAlpaca headers), qwen2 (ChatML) and llama (Llama-3), each loaded through the real
code from a local folder with a tokenizer that carries the real model's chat template."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kotune.config import ModelShape, compose, parse_config
from kotune.errors import ConfigError, KotuneError
from kotune.prompting import CHATML_TEMPLATE, LLAMA3_TEMPLATE, prompt_builder
from kotune.tokenizing import IGNORE_INDEX, encode_example

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "너는 맹자다."

# Qwen/Qwen2.5-7B-Instruct's tokenizer_config.json chat_template, verbatim.
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# meta-llama/Meta-Llama-3-8B-Instruct's chat_template (Bllossom-8B keeps it), verbatim.
META_LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    prompt_format: str
    end_of_turn: str | None
    special_tokens: tuple[str, ...]  # ids 0, 1, … in this order
    bos: str | None
    eos: str
    pad: str | None
    chat_template: str | None
    adds_bos: bool  # the tokenizer puts bos in front of every encoding (Llama-3 does)
    lora_targets: str


FAMILIES = {
    "gpt_neox": Family(  # Polyglot-ko / KoAlpaca: `### 질문:` headers, answers end with eos
        prompt_format="koalpaca",
        end_of_turn=None,
        special_tokens=("<|endoftext|>",),
        bos="<|endoftext|>",
        eos="<|endoftext|>",
        pad=None,
        chat_template=None,
        adds_bos=False,
        lora_targets="dense,dense_4h_to_h,dense_h_to_4h,query_key_value",
    ),
    "qwen2": Family(  # eos as Qwen2's base tokenizer has it: the end of turn must differ from it
        prompt_format="chatml",
        end_of_turn="<|im_end|>",
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        chat_template=QWEN25_TEMPLATE,
        adds_bos=False,
        lora_targets="down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj",
    ),
    "llama": Family(  # Llama-3 (Bllossom): eos <|end_of_text|>, turns end with <|eot_id|>
        prompt_format="llama3",
        end_of_turn="<|eot_id|>",
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad=None,
        chat_template=META_LLAMA3_TEMPLATE,
        adds_bos=True,
        lora_targets="down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj",
    ),
}

CONTEXT = [
    {"role": "user", "content": "인이란?"},
    {"role": "assistant", "content": "사람의 마음이오."},
    {"role": "user", "content": "의란?"},
]
PROMPTS = {
    "gpt_neox": "너는 맹자다.\n\n### 질문: 인이란?\n\n### 답변: 사람의 마음이오.\n\n"
    "### 질문: 의란?\n\n### 답변:",
    "qwen2": "<|im_start|>system\n너는 맹자다.<|im_end|>\n<|im_start|>user\n인이란?<|im_end|>\n"
    "<|im_start|>assistant\n사람의 마음이오.<|im_end|>\n<|im_start|>user\n의란?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "llama": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n너는 맹자다.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n인이란?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n사람의 마음이오.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n의란?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
}


def train_family_tokenizer(family: Family, texts: list[str]):
    """A byte-level BPE learned from `texts` (as the scratch model's) with the family's special
    tokens, bos handling and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        min_frequency=2,
        special_tokens=list(family.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if family.adds_bos:  # Llama-3's post-processor: <|begin_of_text|> before every encoding
        bos_id = tokenizer.token_to_id(family.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", special_tokens=[(family.bos, bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        additional_special_tokens=[
            t for t in family.special_tokens if t not in (family.bos, family.eos, family.pad)
        ],
        model_max_length=256,
    )
    fast.chat_template = family.chat_template
    return fast


def tiny_shape(name: str, vocab_size: int) -> ModelShape:
    return ModelShape(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4 if name == "gpt_neox" else 2,
        intermediate_size=128,
        vocab_size=vocab_size,
        max_position_embeddings=256,
        tie_word_embeddings=name == "qwen2",  # as Qwen2.5-0.5B
        rotary_pct=0.5 if name == "gpt_neox" else 1.0,
    )


def family_config(name: str, model_dir: Path, shape: ModelShape):
    """The defaults (mencius, cpu) with this family's tiny model from a local folder; a budget
    of two training steps and two generated answers."""
    family = FAMILIES[name]
    data = compose(["persona=mencius", "model=tiny", "gpu=cpu"], ROOT / "conf")
    data["model"] = {
        "name": f"tiny-{name}",
        "source": "local",
        "family": name,
        "prompt_format": family.prompt_format,
        "end_of_turn": family.end_of_turn,
        "hub_id": None,
        "revision": None,
        "path": str(model_dir),
        "lora_targets": ["auto"],
        "scratch": None,
        "shape": asdict(shape),
    }
    data["persona"]["system_prompt"] = SYSTEM
    data["tokenize"]["max_seq_len"] = 256
    data["persona"]["generation"]["max_new_tokens"] = 8
    data["train"].update(max_steps=2, eval_steps=2, logging_steps=1, effective_batch_size=4)
    data["evaluate"].update(batch_size=2, max_examples=2)
    return parse_config(data)


@dataclass(frozen=True)
class Built:
    name: str
    family: Family
    cfg: Any  # kotune.config.Config with model.source local
    base_dir: Path  # models/base: the manifest pinning the local folder
    tokenizer: Any  # as load_tokenizer gives it

    def builder(self, **changes):
        model = replace(self.cfg.model, **changes)
        return prompt_builder(
            self.tokenizer, model.prompt_format, model.end_of_turn, SYSTEM, model.name
        )


@pytest.fixture(scope="module", params=list(FAMILIES))
def built(request, tmp_path_factory, mencius_records) -> Built:
    """The family's tiny model and tokenizer in a local folder, pinned by the base step and
    loaded back through kotune's loaders."""
    from kotune.inference.loading import load_tokenizer
    from kotune.modeling.base import corpus_texts, pin_pretrained_base
    from kotune.modeling.manifest import base_location, read_manifest
    from kotune.modeling.shapes import save_random_model

    name = request.param
    family = FAMILIES[name]
    root = tmp_path_factory.mktemp(name)
    model_dir = root / "hf"
    texts = corpus_texts(mencius_records) + [SYSTEM, "### 질문:", "### 답변:"] * 4
    tokenizer = train_family_tokenizer(family, texts)
    tokenizer.save_pretrained(model_dir)
    shape = tiny_shape(name, len(tokenizer))
    save_random_model(
        name,
        shape,
        model_dir,
        dtype="float32",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cfg = family_config(name, model_dir, shape)
    base_dir = root / "models" / "base"
    pin_pretrained_base(cfg, base_dir)
    loaded = load_tokenizer(*base_location(base_dir, read_manifest(base_dir)))
    return Built(name, family, cfg, base_dir, loaded)


def test_the_prompt_is_the_models_own(built):
    builder = built.builder()
    assert builder.render(CONTEXT) == PROMPTS[built.name]
    if built.family.chat_template:  # rendered by the tokenizer's template, not kotune's copy
        assert builder.chat_template == built.family.chat_template


@pytest.mark.parametrize("built", ["qwen2", "llama"], indirect=True)
def test_the_fallback_template_renders_what_the_model_ships(built):
    tokenizer = built.tokenizer
    own = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        fallback = built.builder()
        assert (
            fallback.chat_template
            == {"qwen2": CHATML_TEMPLATE, "llama": LLAMA3_TEMPLATE}[built.name]
        )
        assert fallback.render(CONTEXT) == PROMPTS[built.name]
        with pytest.raises(KotuneError, match=f"model 'tiny-{built.name}'.*has none"):
            built.builder(prompt_format="template")
    finally:
        tokenizer.chat_template = own
    # `template`: the same own template, whatever it is
    assert built.builder(prompt_format="template").render(CONTEXT) == PROMPTS[built.name]


def test_labels_are_the_answer_and_the_end_of_turn_token(built):
    tokenizer, family = built.tokenizer, built.family
    builder = built.builder()
    example = {"id": "e", "context": CONTEXT, "answer": "옳음이오."}
    row = encode_example(builder, example, 256)
    n = row["prompt_tokens"]
    end_id = tokenizer.convert_tokens_to_ids(family.end_of_turn or family.eos)
    assert builder.end_of_turn_id == end_id
    if family.end_of_turn:
        assert end_id != tokenizer.eos_token_id
        assert builder.stop_token_ids == (end_id, tokenizer.eos_token_id)
    assert row["labels"][:n] == [IGNORE_INDEX] * n
    assert row["labels"][n:] == row["input_ids"][n:]
    assert row["labels"][-1] == end_id and row["labels"].count(end_id) == 1
    spaced = "" if family.chat_template else " "  # KoAlpaca: `### 답변: …`
    assert tokenizer.decode(row["labels"][n:-1]) == f"{spaced}옳음이오."
    assert tokenizer.decode(row["input_ids"][:n]) == PROMPTS[built.name]
    # the rendered <|begin_of_text|> is the only one: tokenizing added no second bos
    if family.bos and family.adds_bos:
        assert tokenizer("인")["input_ids"][0] == tokenizer.bos_token_id  # it would have
        assert row["input_ids"].count(tokenizer.bos_token_id) == 1


def test_a_tight_max_seq_len_drops_the_oldest_turn_first(built):
    builder = built.builder()
    example = {"id": "e", "context": CONTEXT, "answer": "옳음이오."}
    full = encode_example(builder, example, 256)
    cut = encode_example(builder, example, len(full["input_ids"]) - 1)
    assert full["context_turns_dropped"] == 0 and cut["context_turns_dropped"] == 1
    text = built.tokenizer.decode(cut["input_ids"][: cut["prompt_tokens"]])
    assert "인이란" not in text and "사람의 마음" not in text
    assert SYSTEM in text and "의란?" in text
    assert cut["input_ids"][cut["prompt_tokens"] :] == full["input_ids"][full["prompt_tokens"] :]
    assert encode_example(builder, example, cut["answer_tokens"] + 4) is None


def test_lora_targets_are_the_familys_linear_layers(built):
    from kotune.inference.loading import find_lora_targets, load_model
    from kotune.modeling.manifest import base_location, read_manifest

    model = load_model(
        *base_location(built.base_dir, read_manifest(built.base_dir)),
        quantization="nf4",
        compute_dtype="float32",
        device="cpu",
    )
    assert ",".join(find_lora_targets(model)) == built.family.lora_targets


def load_stage(name: str):
    """A stage script as a module (not on sys.path: stages/tokenize.py would shadow the stdlib)."""
    spec = importlib.util.spec_from_file_location(
        f"kotune_stage_{name}", ROOT / f"stages/{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(built, tmp_path_factory, mencius_records):
    """The tokenize stage's main and two QLoRA steps on the family's tiny model."""
    from kotune.files import read_json, write_jsonl
    from kotune.training.qlora import train_adapter

    root = tmp_path_factory.mktemp(f"{built.name}-run")
    splits = {"train": root / "train.jsonl", "test": root / "test.jsonl"}
    write_jsonl(splits["train"], mencius_records[:-3])
    write_jsonl(splits["test"], mencius_records[-3:])
    tokenized = root / "data" / "tokenized"
    load_stage("tokenize").main(built.cfg, splits, built.base_dir, tokenized, root / "tok.json")
    checkpoints = root / "models" / "checkpoints"
    metrics, _ = train_adapter(built.cfg, built.base_dir, tokenized, checkpoints, root / "live")
    return root, splits, tokenized, checkpoints, metrics, read_json(root / "tok.json")


def test_two_qlora_steps_train_on_the_end_of_turn_and_save_a_checkpoint(built, trained):
    from datasets import load_from_disk

    _, _, tokenized, checkpoints, metrics, counts = trained
    assert counts["train_skipped_too_long"] == 0 and counts["train_examples"] > 0
    end_id = built.builder().end_of_turn_id
    for row in load_from_disk(str(tokenized))["train"]:
        assert row["labels"][-1] == end_id and row["input_ids"][-1] == end_id
    assert metrics["global_step"] == 2 and metrics["lora_targets"] == built.family.lora_targets
    assert math.isfinite(metrics["final_train_loss"]) and math.isfinite(metrics["best_eval_loss"])
    assert metrics["best_checkpoint"] == "checkpoint-2"
    assert (checkpoints / "checkpoint-2" / "adapter_model.safetensors").is_file()


def test_evaluate_export_and_chat_use_the_familys_prompt(built, trained):
    from datasets import load_from_disk

    from kotune.chat import ChatSession
    from kotune.evaluation import evaluate_adapter
    from kotune.export import export_adapter
    from kotune.files import read_json, read_jsonl
    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine
    from kotune.inference.vllm import TEMPLATE_FILE, vllm_problems
    from kotune.records import training_examples

    root, splits, tokenized, checkpoints, train_metrics, _ = trained
    test_rows = load_from_disk(str(tokenized))["test"].to_list()
    test_records = [r for _, r in read_jsonl(splits["test"])]
    stats, predictions = evaluate_adapter(
        built.cfg, built.base_dir, checkpoints / "checkpoint-2", test_rows, test_records
    )
    assert math.isfinite(stats["eval_loss"]) and stats["scored"] == 2
    first = training_examples(test_records[0])[0]
    assert predictions[0]["id"] == first["id"]
    assert predictions[0]["prompt"] == built.builder().render(first["context"])

    split = {"train_conversations": 13, "test_conversations": 3, "train_examples": 1}
    split["test_examples"] = 1
    adapter = root / "models" / "adapter"
    export_adapter(
        built.cfg,
        checkpoints / "checkpoint-2",
        built.base_dir,
        list(splits.values()),
        {"train": train_metrics, "eval": stats, "split": split},
        adapter,
    )
    settings = read_json(adapter / "kotune.json")
    family = built.family
    assert settings["prompt_format"] == family.prompt_format
    assert settings["end_of_turn"] == family.end_of_turn
    markers = {
        "gpt_neox": ["### 질문:", "### 답변:"],
        "qwen2": ["<|im_start|>", "<|im_end|>"],
        "llama": ["<|start_header_id|>", "<|eot_id|>"],
    }[built.name]
    assert settings["stop_patterns"] == ["\n질문:", "\n사용자 질문:", *markers]

    # vLLM: LoRA for Qwen2 and Llama as exported, the persona's prompt as its chat template
    card = (adapter / "README.md").read_text(encoding="utf-8")
    problems = vllm_problems(adapter, built.name)
    if built.name == "gpt_neox":
        assert problems and "kotune merge --adapter models/adapter" in card
    else:
        assert problems == []
        assert "--enable-lora --lora-modules mencius=models/adapter --max-lora-rank 8" in card
    template = (adapter / TEMPLATE_FILE).read_text(encoding="utf-8")
    rendered = built.tokenizer.apply_chat_template(
        CONTEXT, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    assert rendered == PROMPTS[built.name]

    loaded = load_exported(adapter)
    assert loaded.tokenizer.chat_template == family.chat_template  # exported with the tokenizer
    engine = Engine(loaded.model, loaded.tokenizer, loaded.settings, slots=1)
    try:
        assert engine.builder.end_of_turn_id == built.builder().end_of_turn_id
        session = ChatSession(engine, engine.params(max_new_tokens=4))
        answer = session.reply("인이란?")
    finally:
        engine.close()
    assert session.history == [
        {"role": "user", "content": "인이란?"},
        {"role": "assistant", "content": answer},
    ]


class Scripted:
    """A random model made to write `chain` under greedy decoding, whatever its weights: after
    each token of the chain, the next one gets +1000 on its logit."""

    def __init__(self, model, chain: list[int]) -> None:
        assert len(set(chain)) == len(chain)
        self.model, self.next = model, dict(zip(chain, chain[1:], strict=False))

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        output = self.model(**kwargs)
        for row, token in enumerate(kwargs["input_ids"][:, -1].tolist()):
            if token in self.next:
                output.logits[row, -1, self.next[token]] += 1000.0
        return output


@pytest.mark.parametrize("built", ["qwen2"], indirect=True)
def test_generation_stops_at_the_end_of_turn_token(built):
    from kotune.inference.adapter import export_settings
    from kotune.inference.engine import Engine
    from kotune.inference.loading import load_model
    from kotune.modeling.manifest import base_location, read_manifest

    tokenizer = built.tokenizer
    builder = built.builder()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert builder.stop_token_ids == (im_end, tokenizer.eos_token_id)
    model = load_model(
        *base_location(built.base_dir, read_manifest(built.base_dir)),
        quantization="none",
        compute_dtype="float32",
        device="cpu",
    )
    prompt = builder.prompt_ids(CONTEXT)
    answer = tokenizer("옳음이오", add_special_tokens=False)["input_ids"]
    then = tokenizer("하오", add_special_tokens=False)["input_ids"][0]
    scripted = Scripted(model, [prompt[-1], *answer, im_end, then])
    settings = export_settings(built.cfg, read_manifest(built.base_dir), [])  # no stop strings

    def answer_with(settings) -> str:
        engine = Engine(scripted, tokenizer, settings, slots=1)
        try:
            prompt_ids = engine.prompt(CONTEXT, 12)
            return engine.answer(prompt_ids, engine.params(max_new_tokens=12)).text
        finally:
            engine.close()

    # no stop strings: the end-of-turn id alone ends the answer
    assert answer_with(settings) == "옳음이오"
    # with eos alone (what a base model's config says) it would run on into the next turn
    assert answer_with(replace(settings, end_of_turn=None)).startswith("옳음이오하오")


def test_the_scratch_model_only_takes_the_koalpaca_format():
    data = compose(["model=tiny"], ROOT / "conf")
    data["model"]["prompt_format"] = "chatml"
    with pytest.raises(ConfigError, match="model.prompt_format must be koalpaca when model.source"):
        parse_config(data)


@pytest.mark.parametrize("packing", [False, True])
def test_one_epoch_counts_every_real_token_packed_or_padded(built, trained, tmp_path, packing):
    """gpu.packing through the real Trainer: one epoch sees every example once, and the
    Trainer's non-padding token count is the data's token total either way (packed rows have no
    attention mask: it counts tokens that are not the pad id)."""
    from datasets import load_from_disk

    from kotune.training.qlora import train_adapter

    _, _, tokenized, _, _, _ = trained
    train_set = load_from_disk(str(tokenized))["train"]
    total = sum(len(ids) for ids in train_set["input_ids"])
    per_step = built.cfg.train.effective_batch_size
    steps = -(-len(train_set) // per_step)  # one epoch, the last step partial
    cfg = replace(
        built.cfg,
        gpu=replace(built.cfg.gpu, packing=packing),
        train=replace(built.cfg.train, max_steps=steps, eval_steps=steps),
    )
    metrics, _ = train_adapter(cfg, built.base_dir, tokenized, tmp_path / "ckpt", tmp_path / "live")
    assert metrics["global_step"] == steps and metrics["epochs"] == 1.0
    assert metrics["train_tokens_seen"] == total
    assert math.isfinite(metrics["final_train_loss"]) and math.isfinite(metrics["best_eval_loss"])
