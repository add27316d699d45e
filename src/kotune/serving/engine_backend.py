"""What the web layer talks to: the in-process engine behind an async interface. Routes (the
OpenAI-compatible API here, the web page's chat) get prompts and streamed events from it without
importing torch; the engine's thread does the work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kotune.inference.decoding import SamplingParams
from kotune.inference.engine import Delta, Engine, Event, Prompt, PromptTooLong


@dataclass(frozen=True)
class Prepared:
    """A request's prompt and its answer's token limit, checked against the context."""

    prompt: Prompt
    max_new_tokens: int


class EngineBackend:
    """The loaded adapter served in this process: model id, prompts, streamed answers."""

    def __init__(self, engine: Engine, model_id: str, created: int | None = None) -> None:
        self.engine, self.model_id = engine, model_id
        self.created = created if created is not None else int(time.time())
        self.settings = engine.settings

    @property
    def context(self) -> int:
        return self.engine.context

    @property
    def vocab_size(self) -> int:
        return self.engine.vocab_size

    def prepare(self, messages: list[dict[str, str]], max_tokens: int | None) -> Prepared:
        """The prompt for `messages` and the answer's limit: `max_tokens` if given (prompt +
        max_tokens must fit the context, else PromptTooLong), otherwise the persona's
        max_new_tokens, shortened to what is left of the context."""
        prompt = self.engine.prompt(messages, max_tokens or 1)
        if max_tokens is not None:
            return Prepared(prompt, max_tokens)
        room = self.context - len(prompt.ids)
        default = self.settings.generation.max_new_tokens
        if room < 1:
            raise PromptTooLong(len(prompt.ids), 1, self.context)
        return Prepared(prompt, min(default, room))

    def params(self, **changes: Any) -> SamplingParams:
        return self.engine.params(**changes)

    async def stream(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Event]:
        """The answer's events; leaving early (the client went away) cancels the answer and
        frees its slot at the engine's next step."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:  # the engine's thread
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutting down)
                loop.call_soon_threadsafe(events.put_nowait, event)

        request = self.engine.submit(prepared.prompt, params, sink)
        try:
            while True:
                event = await events.get()
                yield event
                if not isinstance(event, Delta):
                    return
        finally:
            request.cancel()

    def load(self) -> dict[str, Any]:
        return self.engine.load()

    def close(self) -> None:
        self.engine.close()
