"""models/base/manifest.json: what a base model is (the base stage writes it) and where its
weights are. Every reader of a base (models/base, or an exported adapter's reference to its
base) finds the weights through `BaseReference.location`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kotune.errors import KotuneError
from kotune.files import read_json

MANIFEST = "manifest.json"


def read_manifest(base_dir: str | Path) -> dict[str, Any]:
    path = Path(base_dir) / MANIFEST
    if not path.is_file():
        raise KotuneError(f"{path}: not found (run `dvc repro base` first)")
    return read_json(path)


@dataclass(frozen=True)
class BaseReference:
    """Where a base's weights are: `bundled` in a folder beside the reference (the scratch
    model: models/base itself, or an exported adapter's base/), a `local` folder, or a `hub`
    id at a pinned revision (read from the local Hugging Face cache, never downloaded)."""

    source: Literal["bundled", "local", "hub"]
    path: str | None = None  # bundled: relative to the folder holding the reference
    hub_id: str | None = None
    revision: str | None = None

    def location(self, folder: str | Path) -> tuple[str, str | None]:
        """(name or path, revision) to pass to from_pretrained."""
        if self.source == "bundled":
            return str(Path(folder) / (self.path or ".")), None
        if self.source == "local":
            return str(self.path), None
        return str(self.hub_id), self.revision


def base_reference(manifest: dict[str, Any], bundled_path: str = ".") -> BaseReference:
    """The reference a base manifest makes: a scratch base's weights are bundled (in models/base,
    or copied to `bundled_path` by export)."""
    if manifest["source"] == "scratch":
        return BaseReference("bundled", path=bundled_path)
    if manifest["source"] == "local":
        return BaseReference("local", path=manifest["path"])
    return BaseReference("hub", hub_id=manifest["hub_id"], revision=manifest.get("revision"))


def base_location(
    base_dir: str | Path, manifest: dict[str, Any] | None = None
) -> tuple[str, str | None]:
    """(name or path, revision) of the base in models/base."""
    manifest = read_manifest(base_dir) if manifest is None else manifest
    return base_reference(manifest).location(base_dir)
