"""File I/O shared by the stages: JSONL with line-numbered errors, atomic writes, hashes."""

from __future__ import annotations

import codecs
import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kotune.errors import DataError


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small records are built: it would
    rescan them all again and again (measured: ~30% of ingest + clean on a 93 MB export).
    Records hold no reference cycles, so nothing is lost; the collector resumes after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line is a DataError naming it.

    Streams: lines are read as bytes and decoded one by one, so a byte that is not UTF-8 (a
    binary file, a CP949 or UTF-16 export) is reported with its line and column.
    """
    path = Path(path)
    with open_input(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(not_utf8(path, lineno, raw, error)) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{lineno}: invalid JSON: {error.msg}") from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            yield lineno, obj


def not_utf8(path: Path, lineno: int, raw: bytes, error: UnicodeDecodeError) -> str:
    """The one line for a JSONL line that is not UTF-8: where, which byte, and a hint."""
    column = len(raw[: error.start].decode("utf-8", "replace")) + 1
    hint = "JSONL must be UTF-8"
    if lineno == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        hint = "it looks like UTF-16; save it as UTF-8"
    elif b"\0" in raw:
        hint = "it looks like a binary file, not JSONL"
    return (
        f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {column}); "
        f"{hint}"
    )


def open_input(path: Path) -> BinaryIO:
    """`path` opened for reading in binary; a missing file, a folder or an unreadable file is a
    DataError naming it."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None


def read_json(path: str | Path) -> Any:
    """Load one JSON document; a syntax error names the file, line and column."""
    path = Path(path)
    with open_input(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}: invalid JSON at column {error.colno}: {error.msg}"
        ) from None


def dumps_jsonl_line(obj: Any) -> str:
    """One canonical JSONL line: UTF-8 Korean kept readable, keys in insertion order."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`; returns them deepest first (to undo)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except OSError as error:
            _remove_empty(missing)
            raise DataError(f"{folder}: cannot create the folder: {error.strerror}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this command created (deepest first) if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _output_error(path: Path, error: OSError, temporary: Path) -> OSError | DataError:
    """An OS error about the output (its temporary, or anything inside a temporary folder) as
    one line naming the output; any other (an input read inside the block) is left as it is."""
    if error.filename is not None:
        named = Path(os.path.abspath(os.fsdecode(error.filename)))
        inside = Path(os.path.abspath(temporary))
        if named != inside and inside not in named.parents:
            return error
    return DataError(f"{path}: cannot write: {error.strerror or error}")


def _new_file_mode(path: Path) -> int:
    """Permissions for the output: the replaced file's, or what the umask gives a new file
    (mkstemp creates its temporary 0600)."""
    if path.is_file():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_file(path: str | Path) -> Path:
    """Refuse, before any work, an output that names an existing folder (`-o .`, `-o data`)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; the output must be a file name")
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file beside `path`; rename it over `path` only if the block succeeds.

    Nothing else is ever removed: on failure the temporary (and any folder this call created) is
    the only thing deleted, so the user's files stay byte-for-byte as they were. A `path` that
    names an existing folder (`-o .`, `-o data/`) is an error, not something to replace.
    """
    path = check_output_file(path)
    created = _make_parents(path)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        _remove_empty(created)
        raise DataError(f"{path}: cannot write: {error.strerror}") from None
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        if isinstance(error, OSError):
            raise _output_error(path, error, tmp) from None
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh path to build a stage's folder output in; on success it replaces `path`.

    For a folder dvc.yaml declares as a stage's output only (models/base, data/tokenized, …): an
    existing folder there is the previous run's and is replaced whole. Any other existing path
    is refused. The temporary lives beside `path` and is all that is removed on failure.
    """
    path = Path(path)
    if path.resolve() == Path.cwd().resolve() or (path.exists() and not declared_output(path)):
        raise DataError(
            f"{path}: already exists and is not an output declared in dvc.yaml; refusing to "
            f"replace it"
        )
    created = _make_parents(path)
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        _remove_empty(created)
        raise DataError(f"{path}: cannot write: {error.strerror}") from None
    tmp = workdir / path.name
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            os.rename(path, workdir / ".replaced")  # same file system: instant
        os.rename(tmp, path)
    except BaseException as error:
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_empty(created)
        if isinstance(error, OSError):
            raise _output_error(path, error, workdir) from None
        raise
    shutil.rmtree(workdir, ignore_errors=True)


def declared_output(path: str | Path) -> bool:
    """Whether dvc.yaml (in $DVC_ROOT or the current folder) declares `path` as an output, a
    metric or a plot of one of its stages."""
    import yaml

    root = Path(os.environ.get("DVC_ROOT") or Path.cwd())
    try:
        pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    target = Path(os.path.abspath(path))
    for stage in (pipeline.get("stages") or {}).values():
        wdir = root / (stage.get("wdir") or ".")
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key) or []:
                out = item if isinstance(item, str) else next(iter(item))
                if Path(os.path.abspath(wdir / out)) == target:
                    return True
    return False


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write records atomically as JSONL; returns how many were written."""
    count = 0
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(dumps_jsonl_line(record))
            count += 1
    return count


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically with sorted keys (metrics, manifests): stable diffs."""
    with atomic_file(path) as tmp:
        tmp.write_text(
            json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def read_names(path: str | Path) -> list[str]:
    """Non-empty lines of a names file (`#` starts a comment)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: names file not found (persona.pii.names_file)") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A small table for DVC plots, written atomically."""
    import csv

    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | Path) -> dict[str, str]:
    """sha256 of every file under `root`, keyed by POSIX path relative to it, sorted."""
    root = Path(root)
    if root.is_file():
        return {root.name: sha256_file(root)}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def digest_of(hashes: dict[str, str]) -> str:
    """One sha256 over a {name: sha256} table: a fingerprint of a whole folder."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
