"""One shard of a file per worker process, driven in lockstep: the caller asks every shard the
same question and gets the answers back in file order, so the work done (and its result) is the
same on one core or many. A shard is any object built from (path, start, end, first line
number, *args) whose methods take and return picklable values.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kotune.errors import ConfigError, DataError, KotuneError

ERRORS = {"DataError": DataError, "ConfigError": ConfigError}


def byte_ranges(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """(start, end, first line number) of up to `parts` pieces of `path`, cut at line ends."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as handle:
        for i in range(1, max(1, parts)):
            handle.seek(size * i // parts)
            handle.readline()  # on to the next line start
            if cuts[-1] < handle.tell() < size:
                cuts.append(handle.tell())
        cuts.append(size)
        linenos, seen, pos = [], 0, 0
        handle.seek(0)
        for cut in cuts[:-1]:
            while pos < cut:
                block = handle.read(min(1 << 20, cut - pos))
                seen += block.count(b"\n")
                pos += len(block)
            linenos.append(seen + 1)
    return [(cuts[i], cuts[i + 1], linenos[i]) for i in range(len(cuts) - 1)]


def default_workers(path: Path, min_bytes: int = 4 << 20) -> int:
    """Every core this process may use, but one per `min_bytes` at most: starting a worker and
    moving its results costs more than a small file takes on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, path.stat().st_size // min_bytes))


class Local:
    """A shard in this process (one core: no copies, no pickling)."""

    def __init__(self, factory: Callable, args: tuple) -> None:
        self.shard, self.error = None, None
        try:
            self.shard = factory(*args)
        except KotuneError as error:  # reported at the first question, as a worker does
            self.error = error

    def ask(self, method: str, *args: Any) -> None:
        if self.error is None:
            self.answer = getattr(self.shard, method)(*args)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.answer

    def close(self) -> None:
        self.shard = None


def _serve(conn, factory: Callable, args: tuple) -> None:
    # Ctrl-C is the parent's to handle (one "interrupted" line); a worker ends with its pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # shards build millions of records without cycles: see kotune.files.paused_gc
    shard, failure = None, None
    try:
        shard = factory(*args)
    except BaseException as error:  # noqa: BLE001 (sent to the caller, which raises it)
        failure = error
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the parent is gone
            return
        if request is None:
            return
        method, method_args = request
        try:
            if failure is not None:
                raise failure
            conn.send(("ok", getattr(shard, method)(*method_args)))
        except KotuneError as error:
            conn.send(("error", type(error).__name__, str(error)))
        except BaseException:  # noqa: BLE001
            conn.send(("error", "bug", traceback.format_exc()))


class Remote:
    """A shard in a worker process (fork where the platform has it: nothing to import again)."""

    def __init__(self, factory: Callable, args: tuple) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        self.process.start()
        child.close()

    def ask(self, method: str, *args: Any) -> None:
        self.conn.send((method, args))

    def result(self) -> Any:
        try:
            status, *value = self.conn.recv()
        except EOFError:
            raise RuntimeError(
                f"a worker process ended (exit code {self.process.exitcode})"
            ) from None
        if status == "ok":
            return value[0]
        kind, message = value
        if kind in ERRORS:
            raise ERRORS[kind](message)
        if kind == "bug":
            print(message, file=sys.stderr)
            raise RuntimeError("a worker process failed (its traceback is above)")
        raise KotuneError(message)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a worker that died has closed its end
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


class Shards:
    """Shards built by `factory(*piece, *args)`, one per piece (in a worker process each when
    there are several), asked together, answered in order. `with Shards(...) as shards:`"""

    def __init__(self, factory: Callable, pieces: list[tuple], args: tuple = ()) -> None:
        kind = Local if len(pieces) == 1 else Remote
        self.handles = [kind(factory, (*piece, *args)) for piece in pieces]

    @classmethod
    def of_file(cls, factory: Callable, path: Path, workers: int, args: tuple = ()) -> Shards:
        """Shards of a file cut at line ends: `factory(path, start, end, first_lineno, *args)`."""
        return cls(factory, [(path, *r) for r in byte_ranges(path, workers)], args)

    def ask(self, method: str, *args: Any) -> list[Any]:
        """Every shard's answer, in file order (the first error, in file order, is raised)."""
        return list(self.ask_each(method, *args))

    def ask_each(self, method: str, *args: Any) -> Iterator[Any]:
        """The answers one by one, in file order, while later shards are still working."""
        return self.ask_each_with(method, [args] * len(self.handles))

    def ask_each_with(self, method: str, arguments: list[tuple]) -> Iterator[Any]:
        """As ask_each, with each shard's own arguments."""
        for handle, args in zip(self.handles, arguments, strict=True):
            handle.ask(method, *args)
        for k, handle in enumerate(self.handles):
            try:
                answer = handle.result()
            except BaseException:
                for other in self.handles[k + 1 :]:  # keep every worker's pipe in step
                    with contextlib.suppress(BaseException):  # the earliest error is raised
                        other.result()
                raise
            yield answer

    def __enter__(self) -> Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.close()
