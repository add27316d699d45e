"""The web and store layer stays light: no torch or transformers on its import path."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "kotune.serving.webapp",
    "kotune.serving.web",
    "kotune.serving.webapi",
    "kotune.serving.store",
    "kotune.serving.preferences",
    "kotune.serving.admin",
    "kotune.serving.serve",
    "kotune.serving.preference_words",
    "kotune.cli",
]


def test_serving_modules_import_no_ml_framework():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules]\n"
        + "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
