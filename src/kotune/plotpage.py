"""The page `dvc plots show` writes, made to draw offline: DVC's default page loads Vega,
Vega-Lite and vega-embed from a CDN (blank without network); this builds the HTML template that
.dvc/config names (`plots.html_template`) with the three scripts inlined, taken from their npm
tarballs (`npm pack`, pinned by version and integrity hash). `make setup` runs it once.

    python -m kotune.plotpage --out .dvc/plots/offline.html
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

from kotune.errors import KotuneError

# The versions dvc-render's own page asks the CDN for (dvc_render/vega.py), so the specs DVC
# writes (Vega-Lite v5 schema) draw exactly as they would online. Integrity = what the npm
# registry publishes for each tarball (`npm view vega@5.20.2 dist.integrity`).
PACKAGES = {
    "vega": (
        "5.20.2",
        "package/build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    "vega-lite": (
        "5.2.0",
        "package/build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    "vega-embed": (
        "6.18.2",
        "package/build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
}

STAMP = " ".join(f"{name}@{spec[0]}" for name, spec in PACKAGES.items())

# DVC fills {plot_divs} (one <div> and one vegaEmbed call a plot) and {refresh_tag}; the page
# has no {scripts}, so DVC's CDN <script> tags are left out. Plots are drawn as SVG (crisp, and
# a test can count their marks) without the action that opens the online Vega editor.
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="generator" content="kotune.plotpage __STAMP__">
{refresh_tag}
<title>kotune plots</title>
__SCRIPTS__
<script>
const embedWith = vegaEmbed;
vegaEmbed = (el, spec, opt) => embedWith(el, spec, Object.assign(
  {renderer: "svg", actions: {export: true, source: true, compiled: true, editor: false}}, opt));
</script>
<style>
body { font-family: sans-serif; }
table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def integrity_of(data: bytes) -> str:
    """npm's Subresource-Integrity string of a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def npm_pack(name: str, version: str, folder: Path) -> Path:
    """The package's tarball from the npm registry, by npm itself (`npm pack`)."""
    try:
        result = subprocess.run(
            ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise KotuneError(
            "npm not found: it fetches Vega once for offline plots (apt-get install npm)"
        ) from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise KotuneError(f"npm pack {name}@{version} failed: {last}")
    return folder / json.loads(result.stdout)[0]["filename"]


def script_from(tarball: Path, member: str, integrity: str) -> str:
    """The minified script inside a tarball whose hash is the pinned one."""
    data = tarball.read_bytes()
    if integrity_of(data) != integrity:
        raise KotuneError(f"{tarball.name}: integrity {integrity_of(data)} is not the pinned one")
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise KotuneError(f"{tarball.name}: no {member}")
        text = handle.read().decode("utf-8")
    if "</script" in text.lower():  # would end the inline <script> early
        text = text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return text


def build_page(scripts: dict[str, str]) -> str:
    """The HTML template with each script inlined, in load order (vega-embed needs the others)."""
    tags = []
    for name, text in scripts.items():
        version = PACKAGES[name][0]
        tags.append(f"<script>/* {name} {version} (BSD-3-Clause), from npm */\n{text}\n</script>")
    return PAGE.replace("__SCRIPTS__", "\n".join(tags)).replace("__STAMP__", STAMP)


def write_page(out: Path) -> bool:
    """Write the template to `out` unless it is already there for these versions."""
    if out.is_file() and f'content="kotune.plotpage {STAMP}"' in out.read_text(encoding="utf-8"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        scripts = {
            name: script_from(npm_pack(name, version, Path(folder)), member, integrity)
            for name, (version, member, integrity) in PACKAGES.items()
        }
    from kotune.files import atomic_file

    with atomic_file(out) as tmp:
        tmp.write_text(build_page(scripts), encoding="utf-8")
    return True


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kotune.plotpage", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".dvc/plots/offline.html"))
    args = parser.parse_args()
    if write_page(args.out):
        print(f"wrote {args.out} (Vega, Vega-Lite and vega-embed inlined: plots draw offline)")


if __name__ == "__main__":
    from kotune.errors import run_cli

    run_cli(_main)
