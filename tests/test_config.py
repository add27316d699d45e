import itertools
from pathlib import Path

import pytest
import yaml

from kotune.config import compose, load_config, parse_config
from kotune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    g: sorted(p.stem for p in (ROOT / "conf" / g).glob("*.yaml"))
    for g in ("persona", "model", "gpu")
}


def defaults() -> dict:
    return compose(conf_dir=ROOT / "conf")


def test_committed_params_yaml_is_the_composed_defaults():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert committed == defaults(), "params.yaml is stale: run `make params`"


@pytest.mark.parametrize(
    ("persona", "model", "gpu"),
    list(itertools.product(GROUPS["persona"], GROUPS["model"], GROUPS["gpu"])),
)
def test_every_conf_option_composes_and_validates(persona, model, gpu):
    data = compose([f"persona={persona}", f"model={model}", f"gpu={gpu}"], ROOT / "conf")
    cfg = parse_config(data)
    assert (cfg.persona.name, cfg.model.name, cfg.gpu.name) == (persona, model, gpu)
    assert (
        cfg.grad_accum_steps * cfg.gpu.micro_batch_size * cfg.gpu.num_processes
        == cfg.train.effective_batch_size
    )


def with_value(data: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.lora.r", 0, "train.lora.r must be > 0, got 0"),
        ("train.lora.dropout", 1.5, "train.lora.dropout must be < 1, got 1.5"),
        ("train.lr", "fast", "train.lr must be a number, got 'fast'"),
        ("train.eval_steps", 2.5, "train.eval_steps must be an integer, got 2.5"),
        ("train.resume", "yes", "train.resume must be true or false, got 'yes'"),
        (
            "train.lora.rank",
            8,
            "unknown key train.lora.rank (known keys of train.lora: r, alpha, dropout)",
        ),
        ("split.test_fraction", 1.0, "split.test_fraction must be < 1, got 1.0"),
        ("gpu.quantization", "nf3", "gpu.quantization must be one of nf4, none; got 'nf3'"),
        ("persona.stop_patterns", "\n질문:", "persona.stop_patterns must be a list"),
        ("model.source", "hub", "model.hub_id is required when model.source is 'hub'"),
        (
            "gpu.micro_batch_size",
            3,
            "train.effective_batch_size (8) must be a multiple of gpu.micro_batch_size",
        ),
        ("typo_section", {}, "unknown key typo_section"),
    ],
)
def test_bad_params_fail_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as error:
        parse_config(with_value(defaults(), key, value))
    assert message in str(error.value)


def test_a_missing_value_is_named():
    data = defaults()
    del data["persona"]["system_prompt"]
    with pytest.raises(ConfigError, match="missing key persona.system_prompt"):
        parse_config(data)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(defaults(), "train.lora.r", -1)))
    with pytest.raises(ConfigError, match=r"params.yaml: train.lora.r must be > 0, got -1"):
        load_config(path)


def test_overrides_compose_like_dvc_exp_run():
    cfg = parse_config(compose(["train.lr=0.01", "train.lora.r=16"], ROOT / "conf"))
    assert cfg.train.lr == 0.01 and cfg.train.lora.r == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["gpu.compile=sometimes"], "gpu.compile must be one of auto; got 'sometimes' or "),
        (["gpu.distributed=fsdp"], "gpu.distributed fsdp needs gpu.num_processes > 1"),
        (["gpu=t4x2-fsdp", "gpu.optimizer=paged_adamw_8bit"], "cannot save FSDP checkpoints"),
        (["gpu=h200x2-fsdp", "gpu.compile=auto"], "gpu.compile must be false with gpu.dist"),
        (["gpu.liger=true"], "gpu.liger needs gpu.device cuda"),
        (
            ["gpu=t4x2", "gpu.num_machines=3"],
            "gpu.micro_batch_size × gpu.num_processes × gpu.num_m",
        ),
    ],
)
def test_gpu_settings_that_do_not_go_together_are_named(overrides, message):
    with pytest.raises(ConfigError) as error:
        parse_config(compose(overrides, ROOT / "conf"))
    assert message in str(error.value)


@pytest.mark.parametrize(("value", "parsed"), [(True, True), (False, False), ("auto", "auto")])
def test_compile_is_on_off_or_auto(value, parsed):
    """YAML reads on/off as true/false: gpu.compile takes those and the word auto."""
    assert parse_config(with_value(defaults(), "gpu.compile", value)).gpu.compile == parsed


def test_processes_on_several_machines_share_the_effective_batch():
    cfg = parse_config(
        compose(["gpu=t4x2", "gpu.num_machines=2", "gpu.micro_batch_size=2"], ROOT / "conf")
    )
    assert cfg.world_size == 4 and cfg.grad_accum_steps == 1  # 2 × 2 × 2 × 1 = 8
