"""The generate stage and what ingest takes from it: disabled (the default) it asks no teacher
and ingest reads the shipped data; enabled, ingest reads the generated records."""

from __future__ import annotations

import json
import runpy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from kotune.config import GenerateConfig, compose, parse_config
from kotune.ingest import ingest_persona

ROOT = Path(__file__).resolve().parents[2]

STAGE = ROOT / "stages" / "generate.py"


def menu_config(**generate):
    cfg = parse_config(compose(["persona=menu"], ROOT / "conf"))
    return replace(
        cfg, persona=replace(cfg.persona, generate=replace(cfg.persona.generate, **generate))
    )


def ingested(cfg, generated, out):
    """ingest_persona into `out`, and the records it wrote."""
    stats = ingest_persona(cfg.persona.data, cfg.persona.generate, generated, out)
    lines = out.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines], stats


def test_disabled_the_stage_writes_empty_outputs_and_asks_no_teacher(tmp_path, monkeypatch):
    params = compose(
        ["persona=menu", "persona.generate.teacher.base_url=http://127.0.0.1:9/v1"], ROOT / "conf"
    )
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "sys.argv", ["generate.py", "--out", "gen.jsonl", "--cache", "cache", "--metrics", "m.json"]
    )
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(STAGE), run_name="__main__")
    assert done.value.code == 0
    assert (tmp_path / "gen.jsonl").read_bytes() == b""
    assert (tmp_path / "cache").is_dir() and not any((tmp_path / "cache").iterdir())
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["requests"] == metrics["kept"] == 0 and len(metrics) > 10


def test_ingest_reads_the_shipped_data_while_generation_is_disabled(tmp_path):
    cfg = menu_config()
    assert cfg.persona.generate == replace(GenerateConfig(), n=500)  # disabled by default
    (tmp_path / "gen.jsonl").write_text("", encoding="utf-8")
    records, stats = ingested(cfg, tmp_path / "gen.jsonl", tmp_path / "conv.jsonl")
    assert len(records) == stats["conversations"]
    assert stats["conversations"] == len(json.loads(Path(ROOT / cfg.persona.data.path).read_text()))
    assert "generated" not in stats


GENERATED = [
    {"instruction": "비 오는 날 어울리는 전 추천해 줘", "input": "", "output": "김치전이요."},
    {"instruction": "편의점 야식 조합 알려 줘", "input": "만 원", "output": "컵라면과 삼각김밥."},
]


@pytest.mark.parametrize("add_to_data", [False, True])
def test_enabled_ingest_reads_the_generated_records(tmp_path, monkeypatch, add_to_data):
    monkeypatch.chdir(ROOT)  # persona.data.path is relative to the project
    cfg = menu_config(
        enabled=True, add_to_data=add_to_data, teacher=replace(GenerateConfig().teacher, model="m")
    )
    generated = tmp_path / "selfinstruct.jsonl"
    generated.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in GENERATED), encoding="utf-8"
    )
    records, stats = ingested(cfg, generated, tmp_path / "conv.jsonl")
    shipped = len(json.loads(Path(cfg.persona.data.path).read_text(encoding="utf-8")))
    assert stats["generated"] == 2
    assert stats["conversations"] == 2 + (shipped if add_to_data else 0)
    assert records[0]["messages"][0]["content"] == GENERATED[0]["instruction"]
    assert records[1]["messages"][0]["content"] == "편의점 야식 조합 알려 줘\n\n만 원"


def test_enabled_without_a_teacher_model_is_refused_at_load():
    from kotune.errors import ConfigError

    params = compose(["persona=menu", "persona.generate.enabled=true"], ROOT / "conf")
    with pytest.raises(ConfigError, match="persona.generate.teacher.model is required"):
        parse_config(params)
