"""The one typed schema for params.yaml: a dataclass per section, checked at load.

Unknown keys, wrong types, missing values and bad ranges fail before any work, with a message
naming the key (`train.lora.r must be > 0, got 0`). `python -m kotune.config compose` writes
params.yaml from conf/ exactly as `dvc exp run` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kotune.errors import ConfigError

# The closed lists, one place each: the schema below, the CLI's choices and the code derive
# from them (kotune.formats checks that it has a parser for each format, kotune.pii a detector
# for each kind). Here rather than there so that no stage depends on those modules by importing
# its config.
FORMAT_NAMES = ("mencius", "summarization", "alpaca", "chat", "kakaotalk")
PII_KINDS = (
    "PHONE", "RRN", "CARD", "ACCOUNT", "EMAIL", "URL", "ADDRESS", "PERSON", "BUSINESS_ID",
    "CORPORATE_ID", "PASSPORT", "DRIVER_LICENSE", "PLATE", "BIRTHDATE", "ZIPCODE", "IP",
)  # fmt: skip
CHAT_QUANTIZATIONS = ("none", "nf4", "int8")  # how `kotune chat` loads the base


def bounded(default: Any, **bounds: float) -> Any:
    """A field with range bounds: gt, ge, lt, le (checked by `_build`)."""
    return field(default=default, metadata=bounds)


# ---------------------------------------------------------------------------- persona


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = bounded(128, gt=0)
    do_sample: bool = False  # greedy by default: evaluation is reproducible
    temperature: float = bounded(0.7, gt=0)
    top_p: float = bounded(0.9, gt=0, le=1)
    repetition_penalty: float = bounded(1.1, gt=0)


@dataclass(frozen=True)
class DataSourceConfig:
    format: Literal[FORMAT_NAMES]
    path: str  # a file or a folder under data/raw/<persona>/
    options: dict[str, Any] = field(default_factory=dict)  # checked by the format's parser


@dataclass(frozen=True)
class PiiConfig:
    """What the clean stage masks. Speaker names from the data are always PERSON names."""

    kinds: list[Literal[PII_KINDS]] = field(default_factory=lambda: list(PII_KINDS))
    # more people to mask, one name a line (given names are derived). A file, not a list here:
    # params end up in dvc.lock and git, so names stay beside the raw data they come from.
    names_file: str = ""
    kiwi_names: bool = False  # also Kiwi proper nouns before a person cue (민지야, 준호씨): slower


# ---------------------------------------------------------------------------- persona.generate
# Self-instruct (kotune.selfinstruct): a teacher behind any OpenAI-compatible URL writes new
# Alpaca records from seed tasks. Defaults are the references' values: Self-Instruct's
# bootstrap_instructions.py (yizhongw/self-instruct) and Stanford Alpaca's generate_instruction.py.


@dataclass(frozen=True)
class TeacherConfig:
    base_url: str = "http://127.0.0.1:8000/v1"  # any OpenAI-compatible /v1 (kotune serve, vLLM)
    model: str = ""  # the name the server knows the teacher by (required when enabled)
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key: never the key itself
    timeout_s: float = bounded(300.0, gt=0)  # one request, generation included
    max_retries: int = bounded(8, ge=0)  # on 429, 5xx, time-outs and dropped connections
    backoff_s: float = bounded(1.0, gt=0)  # first wait; doubles each retry, full jitter
    max_backoff_s: float = bounded(60.0, gt=0)  # 1 × 2^6 = 64 s: capped from the 7th retry on


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = bounded(0.7, ge=0)  # Self-Instruct (Alpaca: 1.0)
    top_p: float = bounded(0.5, gt=0, le=1)  # Self-Instruct (Alpaca: 1.0)
    # Alpaca's 0 (Self-Instruct used presence 2.0): a server without penalties (kotune serve)
    # refuses any other value, so penalties are sent only when set
    presence_penalty: float = bounded(0.0, ge=-2, le=2)
    frequency_penalty: float = bounded(0.0, ge=-2, le=2)  # both references: 0
    # Alpaca's 3072: one request writes whole tasks (instruction, input, output), as in Alpaca;
    # Self-Instruct's 1024 was for instructions alone. Shrunk by 0.8 when even one example
    # leaves no room (the seed's rule).
    max_tokens: int = bounded(3072, gt=0)


@dataclass(frozen=True)
class SelfInstructFilterConfig:
    rouge_l: float = bounded(
        0.7, gt=0, le=1
    )  # both references' 0.7 (they drop > 0.7; kotune >= 0.7)
    # Korean has no word count to borrow (the references drop <= 3 or > 150 English words):
    # characters without spaces; the seed's own dataset has instructions of 4–302 characters
    min_instruction_chars: int = bounded(4, ge=1)
    max_instruction_chars: int = bounded(300, gt=0)
    min_output_chars: int = bounded(2, ge=1)  # output: every character, as clean counts a turn
    max_output_chars: int = bounded(2000, gt=0)  # clean.max_chars: longer turns are dropped there


@dataclass(frozen=True)
class GenerateConfig:
    enabled: bool = False  # false: the persona's data is persona.data alone; no teacher is asked
    add_to_data: bool = False  # true: generated records join persona.data's; false: replace them
    seeds: str = "data/raw/menu/seed_tasks.json"  # seed tasks (id, name, instruction, instances)
    n: int = bounded(500, gt=0)  # stop at n kept records (the seed generated 500+) ...
    max_requests: int = bounded(1000, gt=0)  # ... or after this many requests, whichever first
    seed: int = 42  # example sampling and the per-request seed sent to the teacher
    examples: int = bounded(8, gt=0)  # k tasks shown per request (Self-Instruct: 8) ...
    seed_examples: int = bounded(
        6, ge=0
    )  # ... of them seeds; the rest generated, once there are any
    new_tasks: int = bounded(8, gt=0)  # asked per request: Self-Instruct numbers 8 shown + up to 16
    round_size: int = bounded(5, gt=0)  # requests built from one state (both references: 5)
    concurrency: int = bounded(4, gt=0)  # in flight, at most round_size; never changes the output
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    filters: SelfInstructFilterConfig = field(default_factory=SelfInstructFilterConfig)


@dataclass(frozen=True)
class PersonaConfig:
    name: str
    data: DataSourceConfig
    system_prompt: str
    stop_patterns: list[str]
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    # the web chat (kotune serve): the page's title and one line under it ("" → name), and
    # whether food preferences are read from messages and given to the model (the menu persona)
    display_name: str = ""
    description: str = ""
    preferences: bool = False

    generate: GenerateConfig = field(default_factory=GenerateConfig)


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ScratchModelConfig:
    """Shape of the embedded tiny GPT-NeoX (the Polyglot-ko architecture)."""

    vocab_size: int = bounded(8000, ge=300)
    hidden_size: int = bounded(256, gt=0)
    num_layers: int = bounded(4, gt=0)
    num_heads: int = bounded(4, gt=0)
    intermediate_size: int = bounded(1024, gt=0)
    max_position_embeddings: int = bounded(1024, gt=0)
    rotary_pct: float = bounded(0.5, gt=0, le=1)


@dataclass(frozen=True)
class ModelShape:
    """Architecture facts of a pretrained base, as its config.json states them: for the memory
    estimate before anything is loaded, and for random-weight look-alikes (tests, benchmarks).
    The base stage checks them against the real config.json."""

    hidden_size: int = bounded(0, gt=0)
    num_layers: int = bounded(0, gt=0)
    num_heads: int = bounded(0, gt=0)
    num_kv_heads: int = bounded(0, gt=0)
    intermediate_size: int = bounded(0, gt=0)
    vocab_size: int = bounded(0, gt=0)
    max_position_embeddings: int = bounded(2048, gt=0)
    tie_word_embeddings: bool = False
    rotary_pct: float = bounded(1.0, gt=0, le=1)  # GPT-NeoX only: share of head dims rotated


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: Literal["scratch", "hub", "local"]
    family: Literal["gpt_neox", "llama", "qwen2"]
    # koalpaca: `### 질문: … ### 답변:` (Polyglot family); chatml / llama3: the instruct model's
    # own chat template from its tokenizer (kotune ships these two only as a fallback);
    # template: the tokenizer's chat template, whatever it is (an error if it has none)
    prompt_format: Literal["koalpaca", "chatml", "llama3", "template"]
    end_of_turn: str | None = None  # the token that ends an answer (None: the tokenizer's eos)
    hub_id: str | None = None
    revision: str | None = None
    path: str | None = None
    lora_targets: list[str] = field(default_factory=lambda: ["auto"])
    scratch: ScratchModelConfig | None = None
    shape: ModelShape | None = None


# ---------------------------------------------------------------------------- gpu profile


@dataclass(frozen=True)
class GpuConfig:
    name: str
    device: Literal["cpu", "cuda"]
    quantization: Literal["nf4", "none"]  # nf4: QLoRA (4-bit base); none: plain LoRA
    double_quant: bool
    compute_dtype: Literal["float32", "bfloat16", "float16"]
    micro_batch_size: int = bounded(1, gt=0)
    gradient_checkpointing: bool = False
    # padding-free: a micro-batch's examples in one row with position_ids restarting at 0 (no
    # cross-example attention); no padding is computed. Measured in bench/train_speed.py.
    packing: bool = False
    optimizer: Literal["adamw_torch", "paged_adamw_8bit", "adamw_8bit"] = "adamw_torch"
    # flex_attention: torch's block-sparse attention (no extra wheel); with packing it skips the
    # blocks between examples that sdpa's dense mask computes (sdpa packed: 0.74× padded, H100)
    attention: Literal["sdpa", "eager", "flex_attention"] = "sdpa"
    # torch.compile of each decoder block: fuses the small LoRA/cast/norm kernels around the
    # GEMMs (1.25× on an H100) for a one-off compilation (~150 s NF4 on an H100, 86–99 s bf16 on
    # an H200, plus the evaluation graph's).
    # auto: compile once the run's measured step time × its remaining steps says the saving pays
    # for compile_warmup_s (training.speedups.CompileWhenItPays). true/false: always/never.
    compile: Literal["auto"] | bool = False
    compile_warmup_s: float = bounded(150.0, ge=0)  # measured compilation cost on this card
    # Liger's Triton kernels (fused linear cross-entropy: no [tokens × vocab] logits; RMSNorm,
    # RoPE, SwiGLU) for the llama and qwen2 families; other families train without them. CUDA
    # only. With compile true/auto only the fused linear cross-entropy (training.speedups).
    liger: bool = False
    num_processes: int = bounded(1, gt=0)  # processes (one per GPU) on each machine
    num_machines: int = bounded(1, gt=0)  # >1: MASTER_ADDR, MASTER_PORT, NODE_RANK from the env
    # ddp: every process holds the whole (4-bit) base and trains on its share of each batch;
    # fsdp: FULL_SHARD through accelerate: base, LoRA, gradients and optimizer state split across
    # the processes (a model that does not fit one card), one decoder layer gathered at a time
    distributed: Literal["ddp", "fsdp"] = "ddp"
    chat_quantization: Literal[CHAT_QUANTIZATIONS] = "none"
    memory_gib: float = bounded(0.0, ge=0)  # one card's memory; 0: no fixed budget (the CPU)
    max_seq_len: int = bounded(2048, gt=16)  # the longest sequence this card trains at its batch


# ---------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class CleanConfig:
    normalization: Literal["NFC", "NFKC"] = "NFC"
    min_chars: int = bounded(1, ge=1)
    max_chars: int = bounded(2000, gt=0)
    dedupe: bool = True
    top_nouns: int = bounded(30, ge=0)  # nouns in the data picture (0: none)
    noun_sample_chars: int = bounded(2_000_000, ge=0)  # Kiwi reads at most this much (0: all)


@dataclass(frozen=True)
class SplitConfig:
    test_fraction: float = bounded(0.1, gt=0, lt=1)
    seed: int = 42


@dataclass(frozen=True)
class BaseConfig:
    """The scratch model's tokenizer and warm-up (ignored for hub/local models)."""

    seed: int = 0
    tokenizer_min_frequency: int = bounded(2, ge=1)
    seq_len: int = bounded(128, gt=1)
    batch_size: int = bounded(16, gt=0)
    steps: int = bounded(300, ge=0)
    lr: float = bounded(1e-3, gt=0)
    warmup_steps: int = bounded(20, ge=0)


@dataclass(frozen=True)
class TokenizeConfig:
    max_seq_len: int = bounded(512, gt=16)


@dataclass(frozen=True)
class LoraConfig:
    r: int = bounded(8, gt=0)
    alpha: int = bounded(16, gt=0)
    dropout: float = bounded(0.05, ge=0, lt=1)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    lr: float = bounded(2e-4, gt=0)
    epochs: float = bounded(3.0, gt=0)
    max_steps: int = bounded(-1, ge=-1)
    effective_batch_size: int = bounded(8, gt=0)
    eval_steps: int = bounded(50, gt=0)
    logging_steps: int = bounded(10, gt=0)
    early_stopping_patience: int = bounded(2, ge=0)
    early_stopping_threshold: float = bounded(0.001, ge=0)
    warmup_ratio: float = bounded(0.03, ge=0, lt=1)
    weight_decay: float = bounded(0.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = bounded(1.0, gt=0)
    resume: bool = True
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = bounded(8, gt=0)
    max_examples: int = bounded(0, ge=0)  # 0: every test example


@dataclass(frozen=True)
class Config:
    persona: PersonaConfig
    model: ModelConfig
    gpu: GpuConfig
    clean: CleanConfig = field(default_factory=CleanConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    @property
    def max_seq_len(self) -> int:
        """Token budget of one example: the persona's need, capped by what the GPU profile fits."""
        return min(self.tokenize.max_seq_len, self.gpu.max_seq_len)

    @property
    def world_size(self) -> int:
        """Training processes in all: per machine × machines."""
        return self.gpu.num_processes * self.gpu.num_machines

    @property
    def grad_accum_steps(self) -> int:
        """Accumulation that keeps the persona's effective batch on this GPU profile."""
        per_step = self.gpu.micro_batch_size * self.world_size
        return self.train.effective_batch_size // per_step


def _check_cross(cfg: Config) -> None:
    per_step = cfg.gpu.micro_batch_size * cfg.world_size
    if cfg.train.effective_batch_size % per_step:
        machines = " × gpu.num_machines" if cfg.gpu.num_machines > 1 else ""
        raise ConfigError(
            f"train.effective_batch_size ({cfg.train.effective_batch_size}) must be a multiple of "
            f"gpu.micro_batch_size × gpu.num_processes{machines} ({cfg.gpu.micro_batch_size} × "
            f"{cfg.world_size} = {per_step})"
        )
    _check_gpu(cfg.gpu)
    model = cfg.model
    if model.source == "scratch" and model.scratch is None:
        raise ConfigError("model.scratch is required when model.source is 'scratch'")
    if model.source == "scratch" and model.prompt_format != "koalpaca":
        raise ConfigError(
            f"model.prompt_format must be koalpaca when model.source is 'scratch' (its tokenizer "
            f"has no chat template or turn tokens), got {model.prompt_format}"
        )
    if model.source == "hub" and not model.hub_id:
        raise ConfigError("model.hub_id is required when model.source is 'hub'")
    if model.source == "hub" and model.shape is None:
        raise ConfigError(
            "model.shape is required when model.source is 'hub' (its config.json facts)"
        )
    if model.shape is not None and model.shape.hidden_size % model.shape.num_heads:
        raise ConfigError(
            f"model.shape.hidden_size ({model.shape.hidden_size}) must be divisible by "
            f"model.shape.num_heads ({model.shape.num_heads})"
        )
    if model.shape is not None and model.shape.num_heads % model.shape.num_kv_heads:
        raise ConfigError(
            f"model.shape.num_heads ({model.shape.num_heads}) must be a multiple of "
            f"model.shape.num_kv_heads ({model.shape.num_kv_heads})"
        )
    if model.source == "local" and not model.path:
        raise ConfigError("model.path is required when model.source is 'local'")
    if model.scratch is not None and model.scratch.hidden_size % model.scratch.num_heads:
        raise ConfigError(
            f"model.scratch.hidden_size ({model.scratch.hidden_size}) must be divisible by "
            f"model.scratch.num_heads ({model.scratch.num_heads})"
        )
    if (
        model.scratch is not None
        and cfg.tokenize.max_seq_len > model.scratch.max_position_embeddings
    ):
        raise ConfigError(
            f"tokenize.max_seq_len ({cfg.tokenize.max_seq_len}) must be <= "
            f"model.scratch.max_position_embeddings ({model.scratch.max_position_embeddings})"
        )
    if cfg.gpu.device == "cpu" and cfg.gpu.optimizer != "adamw_torch":
        raise ConfigError(
            f"gpu.optimizer {cfg.gpu.optimizer} needs CUDA; use adamw_torch on the CPU"
        )
    check_generate(cfg.persona.generate, lambda key: f"persona.generate.{key}")
    if cfg.gpu.device == "cpu" and cfg.gpu.compute_dtype == "float16":
        raise ConfigError("gpu.compute_dtype float16 is not supported on gpu.device cpu")


def _check_gpu(gpu: GpuConfig) -> None:
    """Settings that only work together (each message names the key to change)."""
    if gpu.distributed == "fsdp" and gpu.num_processes * gpu.num_machines < 2:
        raise ConfigError(
            "gpu.distributed fsdp needs gpu.num_processes > 1 (it shards across them)"
        )
    if gpu.distributed == "fsdp" and gpu.optimizer != "adamw_torch":
        raise ConfigError(
            f"gpu.optimizer {gpu.optimizer} does not go with gpu.distributed fsdp (paged 8-bit "
            "AdamW cannot save FSDP checkpoints, peft's caveat; kotune resumes FSDP runs with "
            "torch's AdamW); use adamw_torch (its state is sharded anyway)"
        )
    if gpu.distributed == "fsdp" and gpu.compile is not False:
        raise ConfigError("gpu.compile must be false with gpu.distributed fsdp (not supported)")
    if gpu.liger and gpu.device != "cuda":
        raise ConfigError("gpu.liger needs gpu.device cuda (Liger's kernels are Triton)")


def check_generate(gen: GenerateConfig, name: Callable[[str], str]) -> None:
    """Cross-field rules of a self-instruct section; `name` shows a key as the user wrote it
    (`persona.generate.n` in params, `--n` on the command line)."""
    if gen.seed_examples > gen.examples:
        raise ConfigError(
            f"{name('seed_examples')} ({gen.seed_examples}) must be <= {name('examples')} "
            f"({gen.examples})"
        )
    filters = gen.filters
    if filters.min_instruction_chars > filters.max_instruction_chars:
        raise ConfigError(
            f"{name('filters.min_instruction_chars')} must be <= "
            f"{name('filters.max_instruction_chars')}"
        )
    if filters.min_output_chars > filters.max_output_chars:
        raise ConfigError(
            f"{name('filters.min_output_chars')} must be <= {name('filters.max_output_chars')}"
        )
    if gen.enabled and not gen.teacher.model:
        raise ConfigError(f"{name('teacher.model')} is required when generation is enabled")
    if not gen.teacher.base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{name('teacher.base_url')} must start with http:// or https://, "
            f"got {gen.teacher.base_url!r}"
        )


# ---------------------------------------------------------------------------- the builder


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(" or ".join(errors))  # one message for each accepted kind
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        return [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported schema type {_type_name(tp)} at {key}")


_BOUNDS = {
    "gt": (lambda v, b: v > b, ">"),
    "ge": (lambda v, b: v >= b, ">="),
    "lt": (lambda v, b: v < b, "<"),
    "le": (lambda v, b: v <= b, "<="),
}


def _build(cls: type, data: Any, prefix: str, names: dict[str, str] | None = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'params'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]} (known keys of {prefix or 'params'}: "
            f"{', '.join(fields)})"
        )
    values = {}
    for name, spec in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        key = (names or {}).get(name, key)  # the user's own word for it: a flag (--gap-minutes)
        if name not in data:
            no_default = (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            )
            if no_default:
                raise ConfigError(f"missing {key}" if key.startswith("-") else f"missing key {key}")
            continue
        value = _convert(hints[name], data[name], key)
        for bound, limit in spec.metadata.items():
            test, sign = _BOUNDS[bound]
            if value is not None and not test(value, limit):
                raise ConfigError(f"{key} must be {sign} {limit}, got {value}")
        values[name] = value
    return cls(**values)


def build_section(cls: type, data: Any, prefix: str, names: dict[str, str] | None = None) -> Any:
    """Build any schema dataclass (e.g. a format's options) with the same checks as params;
    `names` gives some fields the name the user knows them by (a command-line flag)."""
    return _build(cls, data, prefix, names)


def parse_config(data: Any) -> Config:
    """Build and check a Config from a plain mapping (params.yaml's content)."""
    cfg = _build(Config, data, "")
    _check_cross(cfg)
    return cfg


def load_config(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def to_dict(section: Any) -> dict[str, Any]:
    """A section back to plain data (for manifests and model cards)."""
    return dataclasses.asdict(section)


# ---------------------------------------------------------------------------- composition


def compose(overrides: list[str] | None = None, conf_dir: str | Path = "conf") -> dict[str, Any]:
    """Compose conf/ with Hydra overrides, as `dvc exp run -S …` does, into plain data."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_object(cfg)


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kotune.config")
    sub = parser.add_subparsers(dest="command", required=True)
    p_compose = sub.add_parser("compose", help="write params.yaml from conf/ (as dvc exp run)")
    p_compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. persona=mencius")
    p_compose.add_argument("--conf", default="conf")
    p_compose.add_argument("--out", default="params.yaml")
    p_check = sub.add_parser("check", help="validate a params file")
    p_check.add_argument("path", nargs="?", default="params.yaml")
    args = parser.parse_args()
    if args.command == "compose":
        from dvc.utils.hydra import compose_and_dump

        data = compose(args.overrides, args.conf)
        parse_config(data)  # refuse to write a params.yaml that would not load
        compose_and_dump(
            args.out, str(Path(args.conf).resolve()), None, "config", ".", args.overrides
        )
        print(f"wrote {args.out}")
    else:
        load_config(args.path)
        print(f"{args.path}: ok")


if __name__ == "__main__":
    from kotune.errors import run_cli

    run_cli(_main)
