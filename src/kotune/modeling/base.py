"""The base stage's work: build (scratch) or pin (hub/local) the model LoRA will adapt, and
write models/base/ with a manifest saying exactly what it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotune.config import Config, to_dict
from kotune.errors import KotuneError
from kotune.files import digest_of, sha256_tree, write_json
from kotune.modeling.manifest import MANIFEST
from kotune.prompting import get_format


def corpus_texts(records: list[dict[str, Any]]) -> list[str]:
    """Every turn's text, in order: what the tokenizer and the warm-up learn from."""
    return [m["content"] for r in records for m in r["messages"]]


def build_scratch_base(
    train_records: list[dict[str, Any]], cfg: Config, out_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the tokenizer, build and warm up the tiny GPT-NeoX, save it; returns (metrics,
    timing) as `warm_up` splits them."""
    import torch

    from kotune.modeling.scratch import build_model, train_tokenizer, warm_up

    shape, fmt = cfg.model.scratch, get_format(cfg.model.prompt_format)
    texts = corpus_texts(train_records)
    # The template's headers and the system prompt are in every example: learn them as words.
    extra = [cfg.persona.system_prompt, fmt.user_header, fmt.assistant_header] * 8
    tokenizer = train_tokenizer(
        texts + extra,
        shape.vocab_size,
        cfg.base.tokenizer_min_frequency,
        shape.max_position_embeddings,
    )
    torch.manual_seed(cfg.base.seed)
    model = build_model(shape, tokenizer, cfg.base.seed)
    stats, timing = warm_up(model, tokenizer, texts, cfg.base)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    files = sha256_tree(out_dir)
    write_json(
        out_dir / MANIFEST,
        {
            "source": "scratch",
            "name": cfg.model.name,
            "family": cfg.model.family,
            "parameters": parameters,
            "vocab_size": len(tokenizer),
            "shape": to_dict(shape),
            "base_params": to_dict(cfg.base),
            "files": files,
            "fingerprint": digest_of(files),
        },
    )
    return {"parameters": parameters, "vocab_size": len(tokenizer), **stats}, timing


def pin_pretrained_base(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Record which weights a hub/local base is: resolved revision and file hashes."""
    model = cfg.model
    if model.source == "local":
        root = Path(model.path)
        if not (root / "config.json").is_file():
            raise KotuneError(
                f"model.path {root}: no config.json there (not a Hugging Face model folder)"
            )
        revision = None
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            root = Path(
                snapshot_download(model.hub_id, revision=model.revision, local_files_only=True)
            )
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            raise KotuneError(
                f"model {model.hub_id}@{model.revision or 'main'} is not in the local Hugging Face "
                f"cache (kotune never downloads during a run); fetch it with "
                f"`hf download {model.hub_id} --revision {model.revision or 'main'}` "
                f"(HF_HOME picks the cache), or set model.source=local and model.path to a copy"
            ) from None
        revision = root.name  # snapshots/<commit hash>
    check_declared_shape(cfg, root)
    files = {k: v for k, v in sha256_tree(root).items() if not k.startswith(".")}
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": model.source,
        "name": model.name,
        "family": model.family,
        "hub_id": model.hub_id,
        "revision": revision,
        "path": str(root) if model.source == "local" else None,
        "files": files,
        "fingerprint": digest_of(files),
    }
    write_json(out_dir / MANIFEST, manifest)
    return {"files": len(files)}


def check_declared_shape(cfg: Config, root: Path) -> None:
    """The model yaml's shape (used for the memory estimate) must be what config.json says."""
    from transformers import AutoConfig

    from kotune.modeling.shapes import shape_mismatches, shape_of

    actual = AutoConfig.from_pretrained(root, local_files_only=True)
    if actual.model_type != cfg.model.family:
        raise KotuneError(
            f"{root}/config.json: model_type {actual.model_type!r}, but model.family is "
            f"{cfg.model.family!r}"
        )
    if cfg.model.shape is None:
        return
    wrong = shape_mismatches(cfg.model.shape, shape_of(actual))
    if wrong:
        raise KotuneError(
            f"{root}/config.json does not match model.shape of '{cfg.model.name}': "
            + "; ".join(wrong)
        )
