"""The ingest step: read the user's files in their format, return conversation records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotune.errors import DataError
from kotune.files import read_json
from kotune.formats import PARSERS
from kotune.records import check_record, count_messages


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


def ingest(
    fmt: str, paths: list[str | Path], options: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Parse every input file; returns the records and flat counts for metrics/ingest.json."""
    if fmt not in PARSERS:
        raise DataError(f"unknown format '{fmt}' (known: {', '.join(PARSERS)})")
    suffixes, parse = PARSERS[fmt]
    files = [f for p in paths for f in input_files(p, suffixes)]
    records: list[dict[str, Any]] = []
    for file in files:
        records.extend(parse(read_json(file), file.name, options))
    if not records:
        raise DataError(f"{', '.join(map(str, paths))}: no conversations found")
    seen: dict[str, str] = {}
    for record in records:
        check_record(record, f"{record['meta'].get('file', '?')}: {record['id']}")
        if record["id"] in seen:
            raise DataError(f"duplicate record id '{record['id']}' (in {seen[record['id']]})")
        seen[record["id"]] = record["meta"].get("file", "?")
    stats = {"files": len(files), **count_messages(records)}
    for record in records:
        kind = record.get("meta", {}).get("kind")
        if kind:
            stats[f"kind_{kind}"] = stats.get(f"kind_{kind}", 0) + 1
    return records, stats
