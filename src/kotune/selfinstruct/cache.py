"""Every request and its answer on disk, one JSON file each, named by the request's hash.

The key is the whole request as sent (model, messages, sampling parameters, the per-request
seed), so a rerun with the same options replays without a server and a changed option asks
again. Files are written atomically: a run killed at any point leaves only whole entries.

`keep`: a second folder every answer is also written to, outside DVC's outputs. `dvc exp run`
checks its outputs out as dvc.lock recorded them before it runs a stage, which would remove the
answers of a stopped run from the cache; they come back from `keep` when asked for, and once a
run finishes the rest join the cache and the folder goes (DVC records the cache from then on).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from kotune.files import atomic_file


def request_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """`root/ab/abcd….json` holds {"request": …, "response": …} or {"request": …, "error": …}."""

    def __init__(self, root: str | Path, keep: str | Path | None = None) -> None:
        self.root = Path(root)  # created with the first entry: a failed start leaves nothing
        self.keep = Path(keep) if keep is not None else None

    def path(self, key: str, root: Path | None = None) -> Path:
        return (root or self.root) / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> dict[str, Any] | None:
        key = request_key(request)
        entry = _read(self.path(key), request)
        if entry is None and self.keep is not None:
            entry = _read(self.path(key, self.keep), request)
            if entry is not None:  # a stopped run's answer: back into the cache
                _write(self.path(key), entry)
        return entry

    def put(self, request: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"request": request, **entry}
        key = request_key(request)
        _write(self.path(key), entry)
        if self.keep is not None:
            _write(self.path(key, self.keep), entry)
        return entry

    def drop_kept(self) -> None:
        """The run finished: answers it did not need (a stopped run that had gone further) join
        the cache too, which DVC records from now on; the folder goes."""
        if self.keep is None or not self.keep.is_dir():
            return
        for kept in sorted(self.keep.glob("*/*.json")):
            target = self.root / kept.parent.name / kept.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(kept, target)
        shutil.rmtree(self.keep, ignore_errors=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))


def _read(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # not written by kotune (writes are atomic): ask again, overwrite it
    if entry.get("request") != request:  # a hash collision or a hand-edited file
        return None
    return entry


def _write(path: Path, entry: dict[str, Any]) -> None:
    text = json.dumps(entry, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
