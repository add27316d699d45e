"""The one seam between the web app and a model: a chat backend streams an answer to a list of
messages. `OpenAIBackend` talks to any OpenAI-compatible server (another `kotune serve`, vLLM);
the in-process engine is the other implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from kotune.errors import KotuneError


class BackendError(KotuneError):
    """The model could not answer: unreachable, refused the request, or broke off mid-answer.
    The message is one line, safe to show a user (it never holds their text)."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one answer, as the model counted them (None where the backend did not say)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Persona:
    """What the page shows about the bot, and what the app adds to the model's prompt."""

    display_name: str  # the page's title, e.g. 메뉴 추천 도우미
    description: str = ""  # one line under it
    system_prompt: str = ""  # the persona's own; the app appends `사용자 선호: …` to it
    preferences: bool = False  # read food preferences from user messages (the menu persona)

    @classmethod
    def of_adapter(cls, settings: Any) -> Persona:
        """The persona an exported adapter's kotune.json describes (AdapterSettings)."""
        return cls(
            settings.display_name or settings.persona,
            settings.description,
            settings.system_prompt,
            settings.preferences,
        )


class ChatBackend(Protocol):
    """A model that answers. `stream` yields the answer's text pieces as they are generated and
    ends with one `Usage`; it raises `BackendError` (never a bare library error) on failure.
    Closing the iterator early (the client left) must stop the generation."""

    model_id: str
    persona: Persona

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | Usage]: ...

    async def aclose(self) -> None: ...


class OpenAIBackend:
    """A client of an OpenAI-compatible `/v1/chat/completions` (the official `openai` client)."""

    def __init__(
        self, base_url: str, api_key: str | None, model_id: str, persona: Persona, timeout_s: float
    ):
        self.base_url, self.model_id, self.persona = base_url, model_id, persona
        # vLLM and kotune serve without --api-key accept any key; the client insists on one
        self._api_key, self._timeout_s = api_key or "EMPTY", timeout_s
        self._client: Any = None

    @property
    def client(self) -> Any:
        """Made on first use, inside the event loop that serves requests (an httpx pool is
        bound to the loop it first runs in)."""
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                timeout=self._timeout_s,
                max_retries=1,
            )
        return self._client

    @classmethod
    async def connect(
        cls,
        base_url: str,
        api_key: str | None,
        persona: Persona,
        model: str | None = None,
        timeout_s: float = 120.0,
    ) -> OpenAIBackend:
        """A backend for `base_url` (ending in /v1), checked by listing its models; without
        `model`, the first one listed is used. Unreachable or empty: a BackendError."""
        import openai

        probe = cls(base_url, api_key, model or "", persona, timeout_s)
        try:
            listed = [m.id async for m in probe.client.models.list()]
        except openai.OpenAIError as error:
            raise BackendError(f"--backend-url {base_url}: {_describe(error)}") from None
        finally:
            await probe.aclose()
        if not listed:
            raise BackendError(f"--backend-url {base_url}: the server lists no model")
        if model is not None and model not in listed:
            raise BackendError(
                f"--backend-model {model}: not served at {base_url} (it has {', '.join(listed)})"
            )
        return cls(base_url, api_key, model or listed[0], persona, timeout_s)

    async def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | Usage]:
        import openai

        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if temperature is not None:
            options["temperature"] = temperature
        usage = Usage()
        try:
            response = await self.client.chat.completions.create(
                model=self.model_id,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
            # `async with` closes the HTTP response when we stop early: the server sees the
            # client leave and stops generating
            async with response:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
        except openai.OpenAIError as error:
            raise BackendError(f"the model server failed: {_describe(error)}") from None
        yield usage

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _describe(error: Exception) -> str:
    """One line about a client error: the status and the server's own message, or the cause."""
    import openai

    if isinstance(error, openai.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        inner = body.get("error", body) if isinstance(body, dict) else {}
        message = inner.get("message") if isinstance(inner, dict) else None
        return f"HTTP {error.status_code}: {message or error.message}".splitlines()[0]
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return f"cannot connect ({type(cause).__name__}: {cause})".splitlines()[0]
    return f"{type(error).__name__}: {error}".splitlines()[0]
