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
    (
        "ingest-kakaotalk-on-a-json-file",
        {"data.json": '{"qa": [{"id": "a", "question": "q", "answer": "a"}]}'},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/data.json",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "data.json: a .json file, but the kakaotalk format (--format) reads exports as text",
        ["o.jsonl"],
    ),
    (
        "ingest-kakaotalk-on-json-named-txt",
        {"chat.txt": '{"qa": [{"id": "a", "question": "q", "answer": "a"}]}'},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "(it looks like JSON: is --format / persona.data.format right?)",
        ["o.jsonl"],
    ),
    (
        "ingest-alpaca-on-a-text-export",
        {"chat.txt": "[민지] [오후 7:02] 안녕\n"},
        ["ingest", "--format", "alpaca", "{tmp}/chat.txt", "-o", "{tmp}/o.jsonl"],
        "chat.txt: the alpaca format (--format) reads .json or .jsonl files",
        ["o.jsonl"],
    ),
    (
        "ingest-mencius-on-jsonl",
        {"m.jsonl": '{"id": "a", "question": "q", "answer": "a"}\n'},
        ["ingest", "--format", "mencius", "{tmp}/m.jsonl", "-o", "{tmp}/o.jsonl"],
        "reads .json files; for a .jsonl file try --format summarization or alpaca or chat",
        ["o.jsonl"],
    ),
    (
        "ingest-kakaotalk-without-me",
        {"chat.txt": "[민지] [오후 7:02] 안녕\n"},
        ["ingest", "--format", "kakaotalk", "{tmp}/chat.txt", "-o", "{tmp}/o.jsonl"],
        "missing --me",
        ["o.jsonl"],
    ),
    (
        "ingest-kakaotalk-gap-minutes-zero",
        {"chat.txt": "[민지] [오후 7:02] 안녕\n"},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "--gap-minutes",
            "0",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "--gap-minutes must be > 0, got 0",
        ["o.jsonl"],
    ),
    (
        "ingest-kakaotalk-me-who-never-speaks",
        {
            "chat.txt": "--------------- 2024년 3월 1일 금요일 ---------------\n[민지] [오후 7:02] 안녕\n"
        },
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "철수",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "--me is '철수', who never speaks in",
        ["o.jsonl"],
    ),
    (
        "ingest-null-is-called-null",
        {"menu.json": '[{"instruction": "메뉴 추천", "input": "", "output": null}]'},
        ["ingest", "--format", "alpaca", "{tmp}/menu.json", "-o", "{tmp}/o.jsonl"],
        "field 'output' must be a string, got null",
        ["o.jsonl"],
    ),
    (
        "ingest-utf16-text-that-is-no-export-says-how-it-was-read",
        {"memo.txt": "그냥 메모\n둘째 줄\n".encode("utf-16")},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/memo.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "first line: '그냥 메모' (the file was read as UTF-16)",
        ["o.jsonl"],
    ),
    (
        "ingest-neither-utf8-utf16-nor-cp949",
        {"chat.txt": b"\x80\x81\xff\xfe\x80" * 100},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "neither UTF-8, UTF-16/32 nor CP949 text",
        ["o.jsonl"],
    ),
    (
        "ingest-a-png-given-as-the-export",
        {"chat.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "chat.txt: not text but a PNG image",
        ["o.jsonl"],
    ),
    (
        "ingest-binary-data",
        {"chat.txt": bytes(range(256)) * 40},
        [
            "ingest",
            "--format",
            "kakaotalk",
            "--me",
            "민지",
            "{tmp}/chat.txt",
            "-o",
            "{tmp}/o.jsonl",
        ],
        "chat.txt: binary data, not text (a NUL byte at byte 0)",
        ["o.jsonl"],
    ),
    (
        "clean-one-huge-line-dropped-is-said",
        {
            "conv.jsonl": '{"id": "a", "conversation_id": "a", "messages": [{"role": "user", '
            '"content": "q"}, {"role": "assistant", "content": "' + "가" * 2_000_000 + '"}]}\n'
        },
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "clean: every one of the 1 conversations was dropped (dropped 1 turns longer than "
        "clean.max_chars (2000)",
        ["clean.jsonl"],
    ),
    (
        "clean-empty-input",
        {"conv.jsonl": "\n"},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "clean: the input holds no conversations",
        ["clean.jsonl"],
    ),
]

# --- outputs, params and commands ------------------------------------------------------------
SEED = '{"id": "t1", "name": "n", "instruction": "간식 추천해 줘", "is_classification": false, '
SELFINSTRUCT = [
    "selfinstruct",
    "--seeds",
    "{tmp}/seeds.json",
    "--model",
    "m",
    "-o",
    "{tmp}/out.jsonl",
]
CONF = str(Path(__file__).resolve().parents[1] / "conf")
ALPACA_LINE = '{"instruction": "q", "output": "a"}\n'
# not JSONL at all: a gzip header (0x8b is never UTF-8 there) and NUL bytes
BINARY = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256))
COMMAND_CASES: list = [
    (
        "selfinstruct-seed-missing-field",
        {"seeds.json": "[\n" + SEED + '"instances": [{"input": ""}]}\n]\n'},
        [*SELFINSTRUCT, "--base-url", "http://127.0.0.1:9/v1"],
        "seeds.json:2 (id t1): instances[0]: missing field 'output'",
        ["out.jsonl", "out.cache"],
    ),
    (
        "selfinstruct-unreachable-teacher",
        {"seeds.json": "[" + SEED + '"instances": [{"input": "", "output": "젤리"}]}]'},
        [*SELFINSTRUCT, "--base-url", "http://127.0.0.1:9/v1"],
        "--base-url http://127.0.0.1:9/v1: cannot reach the teacher",
        ["out.jsonl", "out.cache"],
    ),
    (
        "selfinstruct-flag-out-of-range",
        {"seeds.json": "[]"},
        [*SELFINSTRUCT, "--base-url", "http://127.0.0.1:9/v1", "--concurrency", "0"],
        "--concurrency must be > 0, got 0",
        ["out.jsonl", "out.cache"],
    ),
    (
        "ingest-output-is-an-existing-folder",
        {"in.jsonl": ALPACA_LINE, "existing/keep.txt": "mine", "existing/sub/more.bin": b"\x00"},
        ["ingest", "--format", "alpaca", "{tmp}/in.jsonl", "-o", "{tmp}/existing"],
        "existing: is a directory; the output must be a file name",
        [],
    ),
    (
        "clean-output-is-the-current-folder",
        {"conv.jsonl": GOOD_RECORD, "notes.txt": "mine", "sub/keep.txt": "also mine"},
        ["clean", "{tmp}/conv.jsonl", "-o", "."],
        "kotune: error: .: is a directory; the output must be a file name",
        [],
    ),
    (
        "ingest-output-inside-a-file",
        {"in.jsonl": ALPACA_LINE, "notes.txt": "mine"},
        ["ingest", "--format", "alpaca", "{tmp}/in.jsonl", "-o", "{tmp}/notes.txt/out.jsonl"],
        "notes.txt/out.jsonl: cannot write: Not a directory",
        [],
    ),
    (
        "clean-output-folders-created-then-removed-on-failure",
        {"conv.jsonl": GOOD_RECORD + '{"id": "b"}\n'},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/new/deeper/clean.jsonl"],
        "conv.jsonl:2: missing field 'conversation_id'",
        ["new"],
    ),
    (
        "ingest-binary-jsonl",
        {"chat.jsonl": BINARY},
        ["ingest", "--format", "chat", "{tmp}/chat.jsonl", "-o", "{tmp}/out.jsonl"],
        "chat.jsonl:1: not UTF-8 text (byte 0x8b at column 2); it looks like a binary file",
        ["out.jsonl"],
    ),
    (
        "clean-binary-jsonl",
        {"conv.jsonl": BINARY},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "conv.jsonl:1: not UTF-8 text (byte 0x8b at column 2)",
        ["clean.jsonl"],
    ),
    (
        "score-binary-jsonl",
        {"preds.jsonl": BINARY},
        ["score", "{tmp}/preds.jsonl"],
        "preds.jsonl:1: not UTF-8 text",
        [],
    ),
    (
        "clean-cp949-on-line-2",
        {"conv.jsonl": GOOD_RECORD.encode() + GOOD_RECORD.replace('"q"', '"질문"').encode("cp949")},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "conv.jsonl:2: not UTF-8 text (byte 0xc1 at column 79); JSONL must be UTF-8",
        ["clean.jsonl"],
    ),
    (
        "clean-utf16-jsonl",
        {"conv.jsonl": GOOD_RECORD.encode("utf-16")},
        ["clean", "{tmp}/conv.jsonl", "-o", "{tmp}/clean.jsonl"],
        "conv.jsonl:1: not UTF-8 text (byte 0xff at column 1); it looks like UTF-16",
        ["clean.jsonl"],
    ),
    (
        "score-a-folder",
        {"preds/a.jsonl": '{"prediction": "a", "reference": "a"}\n'},
        ["score", "{tmp}/preds"],
        "preds: is a directory, expected a file",
        [],
    ),
    (
        "clean-input-is-a-folder",
        {"conv/a.jsonl": GOOD_RECORD},
        ["clean", "{tmp}/conv", "-o", "{tmp}/clean.jsonl"],
        "conv: is a directory, expected a file",
        ["clean.jsonl"],
    ),
    (
        "fit-unknown-model-option",
        {},
        ["fit", "model=nope", "--conf", CONF],
        "unknown model option 'nope' in override 'model=nope' (options in ",
        [],
    ),
    (
        "fit-mistyped-key",
        {},
        ["fit", "train.lroa.r=4", "--conf", CONF],
        "unknown key train.lroa in override 'train.lroa.r=4' (known keys of train: seed, lr,",
        [],
    ),
    (
        "fit-unknown-top-level-key",
        {},
        ["fit", "trian.lr=1e-4", "--conf", CONF],
        "unknown key trian in override 'trian.lr=1e-4' (known top-level keys: persona,",
        [],
    ),
    (
        "fit-bad-override-syntax",
        {},
        ["fit", "train.lr=[", "--conf", CONF],
        "override 'train.lr=[' is not valid Hydra syntax",
        [],
    ),
    (
        "fit-sweep-outside-dvc",
        {},
        ["fit", "train.lora.r=8,16", "--conf", CONF],
        "override 'train.lora.r=8,16' is a sweep",
        [],
    ),
]

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
        "serve-db-that-is-no-url",
        adapter_folder(),
        ["serve", "--adapter", "{tmp}/adapter", "--port", "0", "--db", "chat.db"],
        "--db 'chat.db': not a database URL (e.g. sqlite:///chat.db)",
        [],
    ),
    (
        "serve-backend-url-nobody-answers",
        {},
        [
            "serve",
            "--backend-url",
            "http://127.0.0.1:9/v1",
            "--port",
            "0",
            "--db",
            "sqlite:///{tmp}/c.db",
        ],
        "--backend-url http://127.0.0.1:9/v1: cannot connect",
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
