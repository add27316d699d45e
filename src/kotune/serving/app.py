"""`kotune serve`'s web application: a factory that takes the backend (the engine in this
process) and settings, and returns the FastAPI app with /health and the OpenAI-compatible /v1
API. More routers (the web page, accounts) are added by passing them in or with
`app.include_router`; they reach the backend as `request.app.state.backend`.

Every request is logged as one line: method, path, status, tokens and latency, never message
content (it can hold personal data).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from kotune import __version__
from kotune.serving.engine_backend import EngineBackend
from kotune.serving.errors import install_error_handlers
from kotune.serving.openai_api import build_router

log = logging.getLogger("kotune.serve")


class RequestLog:
    """ASGI middleware: one log line per request once its response has been sent (streamed
    responses included). Token counts come from `request.state` (set by the routes)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0}

        async def send_and_watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            state = scope.get("state", {})
            tokens = ""
            if "prompt_tokens" in state:
                tokens = (
                    f" prompt_tokens={state['prompt_tokens']}"
                    f" completion_tokens={state.get('completion_tokens', 0)}"
                )
            error = f" error={state['error_code']}" if state.get("error_code") else ""
            log.info(
                "%s %s %s%s%s %.0fms",
                scope["method"],
                scope["path"],
                status["code"] or 499,
                tokens,
                error,
                1000 * (time.perf_counter() - start),
            )


class ApiCors:
    """ASGI middleware: CORS on /v1 only, for the origins given (`kotune serve --cors-origin`),
    so that a page on another site can call the API with its key. No credentials: the web
    chat's session cookie is never sent cross-site, and its pages get no CORS headers."""

    def __init__(self, app: Any, origins: Sequence[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        # any request header: the official JavaScript client sends its own (X-Stainless-*)
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["*"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith("/v1/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    backend: EngineBackend | None,
    *,
    api_key: str | None = None,
    routers: Sequence[APIRouter] = (),
    model_id: str | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The app serving `backend`. `api_key`: required as `Authorization: Bearer KEY` on /v1
    (None: open). `cors_origins`: the sites whose pages may call /v1 (none by default).
    Without a backend (the web chat in front of another server) there is no /v1, and /health
    names `model_id`. At shutdown the backend is closed, after the callables in
    `app.state.closers` (sync or async: the web chat's backend and store)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for close in reversed(app.state.closers):
            result = close()
            if inspect.isawaitable(result):
                await result
        if backend is not None:
            backend.close()

    app = FastAPI(
        title="kotune",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.api_key = api_key
    app.state.closers = []
    install_error_handlers(app)
    if cors_origins and backend is not None:
        app.add_middleware(ApiCors, origins=cors_origins)
    app.add_middleware(RequestLog)

    @app.api_route("/health", methods=["GET", "HEAD"])  # HEAD: load balancers' probes
    async def health(request: Request) -> dict[str, Any]:
        if backend is None:
            return {"status": "ok", "model": model_id}
        return {"status": "ok", "model": backend.model_id, **backend.load()}

    if backend is not None:
        app.include_router(build_router())
    for router in routers:
        app.include_router(router)
    return app
