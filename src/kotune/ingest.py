"""The ingest step: read the user's files in their format, return conversation records."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kotune.errors import DataError
from kotune.files import paused_gc, read_json, read_jsonl
from kotune.formats import FORMATS
from kotune.records import check_record, count_messages

if TYPE_CHECKING:
    from kotune.config import DataSourceConfig, GenerateConfig


def input_files(path: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """`path` itself, or the files under it with one of `suffixes`, in sorted order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{path}: no {'/'.join(suffixes)} files found")
    return files


def read_text(path: Path) -> tuple[str, str]:
    """Decoded text and its encoding: UTF-8 (BOM or not), else CP949 (older Windows exports)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            text = data.decode("cp949")
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: neither UTF-8 nor CP949 text (UTF-8 fails at byte {utf8_error.start})"
            ) from None
        print(f"kotune: {path}: not UTF-8, read as CP949", file=sys.stderr)
        return text, "cp949"


def read_document(path: Path) -> tuple[Any, str]:
    """What a parser receives for this file (see kotune.formats) and the text encoding."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json(path), "utf-8"
    if suffix == ".jsonl":
        return list(read_jsonl(path)), "utf-8"
    return read_text(path)


def ingest(
    fmt: str, paths: list[str | Path], options: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Parse every input file; returns the records and flat counts for metrics/ingest.json."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    parser = FORMATS[fmt]
    files = [f for p in paths for f in input_files(p, parser.suffixes)]
    records: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    with paused_gc():
        for file in files:
            document, encoding = read_document(file)
            skipped[f"files_{encoding.replace('-', '')}"] += 1
            found, counts = parser.parse(document, str(file), options)
            del document
            records.extend(found)
            skipped.update(counts)
    if not records:
        raise DataError(f"{', '.join(map(str, paths))}: no conversations found")
    seen: dict[str, str] = {}
    for record in records:
        where = f"{record['meta'].get('file', '?')}: {record['id']}"
        check_record(record, where)
        if record["id"] in seen:
            raise DataError(f"duplicate record id '{record['id']}' (in {seen[record['id']]})")
        seen[record["id"]] = record["meta"].get("file", "?")
    stats = {"files": len(files), **dict(skipped), **count_messages(records)}
    for record in records:
        kind = record.get("meta", {}).get("kind")
        if kind:
            stats[f"kind_{kind}"] = stats.get(f"kind_{kind}", 0) + 1
    return records, dict(sorted(stats.items()))


def ingest_persona(
    data: DataSourceConfig, generate: GenerateConfig, generated: str | Path | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The persona's records: persona.data's, or, when persona.generate is enabled, the
    self-instruct records in `generated` (Alpaca JSONL), alone or added to persona.data's."""
    if not generate.enabled:
        return ingest(data.format, [Path(data.path)], data.options)
    if generated is None:
        raise DataError("persona.generate.enabled is true but no generated records were given")
    records, stats = ingest("alpaca", [generated], {})
    stats = {**stats, "generated": len(records)}
    if generate.add_to_data:
        more, more_stats = ingest(data.format, [Path(data.path)], data.options)
        ids = {record["id"] for record in records}
        clash = next((r["id"] for r in more if r["id"] in ids), None)
        if clash is not None:
            raise DataError(f"record id '{clash}' is both in {generated} and in {data.path}")
        records += more
        totals: Counter = Counter(stats)
        totals.update(more_stats)
        stats = dict(totals)
    return records, dict(sorted(stats.items()))
