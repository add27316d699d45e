"""Imported first by every stage script. stages/ holds tokenize.py, a name the standard library
also uses (linecache, inspect and torch import it); running a stage puts stages/ first on the
import path, so take it off before anything imports `tokenize`."""

import os
import sys

_STAGES_DIR = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
if os.path.basename(_STAGES_DIR) == "stages":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _STAGES_DIR]
