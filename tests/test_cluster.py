"""cluster/skypilot.yaml, the several-machines recipe: its overrides compose into a valid kotune
config for as many machines as it asks for, machine 0 runs the experiment and the others the
train stage exactly as dvc.yaml runs it, with the rendezvous kotune's launcher reads; and, where
SkyPilot is installed, the file validates against SkyPilot's own task schema."""

import shlex
from pathlib import Path

import pytest
import yaml

from kotune.config import compose, parse_config
from kotune.training.launch import RENDEZVOUS_VARS, accelerate_config

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "cluster" / "skypilot.yaml"


@pytest.fixture(scope="module")
def task():
    return yaml.safe_load(TASK.read_text(encoding="utf-8"))


def test_the_task_has_what_skypilot_runs_and_what_kotune_needs(task):
    assert set(task) <= {"name", "workdir", "num_nodes", "resources", "envs", "setup", "run",
                         "file_mounts"}  # fmt: skip
    assert task["workdir"] == "." and task["num_nodes"] >= 2
    accelerator, count = task["resources"]["accelerators"].split(":")
    run = task["run"]
    # the first machine's address and this machine's rank, from SkyPilot's variables
    assert 'MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)' in run
    assert "NODE_RANK=$SKYPILOT_NODE_RANK" in run and "MASTER_PORT" in task["envs"]
    assert set(RENDEZVOUS_VARS) <= {"MASTER_ADDR", "NODE_RANK", *task["envs"]}
    assert "gpu.num_machines=$SKYPILOT_NUM_NODES" in run
    overrides = [*shlex.split(task["envs"]["EXP"]), f"gpu.num_machines={task['num_nodes']}"]
    cfg = parse_config(compose(overrides, ROOT / "conf"))
    assert cfg.gpu.num_processes == int(count) and accelerator  # processes = GPUs per machine
    assert cfg.world_size == task["num_nodes"] * int(count)
    assert cfg.train.effective_batch_size % (cfg.world_size * cfg.gpu.micro_batch_size) == 0
    environ = {
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": task["envs"]["MASTER_PORT"],
        "NODE_RANK": "1",
    }
    written = accelerate_config(cfg.gpu, cfg.model.family, environ)
    assert (written["num_machines"], written["machine_rank"]) == (task["num_nodes"], 1)


def test_the_other_machines_run_the_train_stage_as_dvc_yaml_does(task):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    train = " ".join(stages["train"]["cmd"].removeprefix("exec ").split())
    assert train in [" ".join(line.split()) for line in task["run"].splitlines()]
    assert 'dvc exp run -n "$EXP_NAME"' in task["run"] and "dvc exp push origin" in task["run"]


def test_the_task_validates_against_skypilots_schema():
    """Only where SkyPilot is installed (not a kotune dependency: 47 packages, an older click)."""
    schemas = pytest.importorskip("sky.utils.schemas")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(yaml.safe_load(TASK.read_text(encoding="utf-8")), schemas.get_task_schema())
