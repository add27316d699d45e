"""The `kotune` command on good and bad input: one clear line, exit 2, no partial output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

KOTUNE = str(Path(sys.executable).with_name("kotune"))


def run(*args, stdin=None, cwd=None):
    return subprocess.run(
        [KOTUNE, *map(str, args)], capture_output=True, text=True, input=stdin, cwd=cwd, timeout=300
    )


def test_ingest_writes_conversations(tmp_path, root):
    out = tmp_path / "conv.jsonl"
    result = run(
        "ingest", "--format", "mencius", root / "tests/fixtures/mencius_small.json", "-o", out
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 16 and lines[0]["messages"][0]["role"] == "user"
    assert json.loads(result.stderr.strip().splitlines()[-1])["examples"] == 24


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"qa": [\n  {"id": "a", "question": "q", "answer": "a"},\n  {"id": "b" "question": "q"}\n]}',
            "bad.json:3: invalid JSON at column",
        ),
        (
            '{"qa": [{"id": "a", "question": "q"}]}',
            "bad.json: qa[0] (id a): missing field 'answer'",
        ),
        ('{"qa": [], "dialogues": []}', "no conversations found"),
    ],
)
def test_ingest_bad_input_is_one_line_and_leaves_no_output(tmp_path, content, message):
    source, out = tmp_path / "bad.json", tmp_path / "out.jsonl"
    source.write_text(content, encoding="utf-8")
    result = run("ingest", "--format", "mencius", source, "-o", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kotune: error: ") and message in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_clean_names_the_broken_line(tmp_path):
    source, out = tmp_path / "conv.jsonl", tmp_path / "clean.jsonl"
    good = {
        "id": "a",
        "conversation_id": "a",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }
    source.write_text(json.dumps(good) + "\n" + '{"id": "b",\n', encoding="utf-8")
    result = run("clean", source, "-o", out)
    assert result.returncode == 2 and f"{source}:2: invalid JSON" in result.stderr
    assert not out.exists()
    source.write_text(
        json.dumps(good) + "\n" + json.dumps({"id": "b", "messages": []}) + "\n", encoding="utf-8"
    )
    result = run("clean", source, "-o", out)
    assert (
        result.returncode == 2 and f"{source}:2: missing field 'conversation_id'" in result.stderr
    )


def test_clean_runs_the_stage_cleaning(tmp_path):
    source, out = tmp_path / "conv.jsonl", tmp_path / "clean.jsonl"
    record = {
        "id": "a",
        "conversation_id": "a",
        "messages": [
            {"role": "user", "content": "  맹자는  "},
            {"role": "assistant", "content": "사상가요"},
        ],
    }
    source.write_text(
        json.dumps(record) + "\n" + json.dumps({**record, "id": "b", "conversation_id": "b"}) + "\n"
    )
    result = run("clean", source, "-o", out, "--params", tmp_path / "none.yaml")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["a"] and kept[0]["messages"][0]["content"] == "맹자는"
    assert (
        json.loads(result.stderr.strip().splitlines()[-1])["dropped_conversations_duplicate"] == 1
    )


def test_score_reads_prediction_reference_lines(tmp_path):
    path = tmp_path / "preds.jsonl"
    rows = [
        {"prediction": "인은 사람의 마음이오.", "reference": "인은 사람의 마음이오."},
        {"prediction": "모르겠소.", "reference": "의는 사람의 길이오."},
    ]
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    result = run("score", path)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["scored"] == 2 and 0 < scores["rouge1_kiwi"] < 100
    path.write_text(json.dumps({"prediction": "x"}) + "\n")
    result = run("score", path)
    assert result.returncode == 2 and f"{path}:1: missing field 'reference'" in result.stderr


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_chat_with_a_wrong_folder_is_one_clear_line(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    result = run("chat", "--adapter", tmp_path / folder, stdin="안녕\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("kotune: error: ")


def run_stage(root, tmp_path, params: dict, *args):
    import yaml

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True), encoding="utf-8"
    )
    return subprocess.run(
        [sys.executable, str(root / "stages/ingest.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_stage_with_a_bad_param_stops_before_any_work(root, tmp_path):
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["lora"]["r"] = 0
    result = run_stage(root, tmp_path, params, "--out", "conv.jsonl", "--metrics", "m.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "kotune: error: params.yaml: train.lora.r must be > 0, got 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_stage_with_a_broken_data_file_names_it_and_writes_nothing(root, tmp_path):
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    raw = tmp_path / "data/raw/mencius"
    raw.mkdir(parents=True)
    (raw / "a.json").write_text(
        '{"qa": [{"id": "x", "question": "q", "answer": "a"}]}', encoding="utf-8"
    )
    (raw / "b.json").write_text(
        '{"qa": [\n{"id": "y", "question": "q", "answer": "a"},\n]}', encoding="utf-8"
    )
    result = run_stage(root, tmp_path, params, "--out", "out/conv.jsonl", "--metrics", "out/m.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data/raw/mencius/b.json:3: invalid JSON" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ingest_kakaotalk_with_me_and_an_unknown_me(tmp_path, root):
    export = root / "tests/fixtures/kakaotalk/android_ko.txt"
    out = tmp_path / "conv.jsonl"
    result = run(
        "ingest",
        "--format",
        "kakaotalk",
        "--me",
        "회원님",
        "--gap-minutes",
        "60",
        export,
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert stats["skipped_photo"] == 1 and stats["layout_android_ko"] == 1
    result = run(
        "ingest", "--format", "kakaotalk", "--me", "철수", export, "-o", tmp_path / "x.jsonl"
    )
    assert result.returncode == 2 and "speakers found: 민지 (6), 회원님 (5)" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()
