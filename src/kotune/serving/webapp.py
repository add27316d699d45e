"""Putting the web chat on a FastAPI app: `install_web` adds the pages, /api, /static and the
security headers to any app (`kotune serve`'s, kotune.serving.serve); `create_web_app` makes an
app of its own (the web layer's tests). In front of another OpenAI-compatible server, without a
model here: `kotune serve --backend-url URL/v1`."""

from __future__ import annotations

from typing import Any

from kotune.serving.backend import ChatBackend
from kotune.serving.store import Store
from kotune.serving.web import HERE, WebSettings, WebState, web_router

# No inline script or style, nothing from another origin: a message that smuggles markup in
# cannot run, and the page works offline (every asset is in the package).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
WEB_PREFIXES = ("/api/", "/login", "/signup", "/logout", "/static/")


class SecurityHeaders:
    """Adds the headers above to the web app's responses (not to /v1, the model API), and
    `Cache-Control: no-store` to pages and /api: they hold a user's conversations."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path.startswith(WEB_PREFIXES)):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                headers += SECURITY_HEADERS
                if not path.startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                else:
                    headers += [h for h in message.get("headers", []) if h[0] == b"cache-control"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_web(
    app: Any, backend: ChatBackend, store: Store, settings: WebSettings, kiwi: Any = None
) -> WebState:
    """The web chat on `app`: GET / /login /signup, POST /login /signup /logout, /api/…,
    /static/…. Returns the state the routes share; call its `warm_up` in a thread at start."""
    from fastapi.staticfiles import StaticFiles

    from kotune.serving.webapi import api_router

    state = WebState(backend, store, settings, kiwi=kiwi)
    app.include_router(web_router(state))
    app.include_router(api_router(state))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(SecurityHeaders)
    return state


def create_web_app(
    backend: ChatBackend, store: Store, settings: WebSettings, kiwi: Any = None
) -> Any:
    """An app with only the web chat (tests, and the standalone front end below)."""
    from fastapi import FastAPI

    app = FastAPI(title="kotune web chat", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = install_web(app, backend, store, settings, kiwi)
    return app
