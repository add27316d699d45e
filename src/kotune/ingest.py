"""The ingest step: read the user's files in their format, return conversation records."""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kotune.config import build_section
from kotune.errors import ConfigError, DataError, OptionError
from kotune.files import (
    atomic_file,
    dumps_jsonl_line,
    paused_gc,
    read_json,
    read_jsonl,
    write_jsonl,
)
from kotune.formats import FORMATS, Format
from kotune.records import count_messages

# How errors name what the user set: params keys in the stage, flags on the command line.
PARAMS_NAMES = {"format": "persona.data.format", "options": "persona.data.options"}
JSON_SUFFIXES = (".json", ".jsonl")

if TYPE_CHECKING:
    from kotune.config import DataSourceConfig, GenerateConfig


def input_files(path: str | Path, fmt: Format, format_name: str) -> list[Path]:
    """`path` itself, or the files under it with one of the format's suffixes, sorted. A file
    named alone must be what the format reads: JSON for the JSON formats, text (any suffix but
    .json/.jsonl) for the others."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if fmt.reads == "json" and suffix not in fmt.suffixes:
            others = [f.name for f in FORMATS.values() if suffix in f.suffixes]
            hint = (
                f"; for a {suffix} file try {format_name} {' or '.join(others)}" if others else ""
            )
            raise DataError(
                f"{path}: the {fmt.name} format ({format_name}) reads "
                f"{' or '.join(fmt.suffixes)} files{hint}"
            )
        if fmt.reads == "text" and suffix in JSON_SUFFIXES:
            others = [f.name for f in FORMATS.values() if suffix in f.suffixes]
            raise DataError(
                f"{path}: a {suffix} file, but the {fmt.name} format ({format_name}) reads "
                f"exports as text ({' or '.join(fmt.suffixes)}); for JSON data try "
                f"{format_name} {' or '.join(others)}"
            )
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in fmt.suffixes)
    if not files:
        raise DataError(f"{path}: no {'/'.join(fmt.suffixes)} files found")
    return files


_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MAGIC = {  # what people pick up by mistake instead of the export's text
    b"PK\x03\x04": "a ZIP archive (exports with media come zipped): unzip it and give the .txt",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"SQLite format 3\x00": "an SQLite database (KakaoTalk's own store): export the chat as text",
}


def _wide_encoding(sample: bytes) -> str | None:
    """UTF-16/32 without a BOM, told by where its NUL bytes fall: every character below U+0100
    (digits, spaces, line ends: plenty in any export) has a NUL high byte, and in UTF-32 every
    character of the Basic Multilingual Plane has two."""
    size = len(sample) // 4 * 4
    if size < 16:
        return None

    def nul_share(offset: int, step: int) -> float:
        positions = range(offset, size, step)
        return sum(1 for i in positions if sample[i] == 0) / len(positions)

    if nul_share(3, 4) > 0.95 and nul_share(2, 4) > 0.5:
        return "utf-32-le"
    if nul_share(0, 4) > 0.95 and nul_share(1, 4) > 0.5:
        return "utf-32-be"
    if nul_share(1, 2) > 0.15 and nul_share(0, 2) < 0.05:
        return "utf-16-le"
    if nul_share(0, 2) > 0.15 and nul_share(1, 2) < 0.05:
        return "utf-16-be"
    return None


def read_text(path: Path) -> tuple[str, str]:
    """Decoded text with `\\n` line ends, and its encoding: UTF-8 (BOM or not); UTF-16 or UTF-32
    (BOM, or told by its NUL bytes); else CP949 (older Windows exports). Binary data is an error
    naming what it is."""
    text, encoding = _read_text(path)
    if "\r" in text:  # here, once: the text of a 93 MB export is 80 MB, each copy counts
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding


def _read_text(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data, encoding, path), encoding.replace("-sig", "")
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            raise DataError(f"{path}: not text but {what}")
    wide = _wide_encoding(data[:4096])
    if wide:
        return _decode(data, wide, path), wide[:6]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}: binary data, not text (a NUL byte at byte {nul}); "
            "KakaoTalk exports are .txt or .csv text files"
        )
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            text = data.decode("cp949")
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: neither UTF-8, UTF-16/32 nor CP949 text (UTF-8 fails at byte "
                f"{utf8_error.start}); save it as UTF-8 and try again"
            ) from None
        return text, "cp949"  # said in the summary line and counted (files_cp949)


def _decode(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: looks like {encoding.upper()} text but byte {error.start} is not"
        ) from None


def read_document(path: Path, fmt: Format) -> tuple[Any, str]:
    """What the parser receives for this file (see kotune.formats) and the text encoding."""
    if fmt.reads == "text":
        return read_text(path)
    if path.suffix.lower() == ".json":
        return read_json(path), "utf-8"
    return list(read_jsonl(path)), "utf-8"


def build_options(fmt: Format, options: dict[str, Any], names: dict[str, str]) -> Any:
    """The format's typed options, checked once (unknown keys, types, bounds)."""
    prefix = names.get("options", PARAMS_NAMES["options"])
    if fmt.options is None:
        if options:
            given = ", ".join(names.get(key, key) for key in sorted(options))
            raise ConfigError(f"{prefix}: the {fmt.name} format takes none, got {given}")
        return None
    return build_section(fmt.options, options, prefix, names)


def ingest_file(
    fmt: str,
    paths: list[str | Path],
    options: dict[str, Any],
    out: str | Path,
    names: dict[str, str] | None = None,
    workers: int | None = None,
) -> dict[str, int]:
    """Parse every input file into conversation records written to `out` (JSONL, atomically);
    returns flat counts for metrics/ingest.json. `names`: how errors call the format, the options
    and each option (default: params keys). `workers`: processes for a large KakaoTalk export
    (default: every core, one per 4 M characters at most); the output is the same on any number."""
    names = {**PARAMS_NAMES, **(names or {})}
    if fmt not in FORMATS:
        raise DataError(f"{names['format']}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    parser = FORMATS[fmt]
    opts = build_options(parser, options, names)
    files = [f for p in paths for f in input_files(p, parser, names["format"])]
    stats: Counter = Counter(files=len(files))
    seen: dict[str, str] = {}
    with paused_gc(), atomic_file(out) as tmp, tmp.open("wb") as handle:
        for file in files:
            document, encoding = read_document(file, parser)
            stats[f"files_{encoding.replace('-', '')}"] += 1
            try:
                ids, counts = _convert(
                    parser, document, str(file), opts, workers, handle.writelines
                )
            except OptionError as error:
                key = names.get(error.key, f"{names['options']}.{error.key}")
                raise DataError(f"{key} {error.detail}") from None
            except DataError as error:
                if encoding == "utf-8":
                    raise
                raise DataError(f"{error} (the file was read as {encoding.upper()})") from None
            del document
            for record_id in ids:
                if record_id in seen:
                    raise DataError(f"duplicate record id '{record_id}' (in {seen[record_id]})")
                seen[record_id] = str(file)
            stats.update(counts)
        if not seen:
            said = describe(dict(stats))
            raise DataError(
                f"{', '.join(map(str, paths))}: no conversations found{f' ({said})' if said else ''}"
            )
    for key in ("conversations", "messages", "examples", "user_turns", "assistant_turns"):
        stats.setdefault(key, 0)
    stats.setdefault("system_turns", 0)
    return dict(sorted(stats.items()))


def _convert(
    parser: Format, document: Any, source: str, opts: Any, workers: int | None, write
) -> tuple[list[str], Counter]:
    """One file's records as JSON lines given to `write`; their ids, and counts."""
    if parser.convert is not None:
        if workers is None:
            workers = default_workers(len(document) if isinstance(document, str) else 0)
        _, ids, counts = parser.convert(document, source, opts, workers, write)
        return ids, Counter(counts)
    records, counts = parser.parse(document, source, opts)
    counts = Counter(counts)
    counts.update(count_messages(records))
    for record in records:
        counts[f"kind_{record['meta'].get('kind', parser.name)}"] += 1
    write([dumps_jsonl_line(record).encode() for record in records])
    return [record["id"] for record in records], counts


def default_workers(chars: int, min_chars: int = 4_000_000) -> int:
    """Every core this process may use, but one per `min_chars` of text at most."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, chars // min_chars))


def ingest(
    fmt: str, paths: list[str | Path], options: dict[str, Any], names: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """ingest_file, with the records in memory (small data and tests)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "conversations.jsonl"
        stats = ingest_file(fmt, paths, options, out, names, workers=1)
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return records, stats


def ingest_persona(
    data: DataSourceConfig, generate: GenerateConfig, generated: str | Path | None, out: Path
) -> dict[str, int]:
    """The persona's records into `out`: persona.data's, or, when persona.generate is enabled,
    the self-instruct records in `generated` (Alpaca JSONL), alone or added to persona.data's."""
    if not generate.enabled:
        return ingest_file(data.format, [Path(data.path)], data.options, out)
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
    write_jsonl(out, records)
    return dict(sorted(stats.items()))


def describe(stats: dict[str, int]) -> str:
    """What was skipped and how files were read, in words, for the one summary line on stderr:
    `1 file read as CP949; skipped 3 system notices, 2 photo`."""
    said = []
    for key, n in sorted(stats.items()):
        if n and key.startswith("files_") and key != "files_utf8":
            said.append(f"{n} file{'s' * (n > 1)} read as {key.removeprefix('files_').upper()}")
    skipped = [
        f"{n} {key.removeprefix('skipped_').replace('_', ' ')}"
        for key, n in sorted(stats.items())
        if n and key.startswith("skipped_")
    ]
    if skipped:
        said.append("skipped " + ", ".join(skipped))
    return "; ".join(said)
