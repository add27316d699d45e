"""dvc.yaml ↔ stages/ ↔ params: every stage runs its own script, declares the library modules
it imports (transitively) and the params sections its docstring says it reads."""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = list(PIPELINE["stages"])


def test_the_chain_is_exactly_the_nine_stages_in_order():
    assert STAGES == [
        "generate",
        "ingest",
        "clean",
        "split",
        "base",
        "tokenize",
        "train",
        "evaluate",
        "export",
    ]


def outs(stage: dict) -> set[str]:
    paths = set()
    for key in ("outs", "metrics", "plots"):
        for item in stage.get(key, []):
            paths.add(item if isinstance(item, str) else next(iter(item)))
    return paths


def test_each_stage_depends_on_the_previous_stages_outputs():
    produced: set[str] = set()
    for name in STAGES:
        stage = PIPELINE["stages"][name]
        if produced:
            assert set(stage["deps"]) & produced, f"{name} uses nothing an earlier stage wrote"
        produced |= outs(stage)


def kotune_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kotune"):
            modules.add(node.module)
            modules.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.startswith("kotune"))
    return modules


def module_file(module: str) -> Path | None:
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_library_files(script: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for module in kotune_imports(todo.pop()):
            path = module_file(module)
            if path and path not in seen:
                seen.add(path)
                todo.append(path)
    return {p for p in seen if p.name != "__init__.py" or p.parent.name != "kotune"}


@pytest.mark.parametrize("name", STAGES)
def test_stage_runs_its_script_and_declares_its_modules(name):
    stage = PIPELINE["stages"][name]
    script = f"stages/{name}.py"
    # exec: the stage is DVC's own child under any $SHELL (dash too), its Ctrl-C status DVC's
    assert stage["cmd"].startswith(f"exec python {script} "), stage["cmd"]
    deps = [ROOT / d for d in stage["deps"] if "${" not in d]
    assert ROOT / script in deps
    for path in imported_library_files(ROOT / script):
        covered = any(path == d or d in path.parents for d in deps)
        assert covered, (
            f"stage {name} imports {path.relative_to(ROOT)} but does not list it in deps"
        )


@pytest.mark.parametrize("name", STAGES)
def test_stage_declares_the_params_its_docstring_names(name):
    doc = ast.get_docstring(ast.parse((ROOT / f"stages/{name}.py").read_text(encoding="utf-8")))
    assert doc and f"python stages/{name}.py" in doc
    reads = re.search(r"Reads params (.*?)(?:\.|$)", doc, re.S)
    assert reads, f"stages/{name}.py docstring must say which params it reads"
    sections = re.findall(r"`([a-z_.]+)`", reads.group(1))
    declared = PIPELINE["stages"][name].get("params", [])
    for section in sections:
        assert any(d == section or d.startswith(f"{section}.") for d in declared), (
            f"stage {name} reads params `{section}` but dvc.yaml declares only {declared}"
        )


def test_metrics_are_small_git_tracked_files():
    for name in STAGES:
        for item in PIPELINE["stages"][name].get("metrics", []):
            path, spec = next(iter(item.items()))
            assert path.startswith("metrics/") and spec == {"cache": False}


def test_every_declared_param_exists_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for name in STAGES:
        for dotted in PIPELINE["stages"][name].get("params", []):
            node = params
            for key in dotted.split("."):
                assert isinstance(node, dict) and key in node, (
                    f"stage {name} declares {dotted}, not in params.yaml"
                )
                node = node[key]
