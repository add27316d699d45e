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
from kotune.inference.engine import Delta, Done, Event, Failure, PromptTooLong
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
        changes = sampling_changes(body, prepared.max_new_tokens)
        choices = body.n or 1
        # n answers share the batch; a seeded request gives choice i the seed + i (repeatable,
        # and the choices differ when they sample)
        seeds = [None if body.seed is None else body.seed + i for i in range(choices)]
        streams = [
            backend.stream(prepared, backend.params(**changes | {"seed": seed})) for seed in seeds
        ]
        events = merge(streams)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": backend.model_id,
            "system_fingerprint": FINGERPRINT,
        }
        request.state.prompt_tokens = len(prepared.prompt.ids)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            first = await anext(events)  # a failure before any text is a plain HTTP error
            if isinstance(first[1], Failure):
                await events.aclose()
                raise ApiError(500, first[1].message, type="server_error")
            chunks = stream_chunks(request, events, first, completion, choices, include_usage)
            # no-cache, no proxy buffering: pieces reach a client behind nginx as they come
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        return await complete(request, events, completion, choices)

    return router


def unknown_model(model_id: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model_id}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def merge(streams: list[AsyncIterator[Event]]) -> AsyncIterator[tuple[int, Event]]:
    """The events of n answers as they come, each with its choice's index, until every answer
    has ended (Done or Failure). Closing it early cancels the answers still running."""
    queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

    async def pump(index: int, events: AsyncIterator[Event]) -> None:
        """One answer's events into the queue; one that breaks off ends as a Failure (never
        left waiting)."""
        end: Event = Failure("generation failed: the engine ended an answer without a reason")
        try:
            async for event in events:  # a stream ends after its Done or Failure
                if isinstance(event, Delta):
                    await queue.put((index, event))
                else:
                    end = event
        except Exception as error:  # noqa: BLE001 - e.g. the engine is shutting down
            end = Failure(f"generation failed: {type(error).__name__}: {error}")
        await queue.put((index, end))

    tasks = [asyncio.ensure_future(pump(i, events)) for i, events in enumerate(streams)]
    try:
        running = len(streams)
        while running:
            index, event = await queue.get()
            running -= not isinstance(event, Delta)
            yield index, event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # each stream cancels its answer


def usage_of(ends: list[Done]) -> dict[str, int]:
    """One prompt, n answers: the prompt counted once (as OpenAI counts it)."""
    prompt = ends[0].prompt_tokens
    completion = sum(end.completion_tokens for end in ends)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def complete(
    request: Request,
    events: AsyncIterator[tuple[int, Event]],
    completion: dict[str, Any],
    choices: int,
) -> JSONResponse:
    """The whole answers in one response; a client that disconnects cancels them."""
    pieces: list[list[str]] = [[] for _ in range(choices)]
    ends: dict[int, Done | Failure] = {}

    async def collect() -> None:
        async for index, event in events:
            if isinstance(event, Delta):
                pieces[index].append(event.text)
            else:
                ends[index] = event

    answer = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            await events.aclose()
    if answer.cancelled() or not answer.done():
        raise ApiError(499, "the client closed the request", type="client_closed")
    answer.result()
    failed = [end for end in ends.values() if isinstance(end, Failure)]
    if failed or len(ends) != choices:
        message = failed[0].message if failed else "the engine ended an answer without a reason"
        raise ApiError(500, message, type="server_error")
    done = [ends[i] for i in range(choices)]
    request.state.completion_tokens = sum(end.completion_tokens for end in done)
    return JSONResponse(
        {
            **completion,
            "object": "chat.completion",
            "choices": [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": "".join(pieces[i]),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": end.finish_reason,
                }
                for i, end in enumerate(done)
            ],
            "usage": usage_of(done),
        }
    )


async def wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def stream_chunks(
    request: Request,
    events: AsyncIterator[tuple[int, Event]],
    first: tuple[int, Event],
    completion: dict[str, Any],
    choices: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """`chat.completion.chunk` events ending in `data: [DONE]`: each choice opens with its
    role and closes with its finish_reason. If the client goes away the generator is closed,
    which cancels the answers (EngineBackend.stream)."""
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**completion, "object": "chat.completion.chunk", "choices": [choice], **extra})

    ends: list[Done] = []
    try:
        for index in range(choices):
            yield chunk(index, {"role": "assistant", "content": ""})
        index, event = first
        while True:
            if isinstance(event, Delta):
                yield chunk(index, {"content": event.text})
            elif isinstance(event, Failure):
                error = {"message": event.message, "type": "server_error", "param": None}
                yield sse({"error": {**error, "code": None}})
                return
            else:
                ends.append(event)
                yield chunk(index, {}, event.finish_reason)
            if len(ends) == choices:
                break
            index, event = await anext(events)
        request.state.completion_tokens = sum(end.completion_tokens for end in ends)
        if include_usage:
            usage_chunk = {**completion, "object": "chat.completion.chunk", "choices": []}
            yield sse({**usage_chunk, "usage": usage_of(ends)})
        yield b"data: [DONE]\n\n"
    finally:
        await events.aclose()
