"""Log-in sessions and cross-site request checks: the cookie (random token, HttpOnly,
SameSite=Lax, Secure over https), the viewer behind a request, the Origin/Referer check and the
per-session CSRF token that every state-changing request must carry."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from kotune.serving.store.repository import Account, now

COOKIE = "kotune_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"  # the same token in a plain form (log out works without JavaScript)


@dataclass(frozen=True)
class Viewer:
    account: Account
    csrf_token: str
    token_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(store: Any, user_id: int, days: int) -> tuple[str, str]:
    """A new session: the cookie's token (only its hash is stored) and its CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.add_session(user_id, token_hash(token), csrf, now() + timedelta(days=days))
    return token, csrf


def find_viewer(store: Any, request: Any) -> Viewer | None:
    """The logged-in user of a request, or None (no cookie, unknown or expired session)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    hashed = token_hash(token)
    found = store.session_user(hashed)
    if found is None:
        return None
    account, csrf = found
    return Viewer(account, csrf, hashed)


def is_https(request: Any, trust_forwarded_proto: bool) -> bool:
    """https as the browser sees it: the connection's own scheme, or X-Forwarded-Proto from a
    reverse proxy — only when told to trust it (anyone can send the header)."""
    if request.url.scheme == "https":
        return True
    if trust_forwarded_proto:
        forwarded = request.headers.get("x-forwarded-proto", "")
        return forwarded.split(",")[0].strip().lower() == "https"
    return False


def set_session_cookie(response: Any, token: str, secure: bool, days: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=days * 24 * 3600,
        path="/",
        httponly=True,  # page scripts never see it
        samesite="lax",  # not sent on cross-site POSTs
        secure=secure,
    )


def clear_session_cookie(response: Any, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=secure)


def same_origin(request: Any) -> bool:
    """A browser names the page a request comes from in Origin (and Referer): it must be this
    server. A request with neither is not from a browser page, and cross-site attacks need one;
    `Origin: null` (a sandboxed or privacy-stripped page) is refused."""
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return urlsplit(origin).netloc.lower() == host and bool(host)
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() == host and bool(host)
    return True


def csrf_ok(viewer: Viewer, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), viewer.csrf_token.encode())
