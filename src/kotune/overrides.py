"""Hydra overrides as users type them (`kotune fit model=…`, `dvc exp run -S …`): a failed
composition as one line naming the override and what exists instead, and the check that
`make exp` runs before `dvc exp run` (DVC prints such failures as "unexpected error" followed by
Hydra's message, and nothing inside DVC lets a project change that)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from kotune.config import ConfigError, compose, parse_config


def compose_overrides(overrides: list[str], conf_dir: str | Path = "conf") -> dict[str, Any]:
    """kotune.config.compose for overrides a user typed: a failure is one ConfigError line."""
    from hydra.errors import HydraException

    try:
        return compose(overrides, conf_dir)
    except HydraException as error:
        raise ConfigError(composition_error(error, overrides, conf_dir)) from None


def composition_error(error: Exception, overrides: list[str], conf_dir: str | Path) -> str:
    """One line for a failed composition: an unknown group option, an unknown key (and the keys
    that exist there), a sweep outside `dvc exp run`, or an override Hydra cannot parse."""
    from hydra.errors import MissingConfigException, OverrideParseException

    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OverrideParseException):
        return f"override {error.override!r} is not valid Hydra syntax: {first_line}"
    if isinstance(error, MissingConfigException) and "/" in (error.missing_cfg_file or ""):
        group, name = error.missing_cfg_file.rsplit("/", 1)
        options = error.options or sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))
        return (
            f"unknown {group} option {name!r} in override '{group}={name}' (options in "
            f"{Path(conf_dir) / group}/: {', '.join(options)})"
        )
    override = re.match(r"Could not override '([^']+)'", first_line)
    if override:
        key = override.group(1)
        given = next((o for o in overrides if o.split("=", 1)[0] == key), key)
        others = [o for o in overrides if o != given]
        try:
            composed = compose(others, conf_dir)
        except Exception:  # another override fails too: it gets its own message next time
            composed = compose([], conf_dir)
        return _unknown_key(key.replace("/", "."), given, composed)
    ambiguous = re.match(r"Ambiguous value for argument '([^']+)'", first_line)
    if ambiguous:
        return (
            f"override '{ambiguous.group(1)}' is a sweep (a,b,…): only `dvc exp run --queue` "
            f"expands sweeps; give one value here, or [a,b] for a list"
        )
    return f"cannot compose {Path(conf_dir)} with {' '.join(overrides) or 'no overrides'}: {first_line}"


def _unknown_key(dotted: str, override: str, composed: dict[str, Any]) -> str:
    """`unknown key train.lroa in override 'train.lroa.r=4' (known keys of train: seed, …)` for
    the first part of `dotted` that the composed config does not have."""
    node: Any = composed
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(node, dict):
            return f"{where} is a value, not a section, in override '{override}'"
        if part not in node:
            known = f"known keys of {where}" if where else "known top-level keys"
            return (
                f"unknown key {'.'.join(parts[: depth + 1])} in override '{override}' "
                f"({known}: {', '.join(node)})"
            )
        node = node[part]
    return f"cannot apply override '{override}'"


def check_exp_run(argv: list[str], conf_dir: str | Path = "conf") -> int:
    """Check what `dvc exp run ARGV` would compose, before DVC does: each `-S` sweep point (or
    the defaults: with Hydra on, `dvc exp run` composes params.yaml even without -S) must compose
    and validate. Returns how many configurations were checked. DVC itself prints a failed
    composition as "unexpected error" and Hydra's multi-line message; this is one line."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps
    from hydra.errors import HydraException

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-S", "--set-param", action="append", default=[])
    known, _ = parser.parse_known_args(argv)  # --queue, -n NAME, targets: DVC's business
    overrides = to_path_overrides(known.set_param).get("params.yaml", [])
    try:
        points = get_hydra_sweeps({"params.yaml": overrides}) if overrides else [{}]
    except HydraException as error:
        raise ConfigError(composition_error(error, overrides, conf_dir)) from None
    for point in points:
        chosen = point.get("params.yaml", [])
        try:
            parse_config(compose_overrides(chosen, conf_dir))
        except ConfigError as error:
            if "override '" in str(error) or not chosen:
                raise
            raise ConfigError(f"-S {' -S '.join(chosen)}: {error}") from None
    return len(points)


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kotune.overrides",
        description="check `dvc exp run` arguments before DVC composes them (make exp)",
    )
    parser.add_argument("--conf", default="conf")
    args, rest = parser.parse_known_args()
    checked = check_exp_run(rest, args.conf)
    print(f"params: ok ({checked} configuration{'s' if checked > 1 else ''})")


if __name__ == "__main__":
    from kotune.errors import run_cli

    run_cli(_main)
