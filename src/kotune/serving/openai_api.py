"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (streamed or not).

Requests are checked as OpenAI checks them and refused in its error shape with the status its
client maps to an exception class (400 BadRequestError naming the parameter, 401, 404 for an
unknown model, 400 `context_length_exceeded` for a prompt over the model's context). Parameters
this server cannot honour (n > 1, tools, logprobs, penalties other than 0, JSON mode) are
refused by name, never ignored.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kotune import __version__
from kotune.inference.engine import Delta, Done, Failure, PromptTooLong
from kotune.serving.backend import EngineBackend
from kotune.serving.errors import ApiError, check_api_key

FINGERPRINT = f"kotune-{__version__}"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # accepted as OpenAI does; kotune's prompt formats have no speakers


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions: OpenAI's fields that kotune honours, plus
    `repetition_penalty` (as vLLM accepts it)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: Annotated[list[Message], Field(min_length=1)]
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(ge=0, le=1)] = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int | None, Field(ge=1, le=128)] = 1
    frequency_penalty: Annotated[float | None, Field(ge=-2, le=2)] = 0
    presence_penalty: Annotated[float | None, Field(ge=-2, le=2)] = 0
    repetition_penalty: Annotated[float | None, Field(gt=0)] = None
    logprobs: bool | None = False
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    user: str | None = None  # an end-user id for the client's own records; not used here
    metadata: dict[str, str] | None = None
    store: bool | None = False


def check_supported(body: ChatCompletionRequest) -> None:
    """400 for what this server cannot do, naming the parameter (never silently ignored)."""
    unsupported = {
        "n": body.n not in (None, 1),
        "frequency_penalty": bool(body.frequency_penalty),
        "presence_penalty": bool(body.presence_penalty),
        "logprobs": bool(body.logprobs) or body.top_logprobs is not None,
        "tools": bool(body.tools) or body.tool_choice not in (None, "none"),
        "store": bool(body.store),
        "response_format": bool(body.response_format)
        and body.response_format.get("type") != "text",
    }
    for param, refused in unsupported.items():
        if refused:
            raise ApiError(400, f"'{param}' is not supported by this server", param=param)
    if body.stream_options is not None and not body.stream:
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if isinstance(body.stop, list) and not all(body.stop):
        raise ApiError(400, "'stop' sequences must not be empty", param="stop")


def plain_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as kotune's engine takes it: text only, `developer` as `system`; at
    least one user message, the last message the user's."""
    messages = []
    for message in body.messages:
        content = message.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", param="messages")
    return messages


def context_error(error: PromptTooLong) -> ApiError:
    total = error.prompt_tokens + error.max_new_tokens
    return ApiError(
        400,
        f"This model's maximum context length is {error.context} tokens. However, you requested "
        f"{total} tokens ({error.prompt_tokens} in the messages, {error.max_new_tokens} in the "
        f"completion). Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )


def sampling_changes(body: ChatCompletionRequest, max_new_tokens: int) -> dict[str, Any]:
    """Per-request changes to the persona's generation settings. temperature 0 is greedy;
    any other temperature or top_p samples."""
    changes: dict[str, Any] = {"max_new_tokens": max_new_tokens, "seed": body.seed}
    if body.temperature is not None:
        changes["do_sample"] = body.temperature > 0
        if body.temperature > 0:
            changes["temperature"] = body.temperature
    if body.top_p is not None:
        changes["top_p"] = body.top_p
        if body.temperature is None:
            changes["do_sample"] = body.top_p > 0
        if body.top_p == 0:
            changes["do_sample"] = False
    if body.repetition_penalty is not None:
        changes["repetition_penalty"] = body.repetition_penalty
    if body.stop:
        changes["stop"] = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)
    if body.logit_bias:
        changes["logit_bias"] = tuple((int(k), v) for k, v in body.logit_bias.items())
    return changes


def check_logit_bias(body: ChatCompletionRequest, vocab_size: int) -> None:
    for key, bias in (body.logit_bias or {}).items():
        if not key.isdigit() or int(key) >= vocab_size:
            raise ApiError(
                400,
                f"logit_bias: {key!r} is not a token id (0 to {vocab_size - 1})",
                param="logit_bias",
            )
        if not -100 <= bias <= 100:
            raise ApiError(
                400, f"logit_bias: {bias} for {key} is not in [-100, 100]", param="logit_bias"
            )


def usage(done: Done) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)])

    def backend_of(request: Request) -> EngineBackend:
        return request.app.state.backend

    def model_card(backend: EngineBackend) -> dict[str, Any]:
        return {
            "id": backend.model_id,
            "object": "model",
            "created": backend.created,
            "owned_by": "kotune",
        }

    @router.get("/models")
    async def list_models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [model_card(backend_of(request))]}

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        backend = backend_of(request)
        if model_id != backend.model_id:
            raise unknown_model(model_id)
        return model_card(backend)

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        backend = backend_of(request)
        if body.model != backend.model_id:
            raise unknown_model(body.model)
        check_supported(body)
        check_logit_bias(body, backend.vocab_size)
        messages = plain_messages(body)
        limit = body.max_completion_tokens or body.max_tokens
        try:
            prepared = backend.prepare(messages, limit)
        except PromptTooLong as error:
            raise context_error(error) from None
        params = backend.params(**sampling_changes(body, prepared.max_new_tokens))
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": backend.model_id,
            "system_fingerprint": FINGERPRINT,
        }
        events = backend.stream(prepared, params)
        request.state.prompt_tokens = len(prepared.prompt.ids)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            first = await anext(events)  # a failure before any text is a plain HTTP error
            if isinstance(first, Failure):
                raise ApiError(500, first.message, type="server_error")
            chunks = stream_chunks(request, events, first, completion, include_usage)
            return StreamingResponse(chunks, media_type="text/event-stream")
        return await complete(request, events, completion)

    return router


def unknown_model(model_id: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model_id}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def complete(
    request: Request, events: AsyncIterator[Any], completion: dict[str, Any]
) -> JSONResponse:
    """The whole answer in one response; a client that disconnects cancels it."""

    async def collect() -> tuple[str, Done | Failure]:
        pieces = []
        async for event in events:
            if isinstance(event, Delta):
                pieces.append(event.text)
            else:
                return "".join(pieces), event
        raise RuntimeError("the engine ended an answer without a reason")

    answer = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()
            await events.aclose()
    if not answer.done():
        raise ApiError(499, "the client closed the request", type="client_closed")
    text, end = answer.result()
    if isinstance(end, Failure):
        raise ApiError(500, end.message, type="server_error")
    request.state.completion_tokens = end.completion_tokens
    return JSONResponse(
        {
            **completion,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": end.finish_reason,
                }
            ],
            "usage": usage(end),
        }
    )


async def wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def stream_chunks(
    request: Request,
    events: AsyncIterator[Any],
    first: Any,
    completion: dict[str, Any],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """`chat.completion.chunk` events ending in `data: [DONE]`. If the client goes away the
    generator is closed, which cancels the answer (kotune.serving.backend.stream)."""
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**completion, "object": "chat.completion.chunk", "choices": [choice], **extra})

    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while True:
            if isinstance(event, Delta):
                yield chunk({"content": event.text})
            elif isinstance(event, Failure):
                yield sse(
                    {
                        "error": {
                            "message": event.message,
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
                return
            else:
                request.state.completion_tokens = event.completion_tokens
                yield chunk({}, event.finish_reason)
                if include_usage:
                    yield sse(
                        {
                            **completion,
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": usage(event),
                        }
                    )
                yield b"data: [DONE]\n\n"
                return
            event = await anext(events)
    finally:
        await events.aclose()
