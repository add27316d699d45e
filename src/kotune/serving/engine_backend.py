"""What the web layer talks to: the in-process engine behind an async interface. Routes (the
OpenAI-compatible API, and the web page's chat through `EngineChat`) get prompts and streamed
events from it without importing torch; the engine's thread does the work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kotune.inference.decoding import SamplingParams
from kotune.inference.engine import Delta, Done, Engine, Event, Prompt, PromptTooLong
from kotune.serving.backend import BackendError, Persona, Usage


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


class EngineChat:
    """The web chat's `ChatBackend` (kotune.serving.backend) over the engine in this process:
    the latest turns that fit the context (the oldest left out first), the answer streamed as
    text pieces, then its `Usage`. Leaving early cancels the answer; a failure is a
    `BackendError` of one line that never holds the user's text."""

    def __init__(self, backend: EngineBackend, persona: Persona) -> None:
        self.backend, self.persona = backend, persona
        self.model_id = backend.model_id

    def _prepare(self, messages: list[dict[str, str]], max_tokens: int | None) -> Prepared:
        context = self.backend.context
        limit = max_tokens or self.backend.settings.generation.max_new_tokens
        limit = max(1, min(limit, context // 2))  # room for the question, whatever the settings
        try:
            prompt = self.backend.engine.prompt(messages, limit, drop_oldest=True)
        except PromptTooLong as error:
            raise BackendError(f"the message does not fit the model: {error}") from None
        except ValueError:
            raise BackendError("a message has no role or text") from None
        return Prepared(prompt, limit)

    async def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | Usage]:
        prepared = await asyncio.to_thread(self._prepare, messages, max_tokens)
        changes: dict[str, Any] = {"max_new_tokens": prepared.max_new_tokens}
        if temperature is not None:
            changes["do_sample"] = temperature > 0
            if temperature > 0:
                changes["temperature"] = temperature
        events = self.backend.stream(prepared, self.backend.params(**changes))
        try:
            async for event in events:
                if isinstance(event, Delta):
                    if event.text:
                        yield event.text
                elif isinstance(event, Done):
                    yield Usage(event.prompt_tokens, event.completion_tokens)
                    return
                else:  # Failure: the engine's own words, first line (no user text in them)
                    raise BackendError(str(event.message).splitlines()[0] or "generation failed")
        finally:
            await events.aclose()  # cancels the answer when the client has gone

    async def aclose(self) -> None:
        """Nothing of its own: the engine is closed with the app (create_app's lifespan)."""
