"""kotune.json as one typed contract: export writes it, every reader loads it with params.yaml's
checks; the manifest's hashes are checked before anything loads; the one loading path."""

import json
import shutil

import pytest

from kotune.errors import KotuneError
from kotune.inference.adapter import (
    SETTINGS,
    AdapterSettings,
    open_adapter,
    parse_settings,
    read_settings,
    settings_data,
    verify_files,
)


def test_export_writes_settings_every_reader_loads(tiny_adapter):
    settings = read_settings(tiny_adapter)
    assert isinstance(settings, AdapterSettings)
    assert settings.persona == "mencius" and settings.prompt_format == "koalpaca"
    assert settings.base.source == "bundled" and settings.base.path == "base"
    assert settings.base.reference.location(tiny_adapter) == (str(tiny_adapter / "base"), None)
    assert "### 질문:" in settings.stop_patterns and "\n질문:" in settings.stop_patterns
    assert settings.generation.max_new_tokens == 24
    data = json.loads((tiny_adapter / SETTINGS).read_text(encoding="utf-8"))
    assert data == settings_data(settings)  # the file is exactly the dataclass
    assert data["base"] == {
        "name": "tiny",
        "family": "gpt_neox",
        "source": "bundled",
        "path": "base",
    }
    assert open_adapter(tiny_adapter) == settings
    # the web page's persona, from conf/persona/mencius.yaml
    assert settings.display_name == "맹자" and settings.description.startswith("인(仁)")
    assert settings.preferences is False


def test_an_older_kotune_json_without_the_web_fields_still_loads():
    settings = parse_settings(good_settings())
    assert (settings.display_name, settings.description, settings.preferences) == ("", "", False)
    changed = parse_settings({**good_settings(), "display_name": "메뉴", "preferences": True})
    assert changed.display_name == "메뉴" and changed.preferences is True
    with pytest.raises(Exception, match="preferences"):
        parse_settings({**good_settings(), "preferences": "yes"})


def good_settings() -> dict:
    return {
        "persona": "p",
        "base": {
            "name": "m",
            "family": "qwen2",
            "source": "hub",
            "hub_id": "Qwen/x",
            "revision": "r",
        },
        "prompt_format": "chatml",
        "stop_patterns": ["<|im_start|>"],
        "generation": {"max_new_tokens": 16, "temperature": 0.7},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["generation"].update(temperature=0),
            "generation.temperature must be > 0, got 0",
        ),
        (lambda d: d["generation"].update(top_p=1.5), "generation.top_p must be <= 1, got 1.5"),
        (lambda d: d.update(colour="red"), "unknown key colour"),
        (lambda d: d.pop("persona"), "missing key persona"),
        (lambda d: d.update(prompt_format="alpaca"), "prompt_format must be one of"),
        (lambda d: d["base"].pop("hub_id"), "base.hub_id is required when base.source is 'hub'"),
        (lambda d: d.update(stop_patterns="###"), "stop_patterns must be a list"),
    ],
)
def test_settings_are_checked_like_params(change, message):
    data = good_settings()
    parse_settings(data)  # the good one loads
    change(data)
    with pytest.raises(KotuneError, match=message.replace("(", r"\(")):
        parse_settings(data)


def test_a_bad_kotune_json_is_named(tmp_path):
    (tmp_path / SETTINGS).write_text('{"persona": "p",\n "base": }', encoding="utf-8")
    with pytest.raises(KotuneError, match=rf"{SETTINGS}:2: invalid JSON"):
        read_settings(tmp_path)
    data = good_settings()
    data["generation"]["max_new_tokens"] = 0
    (tmp_path / SETTINGS).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(KotuneError, match=rf"{SETTINGS}: generation.max_new_tokens must be > 0"):
        read_settings(tmp_path)


def test_wrong_folders_fail_before_any_import(tmp_path):
    with pytest.raises(KotuneError, match="no such folder"):
        read_settings(tmp_path / "missing")
    with pytest.raises(KotuneError, match="not a kotune adapter folder"):
        read_settings(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_the_manifest_names_a_damaged_file(tiny_adapter, tmp_path, damage):
    folder = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, folder)
    assert verify_files(folder) >= 8  # adapter, config, settings, card, tokenizer, base/
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        weights.unlink()
    expected = "missing" if damage == "delete" else "sha256 differs from manifest.json"
    with pytest.raises(KotuneError, match=f"adapter_model.safetensors: {expected}"):
        open_adapter(folder)


def test_the_bundled_base_is_checked_too(tiny_adapter, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, folder)
    (folder / "base" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(KotuneError, match="base/config.json: sha256 differs"):
        verify_files(folder)


def test_the_exported_folder_loads_merged_or_in_nf4(tiny_adapter):
    import torch
    from peft import PeftModel

    from kotune.inference.adapter import load_exported

    merged = load_exported(tiny_adapter)  # the cpu profile's chat_quantization: none
    assert merged.quantization == "none" and merged.device == "cpu"
    assert not isinstance(merged.model, PeftModel)  # the adapter is in the weights
    nf4 = load_exported(tiny_adapter, quantization="nf4")
    assert isinstance(nf4.model, PeftModel)
    ids = torch.tensor([nf4.tokenizer("### 질문: 인이란?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        a = merged.model(input_ids=ids).logits
        b = nf4.model(input_ids=ids).logits
    assert a.shape == b.shape and torch.isfinite(b).all()
    assert not merged.model.training and not nf4.model.training
