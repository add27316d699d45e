"""Benchmark (not a test): ingest + clean (+ split) of a KakaoTalk export the size of the seed's
(93 MB), on this machine's CPU. Reports seconds per step, MB/s and peak memory.

    python bench/ingest_clean_speed.py --one-core      # 93 MB on all cores, then on one (same bytes?)
    python bench/ingest_clean_speed.py --mb 10 --kiwi  # the Kiwi-names option's cost, separately

The export is the sample's conversation (data/raw/kakaotalk/) repeated with its dates shifted
and a counter in every fifth message (so that dedupe cannot collapse the repeats), rendered as
Android writes it. Each measurement runs in a fresh child process; its peak memory is that
process's and its workers' proportional set size summed, sampled every 20 ms (a page the forked
workers share is counted once). The load average is printed before and after: other work on the machine slows the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from kakaotalk_export import korean_stamp  # noqa: E402

SAMPLE = ROOT / "data/raw/kakaotalk/KakaoTalkChats.txt"


def make_export(path: Path, target_bytes: int) -> tuple[int, int]:
    """Repeat the sample's message lines with dates shifted by its span until `target_bytes`."""
    from collections import Counter

    from kotune.formats.kakaotalk_layouts import LAYOUTS
    from kotune.formats.kakaotalk_lines import DAY_SECONDS, parse_text_export

    text = SAMPLE.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    messages = parse_text_export(text, LAYOUTS[0], str(SAMPLE), Counter())
    span = timedelta(seconds=messages[-1][0] - messages[0][0]) + timedelta(days=1)

    def as_datetime(seconds: int) -> datetime:
        return datetime.fromordinal(seconds // DAY_SECONDS) + timedelta(
            seconds=seconds % DAY_SECONDS
        )

    header = "민지 님과 카카오톡 대화\r\n저장한 날짜 : 2024년 3월 2일 오후 9:15\r\n\r\n"
    written, count, shift, round_ = 0, 0, timedelta(0), 0
    with path.open("wb") as out:
        out.write(b"\xef\xbb\xbf" + header.encode())
        while written < target_bytes:
            chunk = []
            round_ += 1
            for k, (seconds, speaker, body) in enumerate(messages):
                when = as_datetime(seconds) + shift
                body = body.strip("\n").replace("\n", "\r\n")
                if k % 5 == 0 and not body.startswith(
                    ("사진", "이모티콘", "동영상", "파일", "삭제된")
                ):
                    body += f" {round_}"  # every repetition's text differs: dedupe keeps it
                chunk.append(f"{korean_stamp(when)}, {speaker} : {body}\r\n")
            data = "".join(chunk).encode("utf-8")
            out.write(data)
            written += len(data)
            count += len(messages)
            shift += span
    return path.stat().st_size, count


# Each step runs as its stage does: its own process, reading and writing files.
CHILD = r"""
import json, os, resource, sys, threading, time
from pathlib import Path

peak = 0


def watch():
    # the peak of this process's and its workers' memory together, every 20 ms: proportional set
    # size (a page shared by the forked workers counts once, split between them)
    global peak
    me = str(os.getpid())
    while True:
        total = 0
        for pid in [me] + open(f"/proc/{me}/task/{me}/children").read().split():
            try:
                for line in open(f"/proc/{pid}/smaps_rollup"):
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        peak = max(peak, total)
        time.sleep(0.02)


threading.Thread(target=watch, daemon=True).start()
step, work, kiwi_names = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu_start = sum(u.ru_utime + u.ru_stime for u in usage)
t = time.perf_counter()
result = {}
if step == "ingest":
    from kotune.ingest import ingest_file
    workers = int(os.environ.get("KOTUNE_BENCH_WORKERS", "0")) or None
    stats = ingest_file(
        "kakaotalk", [work / "KakaoTalkChats.txt"], {"me": "회원님"},
        work / "conversations.jsonl", workers=workers,
    )
    result["conversations"] = stats["conversations"]
elif step == "clean":
    from kotune.cleaning import clean_file
    from kotune.config import CleanConfig, PiiConfig
    workers = int(os.environ.get("KOTUNE_BENCH_WORKERS", "0")) or None
    cleaned = clean_file(
        work / "conversations.jsonl", work / "clean.jsonl", work / "pii_audit.jsonl",
        CleanConfig(), PiiConfig(kiwi_names=kiwi_names), ["박준호"], workers,
    )
    result["kept"] = cleaned.stats["conversations_out"]
    result["masked"] = sum(v for k, v in cleaned.stats.items() if k.startswith("masked_"))
else:
    from kotune.files import write_jsonl
    from kotune.records import read_records
    from kotune.splitting import split_by_conversation
    train, test, _ = split_by_conversation(list(read_records(work / "clean.jsonl")), 0.1, 42)
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "test.jsonl", test)
result["seconds"] = time.perf_counter() - t
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
result["cpu"] = sum(u.ru_utime + u.ru_stime for u in usage) - cpu_start
time.sleep(0.05)
result["peak_mib"] = peak / 1024
print(json.dumps(result))
"""


def measure(step: str, work: Path, kiwi: bool, workers: int = 0) -> dict:
    """Seconds (imports excluded), CPU seconds and peak resident memory (the step's process and
    its workers together) of one step in a fresh process. workers 0: kotune's default."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(work), "1" if kiwi else "0"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KOTUNE_BENCH_WORKERS": str(workers)},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=93.0, help="export size in MB (the seed's: 93)")
    parser.add_argument("--kiwi", action="store_true", help="turn persona.pii.kiwi_names on")
    parser.add_argument(
        "--one-core",
        action="store_true",
        help="also run ingest and clean on one core, side by side",
    )
    args = parser.parse_args()
    print(f"load average before (1 / 5 / 15 min): {load()} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        size, messages = make_export(work / "KakaoTalkChats.txt", int(args.mb * 1_000_000))
        print(
            f"made a {size / 1e6:.1f} MB export of {messages:,} messages in {time.perf_counter() - start:.1f} s"
        )
        runs = {"all cores": {step: measure(step, work, args.kiwi) for step in ("ingest", "clean")}}
        outputs = {
            name: (work / name).read_bytes() for name in ("conversations.jsonl", "clean.jsonl")
        }
        split = measure("split", work, args.kiwi)
        if args.one_core:
            runs["one core"] = {
                step: measure(step, work, args.kiwi, 1) for step in ("ingest", "clean")
            }
            same = all((work / name).read_bytes() == data for name, data in outputs.items())
            print(f"one core and all cores wrote the same bytes: {same}")
    mb = size / 1e6
    print(f"load average after: {load()}")
    print(
        "| export | cores | Kiwi names | ingest s | clean s | ingest+clean s | split s | "
        "CPU s (ingest / clean) | peak MiB (ingest / clean / split) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cores, steps in runs.items():
        ingest, clean = steps["ingest"], steps["clean"]
        print(
            f"| {mb:.1f} MB | {cores} | {'on' if args.kiwi else 'off'} | {ingest['seconds']:.1f} | "
            f"{clean['seconds']:.1f} | {ingest['seconds'] + clean['seconds']:.1f} | "
            f"{split['seconds']:.1f} | {ingest['cpu']:.1f} / {clean['cpu']:.1f} | "
            f"{ingest['peak_mib']:.0f} / {clean['peak_mib']:.0f} / {split['peak_mib']:.0f} |"
        )
    steps = runs["all cores"]
    print(
        f"{steps['ingest']['conversations']:,} conversations, {steps['clean']['kept']:,} kept, "
        f"{steps['clean']['masked']:,} PII spans masked"
    )
    if "one core" in runs:
        one, all_ = runs["one core"], runs["all cores"]
        ratio = (one["ingest"]["seconds"] + one["clean"]["seconds"]) / (
            all_["ingest"]["seconds"] + all_["clean"]["seconds"]
        )
        print(f"all cores / one core, ingest + clean: {ratio:.2f}× faster")


if __name__ == "__main__":
    main()
