"""Render chat messages as a KakaoTalk Android (Korean UI) export: the sample in
data/raw/kakaotalk/ was made this way, and the ingest/clean benchmark makes its large exports so.

    python bench/kakaotalk_export.py messages.jsonl --partner 민지 --me 준호 -o KakaoTalkChats.txt

Input: JSON lines `{"date": "2024-03-04", "time": "21:15", "speaker": "민지" | null, "text": …}`
(speaker null: a system notice). Output: UTF-8 with BOM and CRLF line ends, as Android writes it;
the exporting user (`--me`) appears as 회원님.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path


def korean_time(when: datetime) -> str:
    """오전/오후 h:mm with 12-hour clock: 00:15 → 오전 12:15, 12:30 → 오후 12:30."""
    meridiem = "오전" if when.hour < 12 else "오후"
    return f"{meridiem} {when.hour % 12 or 12}:{when.minute:02d}"


def korean_stamp(when: datetime) -> str:
    return f"{when.year}년 {when.month}월 {when.day}일 {korean_time(when)}"


def render_android_ko(
    messages: Iterable[dict], partner: str, me: str, saved: datetime
) -> Iterator[str]:
    """Lines of the export (without line ends)."""
    yield f"{partner} 님과 카카오톡 대화"
    yield f"저장한 날짜 : {korean_stamp(saved)}"
    yield ""
    day = None
    for message in messages:
        when = datetime.fromisoformat(f"{message['date']}T{message['time']}")
        if when.date() != day:
            day = when.date()
            yield korean_stamp(when)
        if message["speaker"] is None:
            yield f"{korean_stamp(when)}, {message['text']}"
            continue
        name = "회원님" if message["speaker"] == me else message["speaker"]
        yield f"{korean_stamp(when)}, {name} : {message['text']}"


def write_export(lines: Iterable[str], path: Path) -> int:
    """Write with BOM and CRLF; returns the bytes written."""
    data = "".join(line.replace("\n", "\r\n") + "\r\n" for line in lines).encode("utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + data)
    return len(data) + 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", type=Path, nargs="+")
    parser.add_argument("--partner", required=True)
    parser.add_argument("--me", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    messages = [
        json.loads(line)
        for path in args.messages
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    last = datetime.fromisoformat(f"{messages[-1]['date']}T{messages[-1]['time']}")
    size = write_export(render_android_ko(messages, args.partner, args.me, last), args.output)
    print(f"{args.output}: {len(messages)} messages, {size:,} bytes")


if __name__ == "__main__":
    main()
