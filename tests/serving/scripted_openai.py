"""A scripted OpenAI-compatible server for the web app's tests and bench/web_load.py: real HTTP,
real streamed SSE in the `chat.completion.chunk` shape, a reply computed from the request (no
model). Phase 2 swaps in a live `kotune serve` on a tiny adapter.

The reply repeats the question (`질문: …`) and, when a system message carries `사용자 선호:`,
says so (`선호 반영: …`), so tests can see what reached the model. Markers in the last user
message: `[[slow]]` streams 40 pieces 0.25 s apart; `[[fail]]` answers HTTP 500; `[[break]]`
drops the connection after two pieces.

    python tests/serving/scripted_openai.py --port 8001 [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL = "scripted-persona"


def reply_for(messages: list[dict[str, Any]]) -> str:
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    reply = f"질문: {question} — 이렇게 답합니다."
    if "사용자 선호:" in system:
        reply += " 선호 반영: " + system.split("사용자 선호:", 1)[1].strip()
    return reply


def pieces_of(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def chunk(model: str, created: int, delta: dict, finish: str | None = None, usage=None) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


def create_app(delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()
    app.state.requests = []  # every request body, for tests to inspect
    app.state.active = 0
    app.state.most_active = 0
    app.state.cancelled = 0

    @app.get("/v1/models")
    async def models() -> Any:
        return {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        app.state.requests.append(body)
        messages = body.get("messages") or []
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if "[[fail]]" in question:
            error = {
                "message": "scripted failure",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            return JSONResponse({"error": error}, status_code=500)
        text = reply_for(messages)
        pieces = pieces_of(text)
        pause = delay_s
        if "[[slow]]" in question:
            pieces, pause = (pieces * 40)[:40], 0.25
        usage = {
            "prompt_tokens": sum(len(m["content"]) for m in messages),
            "completion_tokens": len(pieces),
            "total_tokens": sum(len(m["content"]) for m in messages) + len(pieces),
        }
        created = int(time.time())
        if not body.get("stream"):
            return {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": created,
                "model": body.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = body.get("model", MODEL)

        async def events():
            app.state.active += 1
            app.state.most_active = max(app.state.most_active, app.state.active)
            try:
                yield chunk(model, created, {"role": "assistant", "content": ""})
                for index, piece in enumerate(pieces):
                    if "[[break]]" in question and index == 2:
                        raise RuntimeError("scripted broken stream")
                    if pause:
                        await asyncio.sleep(pause)
                    yield chunk(model, created, {"content": piece})
                yield chunk(model, created, {}, finish="stop")
                if include_usage:
                    yield chunk(model, created, {}, usage=usage)
                yield b"data: [DONE]\n\n"
            except asyncio.CancelledError:
                app.state.cancelled += 1
                raise
            finally:
                app.state.active -= 1

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause before each piece")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.delay_ms / 1000), host=args.host, port=args.port, log_level="warning"
    )
