"""Every request and its answer on disk, one JSON file each, named by the request's hash.

The key is the whole request as sent (model, messages, sampling parameters, the per-request
seed), so a rerun with the same options replays without a server and a changed option asks
again. Files are written atomically: a run killed at any point leaves only whole entries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kotune.files import atomic_file


def request_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """`root/ab/abcd….json` holds {"request": …, "response": …} or {"request": …, "error": …}."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)  # created with the first entry: a failed start leaves nothing

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(request_key(request))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # not written by kotune (writes are atomic): ask again, overwrite it
        if entry.get("request") != request:  # a hash collision or a hand-edited file
            return None
        return entry

    def put(self, request: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"request": request, **entry}
        text = json.dumps(entry, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        with atomic_file(self.path(request_key(request))) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return entry

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))
