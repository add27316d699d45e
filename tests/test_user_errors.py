"""Every user error the README promises as one line, in one table: exit 2, `kotune: error: …`
naming the file / line / field or flag, no traceback, no partial output, the user's files intact.

Each case: (id, files to create {name: bytes|str}, argv with `{tmp}` for the case's folder,
expected text in the message, paths (relative to {tmp}) that must NOT exist afterwards).
Sections are kept apart so that work on different parts adds rows in its own place.
"""

from __future__ import annotations

import hashlib
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
COMMAND_CASES: list = []

# --- chat, serve and adapters ----------------------------------------------------------------
ADAPTER_CASES: list = []

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
