"""Outputs are written atomically and nothing the command did not create is ever removed: a full
disk, a read-only folder or a failing stage leaves the user's files byte-for-byte as they were,
with one line naming the path. Real file systems where the machine allows it (a 64 KiB tmpfs
for a full disk, a tmpfs remounted read-only), and a patched file object that raises ENOSPC
everywhere (always runs)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_user_errors import GOOD_RECORD, KOTUNE, tree_digest

from kotune.errors import DataError
from kotune.files import atomic_dir, atomic_file, read_jsonl, write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
BIG_RECORD = json.dumps(
    {
        "id": "a",
        "conversation_id": "a",
        "messages": [
            {"role": "user", "content": "인이란 무엇입니까? " * 50},
            {"role": "assistant", "content": "측은지심은 인의 단서입니다. " * 50},
        ],
    },
    ensure_ascii=False,
)


def big_conversations(path: Path, n: int = 200) -> Path:
    """~250 KB of distinct conversations: more than the 64 KiB file system holds."""
    lines = [BIG_RECORD.replace('"a"', f'"c{i}"').replace("?", f"? {i}") for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_kotune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KOTUNE, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kotune: error: "), result.stderr
    assert expected in lines[0], lines[0]


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A real tmpfs of `size` at `path` (root with CAP_SYS_ADMIN only; skipped elsewhere)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def read_only_folder(path: Path, files: dict[str, str]):
    """A folder holding `files` that this process cannot write to: mode 0555 for a normal user;
    for root (who ignores modes) a tmpfs remounted read-only."""
    if os.geteuid() != 0:
        path.mkdir()
        for name, text in files.items():
            (path / name).write_text(text, encoding="utf-8")
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with mounted_tmpfs(path, "1m"):
        for name, text in files.items():
            (path / name).write_text(text, encoding="utf-8")
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path


def test_a_full_disk_leaves_the_previous_output_and_no_temporary(tmp_path):
    """A real ENOSPC: the output does not fit a 64 KiB tmpfs that already holds the user's
    previous output and another file of theirs."""
    source = big_conversations(tmp_path / "conv.jsonl")
    with mounted_tmpfs(tmp_path / "disk", "64k") as disk:
        (disk / "clean.jsonl").write_text(GOOD_RECORD, encoding="utf-8")
        (disk / "notes.txt").write_text("mine", encoding="utf-8")
        before = tree_digest(disk)
        result = run_kotune("clean", str(source), "-o", "disk/clean.jsonl", cwd=tmp_path)
        assert_one_line(result, "disk/clean.jsonl: cannot write: No space left on device")
        assert tree_digest(disk) == before
        assert sorted(p.name for p in disk.iterdir()) == ["clean.jsonl", "notes.txt"]


class FullDisk:
    """A text file object whose writes fail with ENOSPC after `room` characters, as a full
    disk's do (the first writes land in the buffer)."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, text: str) -> int:
        self.room -= len(text)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(text)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_write_failing_with_enospc_is_one_error_naming_the_output(tmp_path, monkeypatch):
    target = tmp_path / "clean.jsonl"
    target.write_text(GOOD_RECORD, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree_digest(tmp_path)
    real_open = Path.open

    def open_on_a_full_disk(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle, 100) if "w" in mode else handle

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    records = [json.loads(GOOD_RECORD)] * 50
    with pytest.raises(DataError) as error:
        write_jsonl(target, records)
    assert str(error.value) == f"{target}: cannot write: No space left on device"
    with pytest.raises(DataError, match="cannot write: No space left on device"):
        write_json(tmp_path / "metrics.json", {"rows": list(range(100))})
    monkeypatch.undo()
    assert tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl", "notes.txt"]


def test_an_output_in_a_read_only_folder_is_one_line_and_the_folder_untouched(tmp_path):
    source = tmp_path / "conv.jsonl"
    source.write_text(GOOD_RECORD, encoding="utf-8")
    with read_only_folder(tmp_path / "locked", {"clean.jsonl": "old", "notes.txt": "mine"}) as ro:
        before = tree_digest(ro)
        result = run_kotune("clean", str(source), "-o", "locked/clean.jsonl", cwd=tmp_path)
        assert_one_line(result, "locked/clean.jsonl: cannot write: Read-only file system")
        deeper = run_kotune("clean", str(source), "-o", "locked/new/clean.jsonl", cwd=tmp_path)
        assert_one_line(deeper, "locked/new: cannot create the folder: Read-only file system")
        assert tree_digest(ro) == before


def test_a_stage_writing_into_a_read_only_folder_is_one_line(tmp_path):
    """The same for a stage script (here split, as dvc.yaml runs it)."""
    import yaml

    from kotune.config import compose

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(compose([], ROOT / "conf"), allow_unicode=True), encoding="utf-8"
    )
    source = tmp_path / "clean.jsonl"
    big_conversations(source, 20)
    with read_only_folder(tmp_path / "processed", {"train.jsonl": "old"}) as ro:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "stages" / "split.py"),
                "clean.jsonl",
                "--train",
                "processed/train.jsonl",
                "--test",
                "processed/test.jsonl",
                "--metrics",
                "split.json",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert_one_line(result, "processed/train.jsonl: cannot write: Read-only file system")
        assert (ro / "train.jsonl").read_text() == "old"


def test_a_failed_block_removes_only_its_temporary_and_the_folders_it_made(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.jsonl"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the stage failed")
    assert list(tmp_path.iterdir()) == []
    # an existing file is replaced only on success, keeping its permissions
    keep = tmp_path / "keep.jsonl"
    keep.write_text("mine")
    keep.chmod(0o640)
    with pytest.raises(RuntimeError), atomic_file(keep) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert keep.read_text() == "mine"
    with atomic_file(keep) as tmp:
        tmp.write_text("new")
    assert keep.read_text() == "new" and keep.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]


def test_a_folder_output_replaces_only_what_dvc_yaml_declares(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"\xff\xd8")
    refused = "photos: already exists and is not an output declared"
    with pytest.raises(DataError, match=refused), atomic_dir(mine) as tmp:
        tmp.mkdir()
    with pytest.raises(DataError, match="already exists"), atomic_dir(Path(".")) as tmp:
        tmp.mkdir()
    assert (mine / "a.jpg").read_bytes() == b"\xff\xd8"
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  base:\n    cmd: python stages/base.py\n    outs:\n      - models/base\n"
    )
    out = tmp_path / "models" / "base"
    out.mkdir(parents=True)
    (out / "old.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        tmp.mkdir()
        (tmp / "half.bin").write_bytes(b"half")
        raise RuntimeError
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["base"]
    assert [p.name for p in out.iterdir()] == ["old.bin"]
    with atomic_dir(Path("models/base")) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_bytes(b"new")
    assert [p.name for p in out.iterdir()] == ["new.bin"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["base"]


def test_read_jsonl_names_the_line_of_a_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n{"b": "\xed\x95\x9c"}\n{"c": "\xc7\xd1"}\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})  # BOM and CRLF as before
    assert next(rows) == (3, {"b": "한"})
    with pytest.raises(DataError, match=r"x.jsonl:4: not UTF-8 text \(byte 0xc7 at column 8\)"):
        next(rows)


def test_an_os_error_inside_a_folder_output_names_the_output_not_the_temporary(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    full = os.strerror(errno.ENOSPC)
    with (
        pytest.raises(DataError, match=rf"^models/base: cannot write: {full}$"),
        atomic_dir(Path("models/base")) as tmp,
    ):
        tmp.mkdir()
        raise OSError(errno.ENOSPC, full, str(tmp / "model.safetensors"))
    assert list(tmp_path.iterdir()) == []  # models/ was made for it, and is gone with it
    source = tmp_path / "in.jsonl"  # an input's error inside the block stays about the input
    with pytest.raises(FileNotFoundError), atomic_file(tmp_path / "out.jsonl"):
        source.read_text()
