"""An exported adapter folder's contract: kotune.json as one typed, checked dataclass (export
writes it, chat, serve and every later reader load it), the manifest's sha256 check that runs
before any weight is read, and `load_exported`, the folder's base and adapter through
kotune.inference.loading.

models/adapter/: adapter_model.safetensors, adapter_config.json, the tokenizer, kotune.json,
README.md (the model card), manifest.json (sha256 of every file) and, for the scratch model,
its base under base/. torch is imported only once the folder has passed its checks, so a wrong
folder fails in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kotune.config import ConfigError, GenerationConfig, build_section, to_dict
from kotune.errors import KotuneError
from kotune.files import read_json, sha256_file
from kotune.modeling.manifest import MANIFEST, BaseReference, base_reference

SETTINGS = "kotune.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
BUNDLED_BASE = "base"  # the scratch base's folder inside the adapter folder


@dataclass(frozen=True)
class BaseSettings:
    """The base the adapter was trained on, and where its weights are."""

    name: str
    family: Literal["gpt_neox", "llama", "qwen2"]
    source: Literal["bundled", "local", "hub"]
    path: str | None = None  # bundled: relative to the adapter folder; local: a folder
    hub_id: str | None = None
    revision: str | None = None

    @property
    def reference(self) -> BaseReference:
        return BaseReference(self.source, self.path, self.hub_id, self.revision)


@dataclass(frozen=True)
class AdapterSettings:
    """kotune.json: everything a reader needs besides the weights."""

    persona: str
    base: BaseSettings
    prompt_format: Literal["koalpaca", "chatml", "llama3", "template"]
    end_of_turn: str | None = None  # the token that ends an answer (None: the tokenizer's eos)
    system_prompt: str = ""
    stop_patterns: list[str] = field(default_factory=list)  # persona's + the format's markers
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    chat_quantization: Literal["none", "nf4", "int8"] = "none"  # the GPU profile's, for chat
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["cpu", "cuda"] = "cpu"
    # the web chat's persona (kotune serve): the page's title ("" → persona), one line under
    # it, and whether food preferences are read from messages (absent in older files: defaults)
    display_name: str = ""
    description: str = ""
    preferences: bool = False


def _check(settings: AdapterSettings) -> None:
    base = settings.base
    needs = {"bundled": "path", "local": "path", "hub": "hub_id"}[base.source]
    if not getattr(base, needs):
        raise ConfigError(f"base.{needs} is required when base.source is '{base.source}'")


def parse_settings(data: Any) -> AdapterSettings:
    """kotune.json's content, checked as params.yaml is (unknown keys, types, ranges)."""
    settings = build_section(AdapterSettings, data, "")
    _check(settings)
    return settings


def settings_data(settings: AdapterSettings) -> dict[str, Any]:
    """kotune.json's content: plain data, the base reference without empty fields."""
    data = to_dict(settings)
    data["base"] = {k: v for k, v in data["base"].items() if v is not None}
    return data


def export_settings(
    cfg: Any, base_manifest: dict[str, Any], stop_patterns: list[str]
) -> AdapterSettings:
    """The settings export writes for a composed Config (kotune.config.Config) and the
    models/base manifest; `stop_patterns` as PromptBuilder.stop_patterns resolved them."""
    reference = base_reference(base_manifest, bundled_path=BUNDLED_BASE)
    settings = AdapterSettings(
        persona=cfg.persona.name,
        base=BaseSettings(
            name=cfg.model.name,
            family=cfg.model.family,
            source=reference.source,
            path=reference.path,
            hub_id=reference.hub_id,
            revision=reference.revision,
        ),
        prompt_format=cfg.model.prompt_format,
        end_of_turn=cfg.model.end_of_turn,
        system_prompt=cfg.persona.system_prompt,
        stop_patterns=list(stop_patterns),
        generation=cfg.persona.generation,
        chat_quantization=cfg.gpu.chat_quantization,
        compute_dtype=cfg.gpu.compute_dtype,
        device=cfg.gpu.device,
        display_name=cfg.persona.display_name,
        description=cfg.persona.description,
        preferences=cfg.persona.preferences,
    )
    _check(settings)
    return settings


def write_settings(folder: Path, settings: AdapterSettings) -> None:
    text = json.dumps(settings_data(settings), ensure_ascii=False, indent=2) + "\n"
    (folder / SETTINGS).write_text(text, encoding="utf-8")


def read_settings(folder: str | Path) -> AdapterSettings:
    """Load and check `folder/kotune.json`; a wrong folder or a bad field is one clear line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KotuneError(f"{folder}: no such folder (export one with `dvc repro export`)")
    path = folder / SETTINGS
    if not path.is_file():
        raise KotuneError(
            f"{folder}: not a kotune adapter folder (no {SETTINGS}); point --adapter at the "
            f"export stage's models/adapter"
        )
    try:
        return parse_settings(read_json(path))
    except ConfigError as error:
        raise KotuneError(f"{path}: {error}") from None


def verify_files(folder: str | Path) -> int:
    """Check every file manifest.json lists against its sha256, before anything is loaded: a
    damaged or truncated file is named here instead of failing deep inside a loader. Returns
    how many files were checked."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise KotuneError(f"{folder}: no {MANIFEST} (not an exported kotune adapter folder)")
    files = read_json(path).get("files")
    if not isinstance(files, dict) or not files:
        raise KotuneError(f"{path}: field 'files' must map file names to sha256 values")
    for name, expected in sorted(files.items()):
        target = folder / name
        if not target.is_file():
            raise KotuneError(f"{target}: missing (listed in {MANIFEST}); export the adapter again")
        if sha256_file(target) != expected:
            raise KotuneError(
                f"{target}: sha256 differs from {MANIFEST} (the file is damaged, truncated or was "
                f"changed after export); export the adapter again (`dvc repro export`)"
            )
    return len(files)


def open_adapter(folder: str | Path) -> AdapterSettings:
    """An exported folder's settings after its files passed the manifest check: what chat and
    serve call before the heavy imports."""
    settings = read_settings(folder)
    verify_files(folder)
    return settings


def adapter_prompt_builder(tokenizer: Any, settings: AdapterSettings) -> Any:
    """The prompt builder an exported adapter was trained with (kotune.prompting)."""
    from kotune.prompting import prompt_builder

    return prompt_builder(
        tokenizer,
        settings.prompt_format,
        settings.end_of_turn,
        settings.system_prompt,
        settings.base.name,
    )


@dataclass(frozen=True)
class LoadedAdapter:
    model: Any
    tokenizer: Any
    settings: AdapterSettings
    quantization: str
    device: str


def load_exported(
    adapter_dir: str | Path,
    quantization: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedAdapter:
    """Base + adapter from an exported folder alone, as its GPU profile chats (quantization,
    device and compute dtype can be overridden; float32 on the CPU by default). The folder's
    files are checked against its manifest first, before the heavy imports. An unquantized base
    gets the adapter merged in."""
    adapter_dir = Path(adapter_dir)
    settings = open_adapter(adapter_dir)  # before the heavy imports
    import torch

    from kotune.inference.loading import attach_adapter, load_model, load_tokenizer

    if device is None:
        device = "cuda" if settings.device == "cuda" and torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise KotuneError("--device cuda: no CUDA device is available here")
    quantization = quantization or settings.chat_quantization
    if device == "cpu" and quantization == "int8":
        raise KotuneError("int8 (LLM.int8) needs a CUDA device; use nf4 or none on the CPU")
    dtype = dtype or (settings.compute_dtype if device == "cuda" else "float32")
    location, revision = settings.base.reference.location(adapter_dir)
    tokenizer = load_tokenizer(str(adapter_dir))
    try:
        model = load_model(
            location, revision, quantization=quantization, compute_dtype=dtype, device=device
        )
    except OSError as error:
        raise KotuneError(f"cannot load the base model {location}: {error}") from None
    model = attach_adapter(model, adapter_dir, merge=quantization == "none")
    return LoadedAdapter(model, tokenizer, settings, quantization, device)
