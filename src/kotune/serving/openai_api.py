"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (streamed or not).

Errors are in OpenAI's shape with the status its client maps to an exception class (400
BadRequestError naming the parameter, 401, 404 for an unknown model, 400
`context_length_exceeded` for a prompt over the model's context, 500 when generation fails).
What a request may hold is in kotune.serving.chat_request.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from jinja2 import TemplateError

from kotune import __version__
from kotune.inference.engine import Delta, Done, Failure, PromptTooLong
from kotune.serving.chat_messages import plain_messages
from kotune.serving.chat_request import (
    ChatCompletionRequest,
    check_logit_bias,
    check_supported,
    context_error,
    sampling_changes,
    token_limit,
)
from kotune.serving.engine_backend import EngineBackend
from kotune.serving.errors import ApiError, check_api_key

FINGERPRINT = f"kotune-{__version__}"


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

    @router.api_route("/models", methods=["GET", "HEAD"])
    async def list_models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [model_card(backend_of(request))]}

    @router.api_route("/models/{model_id:path}", methods=["GET", "HEAD"])
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
        messages = plain_messages(body.messages)
        limit, limit_param = token_limit(body)
        try:  # tokenizing a long conversation takes a while: off the event loop
            prepared = await asyncio.to_thread(backend.prepare, messages, limit)
        except PromptTooLong as error:
            raise context_error(error, limit_param) from None
        except TemplateError as error:  # e.g. a template that wants user/assistant in turn
            raise ApiError(
                400, f"messages: the model's chat template refused them: {error}", param="messages"
            ) from None
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
