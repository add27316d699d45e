"""One stage command for one or several processes: with `gpu.num_processes` > 1, stages/train.py
runs itself again under torchrun (data-parallel, one process and one 4-bit copy per device)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

# set by torchrun (and accelerate launch) in every worker: there, launching again is wrong
LAUNCHER_VARS = ("LOCAL_RANK", "WORLD_SIZE")
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def needs_launcher(num_processes: int, environ: Mapping[str, str] | None = None) -> bool:
    """True when the profile asks for several processes and none has been started yet."""
    environ = os.environ if environ is None else environ
    return num_processes > 1 and not any(name in environ for name in LAUNCHER_VARS)


def torchrun_args(num_processes: int, argv: Sequence[str]) -> list[str]:
    """torchrun's command line (`python -m torch.distributed.run …`) for the script and arguments
    in `argv`. --standalone: a rendezvous on a free local port, so queued experiments never
    collide; OMP_NUM_THREADS defaults to 1 a worker (torchrun's choice; set it to override)."""
    return ["--standalone", f"--nproc_per_node={num_processes}", *argv]


def relaunch(num_processes: int, argv: Sequence[str] | None = None) -> int:
    """Run `argv` (default: this very command) on `num_processes` processes through torchrun
    and return the exit status: 0, the first failed worker's status, or 128 + the signal.

    torchrun runs in this process rather than a child so that Ctrl-C ends with one line: its
    agent passes the SIGINT on to the workers (each in its own session, so they get it once;
    rank 0 says where training stopped) and then raises, which is caught here instead of
    printing a traceback. A worker that fails prints its own error before this returns.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.root.manager.loggerDict):  # not its "shutting down workers" chatter
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.ERROR)
    options = parse_args(torchrun_args(num_processes, list(sys.argv if argv is None else argv)))
    try:
        run(options)
    except SignalException as stop:
        return INTERRUPTED if stop.sigval == signal.SIGINT else 128 + int(stop.sigval)
    except ChildFailedError as failed:
        first = min(failed.failures.values(), key=lambda f: f.timestamp)
        return first.exitcode if first.exitcode > 0 else 128 - first.exitcode
    return 0


def stopped(code: int = INTERRUPTED) -> int:
    """Return `code` after Ctrl-C; a torchrun worker leaves at once instead (os._exit): a peer
    may have stopped in the middle of a collective, and tearing the process group down would
    wait for it (or abort with "terminate called without an active exception")."""
    if any(name in os.environ for name in LAUNCHER_VARS):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Rank 0 (or the only process): the one that writes metrics, the fingerprint and curves."""
    environ = os.environ if environ is None else environ
    return environ.get("RANK", "0") == "0"
