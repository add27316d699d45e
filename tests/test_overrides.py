"""Overrides and params checked before DVC sees them: `make exp ARGS=…` (every -S point of a
sweep composed and validated; DVC would print "unexpected error" and Hydra's lines) and
`make run` (params.yaml whole: a section no stage reads is still a typo)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kotune.errors import ConfigError
from kotune.overrides import check_exp_run

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-S", "train.lroa.r=4"], "unknown key train.lroa in override 'train.lroa.r=4'"),
        (["--set-param", "model=nope", "--queue"], "unknown model option 'nope'"),
        (["-S", "train.lora.r=8,0", "--queue"], "-S train.lora.r=0: train.lora.r must be > 0"),
        (["-S", "trian.lr=1"], "unknown key trian in override 'trian.lr=1'"),
        (["-S", "train.lr=["], "override 'train.lr=[' is not valid Hydra syntax"),
    ],
)
def test_a_bad_exp_run_argument_is_one_config_error(argv, expected):
    with pytest.raises(ConfigError) as error:
        check_exp_run(argv, CONF)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_every_point_of_a_sweep_is_checked_and_other_dvc_options_left_alone():
    assert check_exp_run(["--queue", "-S", "train.lora.r=8,16,32", "-S", "model=tiny"], CONF) == 3
    assert check_exp_run(["-n", "my-exp", "--temp"], CONF) == 1  # the defaults, as DVC composes


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The Makefile, conf/ and params.yaml in a folder of their own."""
    for name in ("Makefile", "params.yaml", "pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(CONF, tmp_path / "conf")
    return tmp_path


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`make ARGS` there on the project's .venv (set up already: make must not set up again)."""
    venv = Path(sys.executable).parents[1]
    return subprocess.run(
        ["make", "-s", f"VENV={venv}", "-o", f"{venv}/.installed", "-o", ".dvc/plots/offline.html"]
        + list(args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def kotune_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("kotune: error:")]


def test_make_exp_reports_an_unknown_key_in_one_line_before_dvc_runs(project):
    result = make(project, "exp", "ARGS=-S train.lroa.r=4")
    assert result.returncode != 0
    (line,) = kotune_lines(result)
    assert "unknown key train.lroa in override 'train.lroa.r=4' (known keys of train:" in line
    assert "Reproducing" not in result.stdout  # dvc exp run never started


def test_make_run_reports_a_section_no_stage_reads(project):
    params = project / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8") + "trian:\n  lr: 0.001\n")
    result = make(project, "run")
    assert result.returncode != 0
    (line,) = kotune_lines(result)
    assert line.startswith("kotune: error: params.yaml: unknown key trian (known keys of params:")
