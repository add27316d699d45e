"""Whole runs against a live scripted teacher: records kept and readable by `--format alpaca`,
metrics that add up, a byte-identical replay with the server gone, the same file at any
concurrency, the prompt shrinking when the teacher's context is too small."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from scripted_teacher import ScriptedTeacher

from kotune.config import GenerateConfig, SamplingConfig, TeacherConfig
from kotune.errors import KotuneError
from kotune.ingest import ingest
from kotune.selfinstruct.engine import request_seed
from kotune.selfinstruct.run import generate_files

SEEDS = Path(__file__).resolve().parents[2] / "data" / "raw" / "menu" / "seed_tasks.json"


def config(server, **options) -> GenerateConfig:
    teacher = TeacherConfig(base_url=server.base_url, model=server.model, backoff_s=0.01)
    base = {"enabled": True, "seeds": str(SEEDS), "n": 12, "round_size": 3, "teacher": teacher}
    return GenerateConfig(**{**base, **options})


def run(cfg: GenerateConfig, folder: Path, kiwi, cache: Path | None = None):
    out, metrics = folder / "gen.jsonl", folder / "metrics.json"
    result = generate_files(
        cfg, out, cache or folder / "cache", metrics, "EMPTY", show_progress=False, morphemes=kiwi
    )
    return result, out, json.loads(metrics.read_text(encoding="utf-8"))


def test_records_are_alpaca_and_the_metrics_add_up(tmp_path, kiwi, teacher):
    result, out, metrics = run(config(teacher), tmp_path, kiwi)
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 12 == metrics["kept"]
    assert all(list(r) == ["instruction", "input", "output"] for r in records)
    assert all(r["instruction"] and r["output"] for r in records)
    # `kotune ingest --format alpaca` reads the file unchanged
    conversations, stats = ingest("alpaca", [out], {})
    assert stats["conversations"] == 12
    assert conversations[0]["messages"][0]["content"].startswith(records[0]["instruction"])
    dropped = sum(v for k, v in metrics.items() if k.startswith("dropped_"))
    assert metrics["candidates"] == metrics["kept"] + metrics["surplus"] + dropped
    # the scripted teacher writes one photo task, one English task and one echo in every answer
    for reason in ("blacklist", "not_korean", "repeats_instruction"):
        assert metrics[f"dropped_{reason}"] == metrics["requests"]
    assert metrics["dropped_similar"] > 0  # its near-duplicates of the examples shown
    # a round's requests go out together: the ones after the 12th record were answered, not used
    assert metrics["requests"] <= len(teacher.requests) < metrics["requests"] + 3
    used = {request_seed(42, number) for number in range(metrics["requests"])}
    entries = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/*.json")]
    assert used <= {e["request"]["seed"] for e in entries}  # cancelled ones may be missing
    usage = [e["response"]["usage"] for e in entries if e["request"]["seed"] in used]
    assert metrics["total_tokens"] == sum(u["total_tokens"] for u in usage) > 0
    assert metrics["examples_per_prompt"] == 8 and metrics["prompt_shrinks"] == 0
    assert result.stopped == "12 records kept"


def test_each_request_shows_six_seeds_and_two_generated_tasks(tmp_path, kiwi, teacher):
    run(config(teacher, n=12), tmp_path, kiwi)
    seeds = {t["instruction"] for t in json.loads(SEEDS.read_text(encoding="utf-8"))}
    first, later = teacher.requests[0], teacher.requests[-1]

    def shown(request):
        content = request["messages"][0]["content"]
        return [line.split("지시: ", 1)[1] for line in content.splitlines() if ". 지시: " in line]

    assert len(shown(first)) == 8 and all(s in seeds for s in shown(first))
    assert len(shown(later)) == 8 and sum(s not in seeds for s in shown(later)) == 2
    assert len({r["seed"] for r in teacher.requests}) == len(teacher.requests)  # one per request


def test_a_rerun_replays_the_cache_byte_for_byte_without_a_server(tmp_path, kiwi):
    with ScriptedTeacher() as server:
        cfg = config(server)
        _, out, metrics = run(cfg, tmp_path / "first", kiwi, cache=tmp_path / "cache")
    # the server is gone: a replay must not need it
    replay, again, replay_metrics = run(cfg, tmp_path / "second", kiwi, cache=tmp_path / "cache")
    assert again.read_bytes() == out.read_bytes()
    assert replay_metrics == metrics
    assert replay.teacher is None and replay.replayed == metrics["requests"]


def test_concurrency_never_changes_the_records(tmp_path, kiwi, teacher):
    _, one, metrics_one = run(config(teacher, concurrency=1), tmp_path / "one", kiwi)
    with ScriptedTeacher(delay_s=0.05) as slow:  # answers come back in any order
        _, four, metrics_four = run(config(slow, concurrency=4), tmp_path / "four", kiwi)
    assert four.read_bytes() == one.read_bytes()
    assert metrics_four == metrics_one


def test_a_larger_n_continues_from_the_cache(tmp_path, kiwi, teacher):
    _, small, used = run(config(teacher, n=6), tmp_path / "small", kiwi, cache=tmp_path / "cache")
    asked = len(teacher.requests)
    _, large, _ = run(config(teacher, n=12), tmp_path / "large", kiwi, cache=tmp_path / "cache")
    assert large.read_text(encoding="utf-8").startswith(small.read_text(encoding="utf-8"))
    # no request the first run used was asked again (ones it cancelled at n may be)
    again = {r["seed"] for r in teacher.requests[asked:]}
    assert again and not again & {request_seed(42, i) for i in range(used["requests"])}


def test_max_requests_stops_first(tmp_path, kiwi, teacher):
    result, out, metrics = run(config(teacher, n=500, max_requests=4), tmp_path, kiwi)
    assert metrics["requests"] == 4 == len(teacher.requests)
    assert 0 < metrics["kept"] < 500 and result.stopped.startswith("4 requests")


@pytest.mark.parametrize("style", ["openai", "vllm"])
def test_a_prompt_too_long_shrinks_the_examples_by_a_fifth(tmp_path, kiwi, style):
    # 960 tokens hold the requirements, 4 shipped examples (607–757 tokens) and 200 new tokens,
    # never 8 examples (864+), sometimes 6 (752–943)
    with ScriptedTeacher(context_tokens=960, context_style=style) as server:
        # one request at a time, so that the server sees each shrink right after its refusal
        cfg = config(server, n=12, round_size=1, sampling=SamplingConfig(max_tokens=200))
        _, out, metrics = run(cfg, tmp_path, kiwi, cache=tmp_path / "cache")
        chats = [(r["messages"][0]["content"].count("###\n") - 1) for r in server.requests]
        statuses = [s for s in server.statuses[1:]]  # after GET /models
    assert chats[0] == 8 and statuses[0] == 400 and chats[1] == 6  # 8 × 0.8 = 6
    assert all(k in (4, 6) for k, status in zip(chats, statuses) if status == 200)
    assert metrics["prompt_shrinks"] == statuses.count(400) >= 2
    assert metrics["examples_per_prompt"] in (4, 6) and metrics["kept"] == 12
    first_answer = statuses.index(200)
    assert max(chats[first_answer + 1 :]) == chats[first_answer]  # later ones start shrunk
    # the refusals are cached too: the replay shrinks the same way with no server
    _, again, replay_metrics = run(cfg, tmp_path / "replay", kiwi, cache=tmp_path / "cache")
    assert again.read_bytes() == out.read_bytes() and replay_metrics == metrics


def test_max_tokens_shrinks_once_one_example_does_not_fit(tmp_path, kiwi):
    # 1,000 tokens: one example (373–453 tokens) fits only with max_tokens <= ~550
    with ScriptedTeacher(context_tokens=1000) as server:
        cfg = config(server, n=4, concurrency=1, round_size=1)
        _, out, metrics = run(cfg, tmp_path, kiwi)
        sent = [
            (r["messages"][0]["content"].count("###\n") - 1, r["max_tokens"])
            for r in server.requests
        ]
    examples = [k for k, _ in sent[:6]]
    assert examples == [8, 6, 4, 3, 2, 1] and {t for _, t in sent[:6]} == {3072}
    tokens = [t for _, t in sent[6:]]
    assert tokens[:4] == [2457, 1965, 1572, 1257]  # × 0.8 from Alpaca's 3072
    assert metrics["max_tokens"] == tokens[-1] < 600 and metrics["examples_per_prompt"] == 1
    assert metrics["kept"] == 4


def test_a_context_too_small_for_anything_is_one_line(tmp_path, kiwi):
    with (
        ScriptedTeacher(context_tokens=10) as server,
        pytest.raises(KotuneError, match="cannot hold one example and 64 new tokens"),
    ):
        run(config(server, sampling=SamplingConfig(max_tokens=100)), tmp_path, kiwi)
    assert not (tmp_path / "gen.jsonl").exists()  # nothing applied, nothing written


def test_a_teacher_failing_mid_run_keeps_the_records_so_far(tmp_path, kiwi, teacher):
    cfg = replace(config(teacher, n=500), teacher=replace(config(teacher).teacher, max_retries=1))
    original = teacher.respond

    def failing_after_four(method, path, headers, body):
        if method == "POST" and len(teacher.requests) >= 4:
            teacher.requests.append(body)
            return 503, {}, {"error": {"message": "down", "type": "server_error", "code": None}}
        return original(method, path, headers, body)

    teacher.respond = failing_after_four
    with pytest.raises(KotuneError, match="still failing after 1 retries: 503"):
        run(cfg, tmp_path, kiwi)
    records = (tmp_path / "gen.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(records) > 0  # from the 4 requests answered before the server went down


def test_penalties_are_sent_only_when_set(tmp_path, kiwi):
    """A server without penalties (kotune serve refuses them by name) works on the defaults; a
    penalty it cannot honour is its one-line refusal, not a silent change."""
    with ScriptedTeacher(refuse_penalties=True) as server:
        run(config(server, n=2), tmp_path / "defaults", kiwi)
        assert all(
            "presence_penalty" not in r and "frequency_penalty" not in r for r in server.requests
        )
        penalised = config(server, n=2, sampling=SamplingConfig(presence_penalty=2.0))
        with pytest.raises(
            KotuneError, match="refused the request .400: 'presence_penalty' is not supported"
        ):
            run(penalised, tmp_path / "penalised", kiwi)
        assert server.requests[-1]["presence_penalty"] == 2.0


def test_a_stopped_runs_answers_survive_their_cache_being_reset(tmp_path, kiwi, teacher):
    """As under `dvc exp run`, which checks the cache out as dvc.lock had it before the stage
    runs again: the answers kept in `unfinished` come back; the folder goes once a run ends."""
    cfg = replace(config(teacher, n=500), teacher=replace(config(teacher).teacher, max_retries=0))
    cfg = replace(cfg, concurrency=1)  # one at a time: exactly 4 answered before the failure
    original = teacher.respond

    def failing_after_four(method, path, headers, body):
        if method == "POST" and len(teacher.requests) >= 4:
            teacher.requests.append(body)
            return 503, {}, {"error": {"message": "down", "type": "server_error", "code": None}}
        return original(method, path, headers, body)

    teacher.respond = failing_after_four
    unfinished = tmp_path / "unfinished"
    with pytest.raises(KotuneError, match="503"):
        generate_files(cfg, tmp_path / "a.jsonl", tmp_path / "cache", None, "EMPTY", False, kiwi,
                       unfinished)  # fmt: skip
    kept = sorted(p.name for p in unfinished.rglob("*.json"))
    assert len(kept) == 4 and kept == sorted(p.name for p in (tmp_path / "cache").rglob("*.json"))
    shutil.rmtree(tmp_path / "cache")  # what DVC's checkout does to an output it has no hash of

    teacher.respond = original
    cfg = replace(cfg, n=12)
    asked = len(teacher.requests)
    resumed = generate_files(cfg, tmp_path / "b.jsonl", tmp_path / "cache", None, "EMPTY", False,
                             kiwi, unfinished)  # fmt: skip
    assert resumed.replayed == 4 and len(teacher.requests) - asked == resumed.requests - 4
    assert not unfinished.exists()
    # the same records as a run that was never stopped
    with ScriptedTeacher() as fresh:
        whole, out, _ = run(replace(cfg, teacher=config(fresh).teacher), tmp_path / "c", kiwi)
    assert (tmp_path / "b.jsonl").read_bytes() == out.read_bytes() and len(whole.kept) == 12
