"""Every user error the README promises as one line, in one table: exit 2, `kotune: error: …`
naming the file / line / field or flag, no traceback, no partial output, the user's files intact.

Each case: (id, files to create {name: bytes|str}, argv with `{tmp}` for the case's folder,
expected text in the message, paths (relative to {tmp}) that must NOT exist afterwards).
Sections are kept apart so that work on different parts adds rows in its own place.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

KOTUNE = str(Path(sys.executable).with_name("kotune"))

GOOD_RECORD = (
    '{"id": "a", "conversation_id": "a", "messages": '
    '[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
)

# --- input files and formats ---------------------------------------------------------------
DATA_CASES = [
    (
        "ingest-invalid-json-line",
        {"bad.jsonl": '{"instruction": "a", "output": "b"}\n{"instruction": \n'},
        ["ingest", "--format", "alpaca", "{tmp}/bad.jsonl", "-o", "{tmp}/out.jsonl"],
        "bad.jsonl:2: invalid JSON",
        ["out.jsonl"],
    ),
    (
        "clean-missing-field",
        {"conv.jsonl": GOOD_RECORD + '{"id": "b", "messages": []}\n'},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "conv.jsonl:2: missing field 'conversation_id'",
        ["clean.jsonl"],
    ),
]

# --- outputs, params and commands ------------------------------------------------------------
COMMAND_CASES: list = []

# --- chat, serve and adapters ----------------------------------------------------------------
ADAPTER_SETTINGS = json.dumps(
    {
        "persona": "mencius",
        "base": {"name": "tiny", "family": "gpt_neox", "source": "bundled", "path": "base"},
        "prompt_format": "koalpaca",
        "stop_patterns": ["### 질문:"],
    }
)


def adapter_folder(settings: str = ADAPTER_SETTINGS, **files: bytes) -> dict:
    """An exported folder's files as the manifest lists them; `files` then replaces or adds
    bytes after the manifest was written (what a damaged copy looks like)."""
    listed = {"kotune.json": settings.encode(), "adapter_model.safetensors": b"\x08weights"}
    manifest = {"files": {k: hashlib.sha256(v).hexdigest() for k, v in listed.items()}}
    listed.update(files)
    folder = {f"adapter/{k}": v for k, v in listed.items()}
    folder["adapter/manifest.json"] = json.dumps(manifest)
    return folder


ADAPTER_CASES = [
    (
        "chat-missing-adapter-folder",
        {},
        ["chat", "--adapter", "{tmp}/nope"],
        "nope: no such folder",
        [],
    ),
    (
        "chat-folder-that-is-not-an-adapter",
        {"notes/readme.txt": "hello"},
        ["chat", "--adapter", "{tmp}/notes"],
        "notes: not a kotune adapter folder (no kotune.json)",
        [],
    ),
    (
        "chat-truncated-adapter-weights",
        adapter_folder(**{"adapter_model.safetensors": b"\x08wei"}),
        ["chat", "--adapter", "{tmp}/adapter"],
        "adapter/adapter_model.safetensors: sha256 differs from manifest.json",
        [],
    ),
    (
        "chat-adapter-file-missing",
        {k: v for k, v in adapter_folder().items() if not k.endswith(".safetensors")},
        ["chat", "--adapter", "{tmp}/adapter"],
        "adapter/adapter_model.safetensors: missing (listed in manifest.json)",
        [],
    ),
    (
        "chat-adapter-without-manifest",
        {k: v for k, v in adapter_folder().items() if not k.endswith("manifest.json")},
        ["chat", "--adapter", "{tmp}/adapter"],
        "adapter: no manifest.json",
        [],
    ),
    (
        "chat-kotune-json-out-of-range",
        adapter_folder(ADAPTER_SETTINGS[:-1] + ', "generation": {"temperature": 0}}'),
        ["chat", "--adapter", "{tmp}/adapter"],
        "kotune.json: generation.temperature must be > 0, got 0",
        [],
    ),
    (
        "serve-missing-adapter-folder",
        {},
        ["serve", "--adapter", "{tmp}/nope", "--port", "0"],
        "nope: no such folder",
        [],
    ),
    (
        "serve-truncated-adapter-weights",
        adapter_folder(**{"adapter_model.safetensors": b"\x08wei"}),
        ["serve", "--adapter", "{tmp}/adapter", "--port", "0"],
        "adapter/adapter_model.safetensors: sha256 differs from manifest.json",
        [],
    ),
    (
        "serve-folder-that-is-not-an-adapter",
        {"notes/readme.txt": "hello"},
        ["serve", "--adapter", "{tmp}/notes", "--port", "0"],
        "notes: not a kotune adapter folder (no kotune.json)",
        [],
    ),
    (
        "merge-corrupted-adapter",
        adapter_folder(**{"adapter_model.safetensors": b"\x08wei"}),
        ["merge", "--adapter", "{tmp}/adapter", "-o", "{tmp}/merged"],
        "adapter/adapter_model.safetensors: sha256 differs from manifest.json",
        ["merged"],
    ),
    (
        "chat-kotune-json-broken",
        adapter_folder('{"persona": "mencius",\n'),
        ["chat", "--adapter", "{tmp}/adapter"],
        "kotune.json:2: invalid JSON",
        [],
    ),
]

CASES = DATA_CASES + COMMAND_CASES + ADAPTER_CASES


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("files", "argv", "expected", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_user_error_is_one_line(tmp_path, files, argv, expected, absent):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    before = tree_digest(tmp_path)
    result = subprocess.run(
        [KOTUNE, *(a.replace("{tmp}", str(tmp_path)) for a in argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kotune: error: "), result.stderr
    assert expected in lines[0], lines[0]
    for name in absent:
        assert not (tmp_path / name).exists(), f"partial output {name} left behind"
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "user files changed"
