"""The chat page's JSON and streaming routes under /api: conversations, messages streamed as
server-sent events, preferences. Each needs a session; each change needs the CSRF token."""

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from kotune.serving.backend import BackendError, Persona, Usage
from kotune.serving.preferences import preference_prompt
from kotune.serving.sessions import CSRF_HEADER, Viewer, csrf_ok, find_viewer, same_origin
from kotune.serving.store import NotFound
from kotune.serving.store.repository import Turn
from kotune.serving.web import WebState

BODY_MAX_BYTES = 64 * 1024
log = logging.getLogger("kotune.serving")  # ids, counts and errors only: never message text


def model_messages(
    persona: Persona, preferences: list[dict[str, Any]], history: list[dict[str, str]]
) -> list[dict[str, str]]:
    """What the model is sent. With stored preferences, a system message of the persona's prompt
    plus `사용자 선호: …` (a request's own system message replaces the server's); without, no
    system message, and the server uses the persona's prompt as it is."""
    line = ""
    if persona.preferences:
        line = preference_prompt([(p["item"], p["polarity"]) for p in preferences])
    if not line:
        return history
    system = f"{persona.system_prompt}\n\n{line}" if persona.system_prompt else line
    return [{"role": "system", "content": system}, *history]


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def api_router(state: WebState) -> Any:
    router = APIRouter(prefix="/api")
    store, settings, backend = state.store, state.settings, state.backend

    async def viewer(request: Request) -> Viewer:
        found = await run_in_threadpool(find_viewer, store, request)
        if found is None:
            raise HTTPException(401, "로그인이 필요합니다.")
        return found

    Reader = Annotated[Viewer, Depends(viewer)]

    async def changer(request: Request, who: Reader) -> Viewer:
        """A state-changing request: from this site's page, with the session's CSRF token."""
        if not same_origin(request) or not csrf_ok(who, request.headers.get(CSRF_HEADER)):
            raise HTTPException(403, "잘못된 요청입니다. 페이지를 새로고침해 주세요.")
        return who

    Changer = Annotated[Viewer, Depends(changer)]

    async def json_body(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > BODY_MAX_BYTES:
            raise HTTPException(413, "메시지가 너무 깁니다.")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPException(400, "요청 본문이 올바른 JSON이 아닙니다.") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "요청 본문은 JSON 객체여야 합니다.")
        return data

    @router.get("/conversations")
    async def conversations(who: Reader) -> Any:
        return {"conversations": await run_in_threadpool(store.conversations, who.account.id)}

    @router.get("/conversations/{conversation_id}")
    async def conversation(conversation_id: str, who: Reader) -> Any:
        try:
            return await run_in_threadpool(store.conversation, who.account.id, conversation_id)
        except NotFound:
            raise HTTPException(404, "대화를 찾을 수 없습니다.") from None

    @router.delete("/conversations/{conversation_id}")
    async def delete_conversation(conversation_id: str, who: Changer) -> Any:
        try:
            await run_in_threadpool(store.delete_conversation, who.account.id, conversation_id)
        except NotFound:
            raise HTTPException(404, "대화를 찾을 수 없습니다.") from None
        return {"deleted": conversation_id}

    @router.get("/preferences")
    async def preferences(who: Reader) -> Any:
        return {"preferences": await run_in_threadpool(store.preferences, who.account.id)}

    @router.delete("/preferences/{preference_id}")
    async def delete_preference(preference_id: int, who: Changer) -> Any:
        try:
            await run_in_threadpool(store.delete_preference, who.account.id, preference_id)
        except NotFound:
            raise HTTPException(404, "선호 항목을 찾을 수 없습니다.") from None
        return {"deleted": preference_id}

    @router.post("/chat")
    async def chat(request: Request, who: Changer) -> Any:
        """Send a message; the answer streams back as events: meta (ids), delta (text pieces),
        then done (usage) or error. `conversation_id` null starts a new conversation."""
        data = await json_body(request)
        content, conversation_id = data.get("content"), data.get("conversation_id")
        if not isinstance(content, str) or not content.strip():
            raise HTTPException(400, "메시지를 입력해 주세요.")
        if len(content) > settings.max_message_chars:
            raise HTTPException(
                413, f"메시지는 {settings.max_message_chars}자까지 보낼 수 있습니다."
            )
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise HTTPException(400, "conversation_id는 문자열이어야 합니다.")
        statements = []
        if backend.persona.preferences:
            statements = await run_in_threadpool(state.read_preferences, content)
        try:
            turn = await run_in_threadpool(
                store.begin_turn,
                who.account.id,
                conversation_id,
                content,
                statements,
                settings.history_chars,
            )
        except NotFound:
            raise HTTPException(404, "대화를 찾을 수 없습니다.") from None
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            answer_events(state, turn), media_type="text/event-stream", headers=headers
        )

    return router


async def answer_events(state: WebState, turn: Turn) -> AsyncIterator[bytes]:
    """Stream the answer and store it as it ended. The row was committed as incomplete before
    this starts; it is completed here, or keeps what was streamed, marked incomplete, when the
    model fails or the client leaves (a killed server leaves it incomplete and empty)."""
    persona = state.backend.persona
    messages = model_messages(persona, turn.preferences, turn.history)
    yield sse(
        "meta",
        {
            "conversation_id": turn.conversation_id,
            "title": turn.title,
            "user_message_id": turn.user_message_id,
            "assistant_message_id": turn.assistant_message_id,
            "preferences": turn.preferences if persona.preferences else [],
        },
    )
    pieces: list[str] = []
    usage, error, complete = Usage(), None, False
    started, first_token_ms = time.perf_counter(), None
    try:
        async for piece in state.backend.stream(messages, max_tokens=state.settings.max_tokens):
            if isinstance(piece, Usage):
                usage = piece
                continue
            if first_token_ms is None:
                first_token_ms = round((time.perf_counter() - started) * 1000)
            pieces.append(piece)
            yield sse("delta", {"text": piece})
        complete = True
    except BackendError as failure:
        error = str(failure)
        log.warning("answer %d failed: %s", turn.assistant_message_id, error)
    finally:
        # also when the client has gone and this task is being cancelled: the write is shielded
        latency_ms = round((time.perf_counter() - started) * 1000)
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(
                state.store.finish_turn,
                turn.assistant_message_id,
                "".join(pieces),
                complete,
                (usage.prompt_tokens, usage.completion_tokens),
                first_token_ms,
                latency_ms,
            )
    if error is not None:
        yield sse("error", {"message": "답변을 만들지 못했습니다. 잠시 뒤 다시 시도해 주세요."})
        return
    yield sse(
        "done",
        {
            "assistant_message_id": turn.assistant_message_id,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "first_token_ms": first_token_ms,
            "latency_ms": latency_ms,
        },
    )
