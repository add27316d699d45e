"""One answer's request and the events it sends its caller: text pieces, then how it ended
(or why it failed). The engine's thread calls the request's sink; the caller can cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kotune.inference.decoding import SamplingParams


@dataclass(frozen=True)
class Delta:
    """A piece of the shown answer."""

    text: str


@dataclass(frozen=True)
class Done:
    """The answer ended: `stop` (end of turn or stop pattern), `length` (token limit) or
    `cancelled`; token counts for usage."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failure:
    """Generation failed for this answer (the engine itself keeps serving)."""

    message: str


Event = Delta | Done | Failure


@dataclass
class Request:
    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[Event], None]  # called from the engine's thread
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        """Stop this answer at the next step and free its slot (the caller went away)."""
        self.cancelled.set()
