"""Benchmark (not a test): ingest + clean (+ split) of a KakaoTalk export the size of the seed's
(93 MB), on this machine's CPU. Reports seconds per step, MB/s and peak memory.

    python bench/ingest_clean_speed.py                 # 93 MB, Kiwi names off (the default path)
    python bench/ingest_clean_speed.py --mb 10 --kiwi  # the Kiwi-names option's cost, separately

The export is the sample's conversation (data/raw/kakaotalk/) repeated with its dates shifted
and a counter in every fifth message (so that dedupe cannot collapse the repeats), rendered as
Android writes it. Each measurement runs in a fresh child process so that its peak
resident memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
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

    from kotune.formats.kakaotalk import LAYOUTS, iter_lines, parse_text_export

    text = SAMPLE.read_text(encoding="utf-8-sig")
    messages = parse_text_export(iter_lines(text), LAYOUTS[0], str(SAMPLE), Counter())
    span = messages[-1].when - messages[0].when + timedelta(days=1)
    header = "민지 님과 카카오톡 대화\r\n저장한 날짜 : 2024년 3월 2일 오후 9:15\r\n\r\n"
    written, count, shift, round_ = 0, 0, timedelta(0), 0
    with path.open("wb") as out:
        out.write(b"\xef\xbb\xbf" + header.encode())
        while written < target_bytes:
            chunk = []
            round_ += 1
            for k, message in enumerate(messages):
                when: datetime = message.when + shift
                body = message.body.replace("\n", "\r\n")
                if k % 5 == 0 and not body.startswith(
                    ("사진", "이모티콘", "동영상", "파일", "삭제된")
                ):
                    body += f" {round_}"  # every repetition's text differs: dedupe keeps it
                chunk.append(f"{korean_stamp(when)}, {message.speaker} : {body}\r\n")
            data = "".join(chunk).encode("utf-8")
            out.write(data)
            written += len(data)
            count += len(messages)
            shift += span
    return path.stat().st_size, count


# Each step runs as its stage does: its own process, reading and writing files.
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
step, work, kiwi_names = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
t = time.perf_counter()
result = {}
if step == "ingest":
    from kotune.files import write_jsonl
    from kotune.ingest import ingest
    records, stats = ingest("kakaotalk", [work / "KakaoTalkChats.txt"], {"me": "회원님"})
    write_jsonl(work / "conversations.jsonl", records)
    result["conversations"] = len(records)
elif step == "clean":
    from kotune.cleaning import clean_dataset
    from kotune.config import CleanConfig, PiiConfig
    from kotune.files import paused_gc, read_jsonl, write_jsonl
    kiwi = None
    if kiwi_names:
        from kiwipiepy import Kiwi
        kiwi = Kiwi()
    with paused_gc():  # as stages/clean.py
        records = [r for _, r in read_jsonl(work / "conversations.jsonl")]
        kept, counts, audit = clean_dataset(records, CleanConfig(), PiiConfig(kiwi_names=kiwi_names), ["박준호"], kiwi)
        del records
    write_jsonl(work / "clean.jsonl", kept)
    write_jsonl(work / "pii_audit.jsonl", audit)
    result["kept"] = len(kept)
    result["masked"] = sum(v for k, v in counts.items() if k.startswith("masked_"))
else:
    from kotune.files import read_jsonl, write_jsonl
    from kotune.splitting import split_by_conversation
    train, test, _ = split_by_conversation([r for _, r in read_jsonl(work / "clean.jsonl")], 0.1, 42)
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "test.jsonl", test)
result["seconds"] = time.perf_counter() - t
result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def measure(step: str, work: Path, kiwi: bool) -> dict:
    """Seconds (imports excluded) and peak resident memory of one step in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(work), "1" if kiwi else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=93.0, help="export size in MB (the seed's: 93)")
    parser.add_argument("--kiwi", action="store_true", help="turn persona.pii.kiwi_names on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        size, messages = make_export(work / "KakaoTalkChats.txt", int(args.mb * 1_000_000))
        print(
            f"made a {size / 1e6:.1f} MB export of {messages:,} messages in {time.perf_counter() - start:.1f} s"
        )
        steps = {step: measure(step, work, args.kiwi) for step in ("ingest", "clean", "split")}
    mb = size / 1e6
    both = steps["ingest"]["seconds"] + steps["clean"]["seconds"]
    print(
        "| export | kiwi names | ingest s | clean s | split s | ingest+clean MB/s | peak MiB (ingest / clean / split) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {mb:.1f} MB | {'on' if args.kiwi else 'off'} | {steps['ingest']['seconds']:.1f} | "
        f"{steps['clean']['seconds']:.1f} | {steps['split']['seconds']:.1f} | {mb / both:.2f} | "
        f"{steps['ingest']['peak_mib']:.0f} / {steps['clean']['peak_mib']:.0f} / {steps['split']['peak_mib']:.0f} |"
    )
    print(
        f"{steps['ingest']['conversations']:,} conversations, {steps['clean']['kept']:,} kept, "
        f"{steps['clean']['masked']:,} PII spans masked"
    )


if __name__ == "__main__":
    main()
