"""The teacher: chat completions from any OpenAI-compatible URL through the official `openai`
client, with one retry policy (kotune's; the client's own retries are off).

- 429, 408/409, 5xx, time-outs and dropped connections: retried with exponential backoff and
  full jitter (seeded), honouring a server's Retry-After, up to `max_retries`.
- A prompt too long for the teacher's context (OpenAI's `context_length_exceeded`, or the
  wording vLLM, llama.cpp, TGI and others use): answered as an entry, so the caller shrinks the
  prompt; it is cached like an answer, so a replay shrinks the same way without a server.
- A wrong URL, key or model, or a request the server refuses: one line, at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from typing import TYPE_CHECKING, Any

from kotune.errors import KotuneError

if TYPE_CHECKING:
    from kotune.config import TeacherConfig

NO_KEY = "EMPTY"  # what local servers (vLLM, kotune serve without accounts) accept

# How servers say the prompt does not fit (lower-cased substrings of the message or body).
CONTEXT_PATTERNS = (
    "context_length_exceeded",  # OpenAI's error code
    "maximum context length",  # OpenAI; vLLM "This model's maximum context length is N tokens"
    "context length is only",  # vLLM ≥ 0.10: "the model's context length is only N tokens"
    "reduce the length of the",  # vLLM, OpenAI: "Please reduce the length of the messages/input"
    "please reduce your prompt",  # OpenAI completions (Alpaca's utils.py matched this)
    "exceeds the available context size",  # llama.cpp server
    "exceed_context_size_error",  # llama.cpp server's error type
    "`inputs` tokens + `max_new_tokens` must be",  # Hugging Face TGI (422)
    "longer than the model's context length",  # SGLang
    "prompt is too long",  # Anthropic's OpenAI-compatible endpoint
    "input is too long",
)
CONTEXT_STATUSES = (400, 413, 422)
RETRY_STATUSES = (408, 409, 429)  # and every 5xx


def is_context_length_error(status: int, code: Any, message: str, body: Any) -> bool:
    if status not in CONTEXT_STATUSES:
        return False
    if code == "context_length_exceeded":
        return True
    text = f"{message} {json.dumps(body, ensure_ascii=False, default=str)}".lower()
    return any(pattern in text for pattern in CONTEXT_PATTERNS)


def one_line(text: Any, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def server_message(error: Any) -> str:
    """What the server said, without the client's `Error code: 400 - ` prefix."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("message"), str):
            return one_line(inner["message"])
    return one_line(re.sub(r"^Error code: \d+ - ", "", str(getattr(error, "message", error))))


def resolve_api_key(env_name: str, *, required: bool) -> str:
    """The key from the environment variable `env_name` (never from params or the command
    line, which end up in shell history, dvc.lock and git). Unset: NO_KEY, or an error if the
    user named the variable."""
    value = os.environ.get(env_name, "")
    if value:
        return value
    if required:
        raise KotuneError(f"--api-key-env: environment variable {env_name} is not set")
    return NO_KEY


def retry_after_s(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds / 1000 if name.endswith("ms") else seconds
    return None


class Teacher:
    """Answers one request at a time per caller; at most `concurrency` in flight in total."""

    def __init__(self, cfg: TeacherConfig, api_key: str, concurrency: int, seed: int) -> None:
        import openai

        self.openai = openai
        self.cfg = cfg
        self.seed = seed
        self.client = openai.AsyncOpenAI(
            base_url=cfg.base_url, api_key=api_key, max_retries=0, timeout=cfg.timeout_s
        )
        self.api_key = api_key
        self.slots = asyncio.Semaphore(concurrency)
        self.checking = asyncio.Lock()
        self.reachable = False
        self.calls = 0  # HTTP requests made (retries included)
        self.retries = 0

    async def close(self) -> None:
        await self.client.close()

    def _where(self) -> str:
        return f"the teacher at {self.cfg.base_url}"

    def check(self, model: str) -> None:
        """Is the URL a server, the key accepted, the model served? Asked once, before the first
        request (synchronously, so a fresh run fails before anything heavy loads). A failure
        is the user's set-up: one line, no retry."""
        if self.reachable:
            return
        errors = self.openai
        client = errors.OpenAI(
            base_url=self.cfg.base_url,
            api_key=self.api_key,
            max_retries=0,
            timeout=min(30.0, self.cfg.timeout_s),
        )
        try:
            served = [m.id for m in client.models.list().data]
        except errors.APIConnectionError as error:
            cause = error.__cause__ or error
            raise KotuneError(
                f"--base-url {self.cfg.base_url}: cannot reach the teacher ({one_line(cause)})"
            ) from None
        except (errors.AuthenticationError, errors.PermissionDeniedError) as error:
            raise KotuneError(
                f"{self._where()} refused the API key from ${self.cfg.api_key_env} "
                f"({error.status_code}: {server_message(error)})"
            ) from None
        except errors.APIStatusError:
            served = None  # no /models here (some gateways): the first request will tell
        finally:
            client.close()
        if served is not None and model not in served:
            listed = ", ".join(served[:10]) + (", …" if len(served) > 10 else "")
            raise KotuneError(
                f"--model {model}: not served by {self._where()} (it serves: {listed or 'none'})"
            )
        self.reachable = True

    async def _checked(self, model: str) -> None:
        async with self.checking:
            if not self.reachable:
                await asyncio.to_thread(self.check, model)

    async def complete(self, request: dict[str, Any], number: int) -> dict[str, Any]:
        """{"response": chat.completion as JSON} or {"error": …} for a prompt too long."""
        await self._checked(request["model"])
        errors = self.openai
        jitter = random.Random(f"{self.seed}:{number}:backoff")
        for attempt in range(self.cfg.max_retries + 1):
            failure: Exception
            try:
                async with self.slots:
                    self.calls += 1
                    completion = await self.client.chat.completions.create(**request)
                return {"response": completion.model_dump(mode="json")}
            except (errors.APITimeoutError, errors.APIConnectionError) as error:
                failure = error
            except errors.APIStatusError as error:
                status = error.status_code
                if is_context_length_error(status, error.code, error.message, error.body):
                    return {
                        "error": {
                            "status": status,
                            "code": "context_length_exceeded",
                            "message": server_message(error),
                        }
                    }
                if status in (401, 403):
                    raise KotuneError(
                        f"{self._where()} refused the API key from ${self.cfg.api_key_env} "
                        f"({status}: {server_message(error)})"
                    ) from None
                if status == 404:
                    raise KotuneError(
                        f"{self._where()}: 404 for model {request['model']} (a wrong --model, or "
                        f"a --base-url without /v1?): {server_message(error)}"
                    ) from None
                if status not in RETRY_STATUSES and status < 500:
                    raise KotuneError(
                        f"{self._where()} refused the request ({status}: {server_message(error)})"
                    ) from None
                failure = error
            if attempt == self.cfg.max_retries:
                raise KotuneError(
                    f"{self._where()} still failing after {self.cfg.max_retries} retries: "
                    f"{describe(failure)}"
                )
            self.retries += 1
            cap = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2**attempt)
            wait = jitter.uniform(0, cap)  # full jitter: retries of many requests spread out
            hinted = retry_after_s(failure)
            if hinted is not None:
                wait = min(max(wait, hinted), self.cfg.max_backoff_s)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")


def describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    if status:
        return f"{status}: {server_message(error)}"
    return one_line(f"{type(error).__name__}: {getattr(error, 'message', None) or error}")
