"""Serving beyond one GPU with vLLM: what its LoRA loader reads in adapter_config.json and
accepts, checked on every export; the chat template that keeps the persona's prompt; the
`vllm serve` command; and a merged model folder for architectures vLLM has no LoRA for.

vLLM's rules, read from its source (vllm/lora/peft_helper.py, vllm/lora/lora_model.py,
vllm/lora/utils.py; vllm/model_executor/models/*.py for which architectures implement
SupportsLoRA):
- adapter_config.json needs `r`, `lora_alpha`, `target_modules`; other keys are dropped, so a
  per-module `rank_pattern` / `alpha_pattern` or `layers_to_transform` would be served wrongly;
- `modules_to_save` must be empty and `use_dora` false; `bias` must be "none";
- `r` must not exceed `--max-lora-rank` (one of 1, 8, 16, 32, 64, 128, 256, 320, 512; default 16);
- every tensor in adapter_model.safetensors must be `base_model.model.<module>.lora_A|B.weight`
  with `<module>` ending in one of the model's LoRA modules (Llama, Qwen2: q/k/v/o_proj,
  gate/up/down_proj);
- GPTNeoXForCausalLM (Polyglot-ko, KoAlpaca-Polyglot, kotune's tiny model) does not implement
  SupportsLoRA: `--enable-lora` refuses it. Serve a merged folder instead (`kotune merge`).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from kotune.inference.adapter import AdapterSettings

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
LORA_MODULES = {"llama": PROJECTIONS, "qwen2": PROJECTIONS}  # gpt_neox: none
TEMPLATE_FILE = "vllm_chat_template.jinja"
TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_[AB]\.weight$")


def safetensors_names(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte length, then JSON), without torch."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return [name for name in header if name != "__metadata__"]


def vllm_problems(adapter_dir: Path, family: str) -> list[str]:
    """Why vLLM's LoRA loader would refuse (or misread) this adapter; [] when it accepts it."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if family not in LORA_MODULES:
        return [
            f"vLLM has no LoRA support for the {family} architecture (its model class does not "
            f"implement SupportsLoRA); serve a merged model instead: kotune merge"
        ]
    problems = [
        f"adapter_config.json has no {k}"
        for k in ("r", "lora_alpha", "target_modules")
        if k not in config
    ]
    checks = {
        "modules_to_save must be empty": bool(config.get("modules_to_save")),
        "use_dora must be false (vLLM does not support DoRA)": bool(config.get("use_dora")),
        "bias must be none": config.get("bias", "none") != "none" or bool(config.get("lora_bias")),
        f"r must be at most {MAX_LORA_RANKS[-1]}": config.get("r", 0) > MAX_LORA_RANKS[-1],
        "rank_pattern/alpha_pattern are ignored by vLLM": bool(
            config.get("rank_pattern") or config.get("alpha_pattern")
        ),
        "layers_to_transform/layer_replication are ignored by vLLM": bool(
            config.get("layers_to_transform") or config.get("layer_replication")
        ),
    }
    problems += [message for message, broken in checks.items() if broken]
    supported = LORA_MODULES[family]
    for name in safetensors_names(adapter_dir / "adapter_model.safetensors"):
        match = TENSOR.match(name)
        module = match.group("module").rsplit(".", 1)[-1] if match else None
        if module not in supported:
            problems.append(f"tensor {name}: not a LoRA weight of {', '.join(sorted(supported))}")
            break
    return problems


def max_lora_rank(r: int) -> int:
    """The smallest `--max-lora-rank` value that admits rank `r`."""
    return next(rank for rank in MAX_LORA_RANKS if rank >= r)


def persona_template(settings: AdapterSettings, tokenizer: Any) -> str:
    """A chat template that renders exactly kotune's prompt: the persona's system prompt unless
    the request brings a system message (as `kotune serve` does). For chat formats, the model's
    own template with that default; for KoAlpaca's headers, the headers."""
    persona = json.dumps(settings.system_prompt, ensure_ascii=False)
    has_system = "(messages | selectattr('role', 'equalto', 'system') | list | length > 0)"
    if settings.prompt_format == "koalpaca":
        return (
            "{%- set ns = namespace(parts=[]) -%}"
            f"{{%- if not {has_system} and {persona} -%}}{{%- set ns.parts = [{persona}] -%}}{{%- endif -%}}"
            "{%- for m in messages -%}"
            "{%- if m.role == 'system' -%}{%- set ns.parts = ns.parts + [m.content] -%}"
            "{%- elif m.role == 'user' -%}{%- set ns.parts = ns.parts + ['### 질문: ' + m.content] -%}"
            "{%- else -%}{%- set ns.parts = ns.parts + ['### 답변: ' + m.content] -%}{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{%- set ns.parts = ns.parts + ['### 답변:'] -%}{%- endif -%}"
            "{{- ns.parts | join('\\n\\n') -}}"
        )
    from kotune.inference.adapter import adapter_prompt_builder

    own = adapter_prompt_builder(tokenizer, settings).chat_template
    default = (
        f"{{%- if not {has_system} and {persona} -%}}"
        f"{{%- set messages = [{{'role': 'system', 'content': {persona}}}] + messages -%}}"
        "{%- endif -%}"
    )
    return default + own


def vllm_command(settings: AdapterSettings, adapter_dir: str, r: int) -> str:
    """`vllm serve` for the exported folder (run from where `adapter_dir` is valid)."""
    base = settings.base
    model = (
        base.hub_id
        if base.source == "hub"
        else f"{adapter_dir}/{base.path}"
        if base.source == "bundled"
        else base.path
    )
    revision = f" --revision {base.revision}" if base.source == "hub" and base.revision else ""
    return (
        f"vllm serve {model}{revision} --enable-lora --lora-modules {settings.persona}={adapter_dir} "
        f"--max-lora-rank {max_lora_rank(r)} --chat-template {adapter_dir}/{TEMPLATE_FILE}"
    )


def merge_adapter(adapter_dir: Path, out_dir: Path, dtype: str | None = None) -> AdapterSettings:
    """A plain Hugging Face model folder with the adapter merged into the base, its tokenizer
    and the persona's chat template: what vLLM (or any server) loads without LoRA support."""
    from kotune.inference.adapter import load_exported

    loaded = load_exported(adapter_dir, quantization="none", device="cpu", dtype=dtype)
    out_dir.mkdir(parents=True)
    loaded.model.save_pretrained(out_dir)
    loaded.tokenizer.chat_template = persona_template(loaded.settings, loaded.tokenizer)
    loaded.tokenizer.save_pretrained(out_dir)
    return loaded.settings
