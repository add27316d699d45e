"""The launchers' command lines and the FSDP config kotune writes from a profile, checked against
accelerate's own parser (the environment its workers get) and transformers' model classes."""

from pathlib import Path

import pytest
import yaml

from kotune.config import compose, parse_config
from kotune.errors import KotuneError
from kotune.training.launch import DECODER_LAYERS, accelerate_config, rendezvous, torchrun_args

ROOT = Path(__file__).resolve().parents[2]


def config(*overrides):
    return parse_config(compose(list(overrides), ROOT / "conf"))


def worker_environment(tmp_path, config_dict, argv=("stages/train.py", "--base", "models/base")):
    """What `accelerate launch --config_file …` puts in every worker's environment."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    ClusterConfig.from_yaml_file(path)  # raises on a key accelerate does not know
    args = launch_command_parser().parse_args(["--config_file", str(path), *argv])
    args, _, _ = _validate_launch_command(args)
    assert args.training_script == argv[0] and args.training_script_args == list(argv[1:])
    return args, prepare_multi_gpu_env(args)


@pytest.mark.parametrize(
    "model, gpu, layer, precision, on_gpu",
    [
        ("koalpaca-polyglot-12.8b", "t4x2-fsdp", "GPTNeoXLayer", "fp16", "true"),
        ("qwen2.5-7b-instruct", "h200x2-fsdp", "Qwen2DecoderLayer", "bf16", "true"),
        ("bllossom-8b", "h200x2-fsdp", "LlamaDecoderLayer", "bf16", "true"),
        ("tiny", "cpu", "GPTNeoXLayer", "no", "false"),
    ],
)
def test_the_fsdp_config_gives_workers_peft_fsdp_qlora_settings(
    tmp_path, model, gpu, layer, precision, on_gpu
):
    overrides = [f"model={model}", f"gpu={gpu}"]
    if gpu == "cpu":  # the CPU tests' setting
        overrides += ["gpu.distributed=fsdp", "gpu.num_processes=2", "gpu.micro_batch_size=2"]
    cfg = config(*overrides)
    args, env = worker_environment(tmp_path, accelerate_config(cfg.gpu, cfg.model.family))
    assert args.num_processes == 2 and args.use_fsdp
    expected = {
        "ACCELERATE_USE_FSDP": "true",
        "ACCELERATE_MIXED_PRECISION": precision,
        "FSDP_SHARDING_STRATEGY": "FULL_SHARD",
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "FSDP_TRANSFORMER_CLS_TO_WRAP": layer,
        "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
        "FSDP_USE_ORIG_PARAMS": "false",
        "FSDP_OFFLOAD_PARAMS": "false",
        # rank 0 reads the weights and broadcasts them from its device: on a GPU only
        "FSDP_CPU_RAM_EFFICIENT_LOADING": on_gpu,
        "FSDP_SYNC_MODULE_STATES": on_gpu,
    }
    assert {k: env.get(k) for k in expected} == expected


@pytest.mark.parametrize("family", sorted(DECODER_LAYERS))
def test_each_family_wraps_the_decoder_layer_transformers_names(family):
    import transformers

    from kotune.modeling.shapes import config_class

    model_class = {"gpt_neox": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM",
                   "qwen2": "Qwen2ForCausalLM"}[family]  # fmt: skip
    assert config_class(family) is not None
    assert getattr(transformers, model_class)._no_split_modules == [DECODER_LAYERS[family]]


def test_several_machines_meet_at_the_first_one(tmp_path):
    environ = {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "NODE_RANK": "1"}
    cfg = config("gpu=h200x2-fsdp", "gpu.num_machines=2", "gpu.micro_batch_size=2")
    written = accelerate_config(cfg.gpu, cfg.model.family, environ)
    assert (written["num_machines"], written["num_processes"], written["machine_rank"]) == (2, 4, 1)
    args, _ = worker_environment(tmp_path, written)
    assert (args.main_process_ip, args.main_process_port, args.num_machines) == (
        "10.0.0.1",
        29500,
        2,
    )
    assert torchrun_args(2, ["stages/train.py"], 2, environ) == [
        "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "--master_port=29500",
        "--nproc_per_node=2", "stages/train.py",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "environ, message",
    [
        ({}, "set MASTER_ADDR, MASTER_PORT, NODE_RANK on every machine"),
        ({"MASTER_ADDR": "h", "MASTER_PORT": "1", "NODE_RANK": "2"}, "NODE_RANK must be 0 to 1"),
    ],
)
def test_several_machines_without_a_rendezvous_fail_with_one_line(environ, message):
    with pytest.raises(KotuneError, match=message):
        rendezvous(2, environ)
    assert rendezvous(1, {}) == {}
