"""Putting the web chat on a FastAPI app: `install_web` adds the pages, /api, /static and the
security headers to any app (`kotune serve`'s); `create_web_app` makes an app of its own.

Standalone, in front of any OpenAI-compatible server (vLLM, another `kotune serve`):
    python -m kotune.serving.webapp --backend-url http://127.0.0.1:8001/v1 --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from kotune.serving.backend import ChatBackend, OpenAIBackend, Persona
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kotune.serving.webapp",
        description="the web chat in front of an OpenAI-compatible server",
    )
    parser.add_argument("--backend-url", required=True, help="e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--backend-key", help="its API key (default: $KOTUNE_BACKEND_KEY)")
    parser.add_argument("--backend-model", help="the model id to use (default: its first)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", help="a SQLAlchemy URL (default: under the user's data folder)")
    parser.add_argument(
        "--allow-signup", action="store_true", help="open sign-up on a non-loopback address"
    )
    parser.add_argument(
        "--trust-forwarded-proto",
        action="store_true",
        help="behind a TLS proxy: X-Forwarded-Proto: https makes cookies Secure",
    )
    parser.add_argument("--display-name", default="kotune", help="the persona's name on the page")
    parser.add_argument("--description", default="", help="one line about the persona")
    parser.add_argument("--system-prompt", default="", help="the persona's system prompt")
    parser.add_argument(
        "--preferences", action="store_true", help="read food preferences (the menu persona)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    import uvicorn

    from kotune.serving.accounts import signup_open_by_default
    from kotune.serving.store import default_db_url, display_url, open_store

    args = build_parser().parse_args(argv)
    url = args.db or default_db_url()
    store = open_store(url)
    print(f"kotune: database {display_url(url)}", file=sys.stderr, flush=True)
    persona = Persona(args.display_name, args.description, args.system_prompt, args.preferences)
    key = args.backend_key or os.environ.get("KOTUNE_BACKEND_KEY")
    backend = asyncio.run(OpenAIBackend.connect(args.backend_url, key, persona, args.backend_model))
    settings = WebSettings(
        allow_signup=args.allow_signup or signup_open_by_default(args.host),
        trust_forwarded_proto=args.trust_forwarded_proto,
    )
    app = create_web_app(backend, store, settings)
    threading.Thread(target=app.state.web.warm_up, daemon=True).start()
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-Proto from 127.0.0.1 as true
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, log_level="warning")
    return 0


if __name__ == "__main__":
    from kotune.errors import run_cli

    run_cli(main)
