"""User-facing errors: one clear line, no traceback, non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable


class KotuneError(Exception):
    """A problem with the user's input or set-up (not a bug): printed as one line."""


class ConfigError(KotuneError):
    """params.yaml / conf/ holds an unknown key, a wrong type or a value out of range."""


class DataError(KotuneError):
    """An input file is malformed; the message names the file, the line or item, and the fault."""


class OptionError(DataError):
    """The data contradicts one of the format's options (`me` names nobody in the export): the
    caller names the option as the user set it (`--me` or `persona.data.options.me`)."""

    def __init__(self, key: str, detail: str, name: str | None = None) -> None:
        self.key, self.detail = key, detail
        super().__init__(f"{name or key} {detail}")


def run_cli(main: Callable[[], int | None]) -> None:
    """Run `main`, turning KotuneError into `kotune: error: …` on stderr and exit status 2."""
    try:
        code = main()
    except KotuneError as error:
        print(f"kotune: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("kotune: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
