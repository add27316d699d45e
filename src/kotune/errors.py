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


def os_error_line(error: OSError) -> str | None:
    """`PATH: reason` for an OS error about a path (permission, a folder where a file was meant,
    a full disk); None when it names no path (then it is not the user's and stays a traceback)."""
    if error.filename is None:
        return None
    reason = error.strerror or str(error)
    if error.filename2 is not None:
        return f"{error.filename} → {error.filename2}: {reason}"
    return f"{error.filename}: {reason}"


class OptionError(DataError):
    """The data contradicts one of the format's options (`me` names nobody in the export): the
    caller names the option as the user set it (`--me` or `persona.data.options.me`)."""

    def __init__(self, key: str, detail: str, name: str | None = None) -> None:
        self.key, self.detail = key, detail
        super().__init__(f"{name or key} {detail}")


def run_cli(main: Callable[[], int | None]) -> None:
    """Run `main`, turning KotuneError (and an OS error on a path) into one line on stderr,
    `kotune: error: …`, and exit status 2."""
    try:
        code = main()
    except KotuneError as error:
        print(f"kotune: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        line = os_error_line(error)
        if line is None:
            raise
        print(f"kotune: error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("kotune: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
