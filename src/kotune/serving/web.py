"""The chat page and its log-in and sign-up pages, as an APIRouter over one `WebState`.
The page's JSON and streaming routes are in webapi.py; webapp.py puts both on an app."""

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from kotune.serving.accounts import (
    AccountError,
    LoginThrottle,
    check_password,
    check_username,
    hash_password,
    normalize_username,
    verify_password,
)
from kotune.serving.backend import ChatBackend
from kotune.serving.sessions import (
    CSRF_FIELD,
    clear_session_cookie,
    csrf_ok,
    find_viewer,
    is_https,
    same_origin,
    set_session_cookie,
    start_session,
)
from kotune.serving.store import Store, UserExists

HERE = Path(__file__).resolve().parent
FORM_MAX_BYTES = 16 * 1024  # a log-in form is a few hundred bytes


@dataclass(frozen=True)
class WebSettings:
    allow_signup: bool  # see accounts.signup_open_by_default for the default
    trust_forwarded_proto: bool = False  # behind a TLS proxy that sets X-Forwarded-Proto
    session_days: int = 30
    max_message_chars: int = 4000
    history_chars: int = 6000  # the latest turns sent along with a message (the engine trims more)
    max_tokens: int | None = None  # None: the model's own setting


@dataclass
class WebState:
    """What every route needs: the model, the store, the settings, and shared helpers."""

    backend: ChatBackend
    store: Store
    settings: WebSettings
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    kiwi: Any = None  # made on first use (or by warm_up); tests hand in one shared instance
    _kiwi_lock: threading.Lock = field(default_factory=threading.Lock)

    def read_preferences(self, text: str) -> list[tuple[str, str]]:
        """The preferences a message states (blocking: Kiwi; run it in a worker thread)."""
        from kotune.serving.preferences import read_preferences

        with self._kiwi_lock:  # one Kiwi, one caller at a time (a message takes ~1 ms)
            if self.kiwi is None:
                from kotune.serving.preferences import new_kiwi

                self.kiwi = new_kiwi()
            return [(s.item, s.polarity) for s in read_preferences(text, self.kiwi)]

    def warm_up(self) -> None:
        """Load Kiwi's model now (seconds, ~100 MB) rather than on the first user's message.
        Run it in a thread at start; a message that comes sooner waits for it."""
        if self.backend.persona.preferences:
            self.read_preferences("매운 거 좋아해요")


def templates() -> Any:
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(HERE / "templates"))  # autoescaped: .html


def client_address(request: Any) -> str:
    return request.client.host if request.client else "unknown"


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of each), at most FORM_MAX_BYTES."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


def web_router(state: WebState) -> Any:
    """GET / (the chat), GET/POST /login and /signup, POST /logout."""
    router = APIRouter()
    pages = templates()
    persona = state.backend.persona
    settings = state.settings

    def page(request: Request, name: str, status: int = 200, **values: Any) -> Any:
        values = {"persona": persona, "signup_open": settings.allow_signup, **values}
        return pages.TemplateResponse(request, name, values, status_code=status)

    def logged_in(request: Request, token: str) -> Any:
        response = RedirectResponse("/", status_code=303)
        secure = is_https(request, settings.trust_forwarded_proto)
        set_session_cookie(response, token, secure, settings.session_days)
        return response

    @router.get("/", include_in_schema=False)
    async def chat_page(request: Request) -> Any:
        viewer = await run_in_threadpool(find_viewer, state.store, request)
        if viewer is None:
            return RedirectResponse("/login", status_code=303)
        return page(
            request,
            "chat.html",
            viewer=viewer.account,
            csrf_token=viewer.csrf_token,
            max_chars=settings.max_message_chars,  # checked in the page: no silent cut
        )

    @router.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Any:
        if await run_in_threadpool(find_viewer, state.store, request):
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html")

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        if not same_origin(request):
            return page(
                request, "login.html", 403, error="다른 사이트에서 온 요청은 받지 않습니다."
            )
        form = await read_form(request)
        username = normalize_username(form.get("username", ""))
        password = form.get("password", "")
        address = client_address(request)
        wait = state.throttle.wait_s(username, address)
        if wait > 0:
            seconds = int(wait) + 1
            response = page(
                request,
                "login.html",
                429,
                username=username,
                error=f"로그인 시도가 너무 많습니다. {seconds}초 뒤에 다시 해 주세요.",
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        account = await run_in_threadpool(state.store.user_by_name, username)
        stored = account.password_hash if account else None
        if not await run_in_threadpool(verify_password, stored, password):
            state.throttle.failed(username, address)
            return page(
                request,
                "login.html",
                401,
                username=username,
                error="아이디 또는 비밀번호가 맞지 않습니다.",
            )
        state.throttle.succeeded(username)
        token, _ = await run_in_threadpool(
            start_session, state.store, account.id, settings.session_days
        )
        return logged_in(request, token)

    @router.get("/signup", include_in_schema=False)
    async def signup_page(request: Request) -> Any:
        if not settings.allow_signup:
            return page(request, "signup.html", 403, closed=True)
        return page(request, "signup.html")

    @router.post("/signup", include_in_schema=False)
    async def signup(request: Request) -> Any:
        if not settings.allow_signup:
            return page(request, "signup.html", 403, closed=True)
        if not same_origin(request):
            return page(
                request, "signup.html", 403, error="다른 사이트에서 온 요청은 받지 않습니다."
            )
        form = await read_form(request)
        display_name = " ".join(form.get("display_name", "").split())[:100]
        try:
            username = check_username(form.get("username", ""))
            password = check_password(form.get("password", ""))
        except AccountError as error:
            return page(
                request,
                "signup.html",
                400,
                username=form.get("username", ""),
                display_name=display_name,
                error=str(error),
            )
        password_hash = await run_in_threadpool(hash_password, password)
        try:
            account = await run_in_threadpool(
                state.store.add_user, username, password_hash, display_name
            )
        except UserExists:
            return page(
                request,
                "signup.html",
                409,
                username=username,
                display_name=display_name,
                error="이미 있는 아이디입니다.",
            )
        token, _ = await run_in_threadpool(
            start_session, state.store, account.id, settings.session_days
        )
        return logged_in(request, token)

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Any:
        viewer = await run_in_threadpool(find_viewer, state.store, request)
        if viewer is None:
            return RedirectResponse("/login", status_code=303)
        form = await read_form(request)
        sent = request.headers.get("x-csrf-token") or form.get(CSRF_FIELD)
        if not same_origin(request) or not csrf_ok(viewer, sent):
            return page(request, "login.html", 403, error="잘못된 요청입니다. 새로고침해 주세요.")
        await run_in_threadpool(state.store.end_session, viewer.token_hash)
        response = RedirectResponse("/login", status_code=303)
        clear_session_cookie(response, is_https(request, settings.trust_forwarded_proto))
        return response

    return router
