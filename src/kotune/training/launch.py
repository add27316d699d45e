"""One stage command for one or several processes: with `gpu.num_processes` > 1 (or several
machines), stages/train.py runs itself again, under torchrun for data parallelism (`gpu.distributed:
ddp`, one process and one 4-bit copy per device) or under `accelerate launch` with an FSDP config
written from the profile (`fsdp`: the base sharded across the processes)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kotune.config import GpuConfig
from kotune.errors import KotuneError

# set by torchrun (and accelerate launch) in every worker: there, launching again is wrong
LAUNCHER_VARS = ("LOCAL_RANK", "WORLD_SIZE")
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# where the other machines find the first one (PyTorch's names; a cluster launcher sets them)
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK")
# the class of one decoder layer per family: FSDP's unit of sharding and gathering (transformers'
# `_no_split_modules` for these models; a test checks that they agree)
DECODER_LAYERS = {
    "gpt_neox": "GPTNeoXLayer",
    "llama": "LlamaDecoderLayer",
    "qwen2": "Qwen2DecoderLayer",
}
MIXED_PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}


def needs_launcher(num_processes: int, environ: Mapping[str, str] | None = None) -> bool:
    """True when the profile asks for several processes and none has been started yet."""
    environ = os.environ if environ is None else environ
    return num_processes > 1 and not any(name in environ for name in LAUNCHER_VARS)


def rendezvous(num_machines: int, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """This machine's rank and the first machine's address, from MASTER_ADDR, MASTER_PORT and
    NODE_RANK (set on each machine by the cluster launcher); {} on one machine."""
    environ = os.environ if environ is None else environ
    if num_machines == 1:
        return {}
    missing = [name for name in RENDEZVOUS_VARS if not environ.get(name)]
    if missing:
        raise KotuneError(
            f"gpu.num_machines is {num_machines}: set {', '.join(missing)} on every machine (the "
            "first machine's address and a free port, and this machine's rank from 0)"
        )
    rank = int(environ["NODE_RANK"])
    if not 0 <= rank < num_machines:
        raise KotuneError(f"NODE_RANK must be 0 to {num_machines - 1}, got {rank}")
    return {"ip": environ["MASTER_ADDR"], "port": int(environ["MASTER_PORT"]), "rank": rank}


def torchrun_args(
    num_processes: int,
    argv: Sequence[str],
    num_machines: int = 1,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """torchrun's command line (`python -m torch.distributed.run …`) for the script and arguments
    in `argv`. --standalone: a rendezvous on a free local port, so queued experiments never
    collide; OMP_NUM_THREADS defaults to 1 a worker (torchrun's choice; set it to override).
    Several machines meet at MASTER_ADDR:MASTER_PORT (`rendezvous`)."""
    meet = rendezvous(num_machines, environ)
    if not meet:
        return ["--standalone", f"--nproc_per_node={num_processes}", *argv]
    return [
        f"--nnodes={num_machines}",
        f"--node_rank={meet['rank']}",
        f"--master_addr={meet['ip']}",
        f"--master_port={meet['port']}",
        f"--nproc_per_node={num_processes}",
        *argv,
    ]


def accelerate_config(
    gpu: GpuConfig, family: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The `accelerate launch --config_file` settings for FSDP-QLoRA on this profile, as peft's
    FSDP-QLoRA guide gives them:

    - FULL_SHARD, each decoder layer its own unit (TRANSFORMER_BASED_WRAP; the Trainer wraps the
      LoRA layers separately with peft's policy), BACKWARD_PRE prefetch;
    - SHARDED_STATE_DICT: each rank saves its own shard, so checkpoints resume as they were
      (the whole adapter is written beside them on rank 0: training.qlora.SaveWholeAdapter);
    - use_orig_params false, as the guide has it with cpu-RAM-efficient loading: rank 0 reads the
      weights, the others start empty and receive their shards (one copy in host memory, not one
      per process). That loading broadcasts from a device, so on the CPU (tests) it is off and
      every process reads the weights itself;
    - several machines: the rendezvous from MASTER_ADDR / MASTER_PORT / NODE_RANK.
    """
    on_gpu = gpu.device == "cuda"
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "FSDP",
        "downcast_bf16": "no",
        "mixed_precision": MIXED_PRECISION[gpu.compute_dtype],
        "num_machines": gpu.num_machines,
        "num_processes": gpu.num_processes * gpu.num_machines,  # accelerate counts them all
        "machine_rank": 0,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": not on_gpu,
        "fsdp_config": {
            "fsdp_version": 1,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": DECODER_LAYERS[family],
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_forward_prefetch": False,
            "fsdp_cpu_ram_efficient_loading": on_gpu,
            "fsdp_sync_module_states": on_gpu,
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_use_orig_params": False,
            "fsdp_activation_checkpointing": False,  # the model's own checkpointing, if any
        },
    }
    meet = rendezvous(gpu.num_machines, environ)
    if meet:
        config.update(
            machine_rank=meet["rank"], main_process_ip=meet["ip"], main_process_port=meet["port"]
        )
    return config


def relaunch(num_processes: int, argv: Sequence[str] | None = None, num_machines: int = 1) -> int:
    """Run `argv` (default: this very command) on `num_processes` processes through torchrun
    and return the exit status: 0, the first failed worker's status, or 128 + the signal.

    torchrun runs in this process rather than a child so that Ctrl-C ends with one line: its
    agent passes the SIGINT on to the workers (each in its own session, so they get it once;
    rank 0 says where training stopped) and then raises, which is caught here instead of
    printing a traceback. A worker that fails prints its own error before this returns.
    """
    from torch.distributed.run import parse_args, run

    command = list(sys.argv if argv is None else argv)
    options = parse_args(torchrun_args(num_processes, command, num_machines))
    return _run_workers(lambda: run(options))


def relaunch_fsdp(gpu: GpuConfig, family: str, argv: Sequence[str] | None = None) -> int:
    """Run `argv` (default: this very command) under `accelerate launch` with the FSDP config of
    `accelerate_config`, written to a temporary file for the launch; the exit status as
    `relaunch`'s (accelerate starts the workers through the same torch elastic agent)."""
    import yaml
    from accelerate.commands.launch import launch_command, launch_command_parser

    command = list(sys.argv if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="kotune-fsdp-") as folder:
        path = Path(folder) / "accelerate_fsdp.yaml"
        path.write_text(yaml.safe_dump(accelerate_config(gpu, family), sort_keys=False))
        options = launch_command_parser().parse_args(["--config_file", str(path), *command])
        return _run_workers(lambda: launch_command(options))


def _run_workers(start: Callable[[], Any]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):  # not its "shutting down workers" chatter
        if name.startswith(("torch.distributed.elastic", "accelerate")):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        start()
    except SignalException as stop:
        return INTERRUPTED if stop.sigval == signal.SIGINT else 128 + int(stop.sigval)
    except ChildFailedError as failed:
        first = min(failed.failures.values(), key=lambda f: f.timestamp)
        return first.exitcode if first.exitcode > 0 else 128 - first.exitcode
    return 0


def stopped(code: int = INTERRUPTED) -> int:
    """Return `code` after Ctrl-C; a torchrun worker leaves at once instead (os._exit): a peer
    may have stopped in the middle of a collective, and tearing the process group down would
    wait for it (or abort with "terminate called without an active exception")."""
    if any(name in os.environ for name in LAUNCHER_VARS):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Rank 0 (or the only process): the one that writes metrics, the fingerprint and curves."""
    environ = os.environ if environ is None else environ
    return environ.get("RANK", "0") == "0"
