"""Benchmark (not a test): ingest + clean (+ split) of a KakaoTalk export the size of the seed's
(93 MB), on this machine's CPU. Reports seconds per step, MB/s and peak memory.

    python bench/ingest_clean_speed.py                 # 93 MB, Kiwi names off (the default path)
    python bench/ingest_clean_speed.py --mb 10 --kiwi  # the Kiwi-names option's cost, separately

The export is the sample's conversation (data/raw/kakaotalk/) repeated with its dates shifted,
rendered as Android writes it. Each measurement runs in a fresh child process so that its peak
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
    from kotune.formats.kakaotalk import LAYOUTS, parse_text_export

    lines = SAMPLE.read_text(encoding="utf-8-sig").replace("\r\n", "\n").split("\n")
    from collections import Counter

    messages = parse_text_export(lines, LAYOUTS[0], str(SAMPLE), Counter())
    span = messages[-1].when - messages[0].when + timedelta(days=1)
    header = "민지 님과 카카오톡 대화\r\n저장한 날짜 : 2024년 3월 2일 오후 9:15\r\n\r\n"
    written, count, shift = 0, 0, timedelta(0)
    with path.open("wb") as out:
        out.write(b"\xef\xbb\xbf" + header.encode())
        while written < target_bytes:
            chunk = []
            for message in messages:
                when: datetime = message.when + shift
                body = "\r\n".join(message.lines)
                chunk.append(f"{korean_stamp(when)}, {message.speaker} : {body}\r\n")
            data = "".join(chunk).encode("utf-8")
            out.write(data)
            written += len(data)
            count += len(messages)
            shift += span
    return path.stat().st_size, count


CHILD = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
from kotune.cleaning import clean_dataset
from kotune.config import CleanConfig, PiiConfig
from kotune.files import write_jsonl
from kotune.ingest import ingest
from kotune.splitting import split_by_conversation

export, kiwi_names = Path(sys.argv[1]), sys.argv[2] == "1"
out = Path(tempfile.mkdtemp())
times = {}
t = time.perf_counter()
records, stats = ingest("kakaotalk", [export], {"me": "회원님"})
write_jsonl(out / "conversations.jsonl", records)
times["ingest_s"] = time.perf_counter() - t
t = time.perf_counter()
kiwi = None
if kiwi_names:
    from kiwipiepy import Kiwi
    kiwi = Kiwi()
kept, counts, audit = clean_dataset(records, CleanConfig(), PiiConfig(kiwi_names=kiwi_names), ["박준호"], kiwi)
write_jsonl(out / "clean.jsonl", kept)
write_jsonl(out / "pii_audit.jsonl", audit)
times["clean_s"] = time.perf_counter() - t
t = time.perf_counter()
train, test, _ = split_by_conversation(kept, 0.1, 42)
write_jsonl(out / "train.jsonl", train)
write_jsonl(out / "test.jsonl", test)
times["split_s"] = time.perf_counter() - t
times["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
times["conversations"] = len(kept)
times["masked"] = sum(v for k, v in counts.items() if k.startswith("masked_"))
print(json.dumps(times))
"""


def measure(export: Path, kiwi: bool) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(export), "1" if kiwi else "0"],
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
        export = Path(tmp) / "KakaoTalkChats.txt"
        start = time.perf_counter()
        size, messages = make_export(export, int(args.mb * 1_000_000))
        print(
            f"made a {size / 1e6:.1f} MB export of {messages:,} messages in {time.perf_counter() - start:.1f} s"
        )
        result = measure(export, args.kiwi)
    mb = size / 1e6
    steps = result["ingest_s"] + result["clean_s"]
    print("| export | kiwi names | ingest s | clean s | split s | ingest+clean MB/s | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {mb:.1f} MB | {'on' if args.kiwi else 'off'} | {result['ingest_s']:.1f} | "
        f"{result['clean_s']:.1f} | {result['split_s']:.1f} | {mb / steps:.2f} | "
        f"{result['peak_rss_mib']:.0f} |"
    )
    print(f"{result['conversations']:,} conversations kept, {result['masked']:,} PII spans masked")


if __name__ == "__main__":
    main()
