"""The web app's security, over real HTTP: every page and API call needs a session, one user
never reaches another's data, cross-site requests are refused, passwords are never stored or
logged in clear, hostile strings are stored verbatim, cookies carry the right flags."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from conftest import PASSWORD, Browserish, start_web
from fastapi.routing import APIRoute

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/signup"), ("POST", "/signup")}


def test_every_page_and_api_call_needs_a_session(web):
    from kotune.serving.web import web_router
    from kotune.serving.webapi import api_router

    routers = (web_router(web.state), api_router(web.state))  # the app's routes, listed anew
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    checked = 0
    with httpx.Client(base_url=web.url, follow_redirects=False) as anonymous:
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            for method in route.methods - {"HEAD"}:
                if (method, route.path) in PUBLIC:
                    continue
                response = anonymous.request(method, path, headers={"Origin": web.url})
                if route.path.startswith("/api/"):
                    assert response.status_code == 401, (method, route.path)
                else:
                    assert response.status_code == 303, (method, route.path)
                    assert response.headers["location"] == "/login"
                checked += 1
        # a made-up session cookie is no session
        anonymous.cookies.set("kotune_session", "forged-token")
        assert anonymous.get("/api/conversations").status_code == 401
    assert checked >= 8  # /, /logout and the six /api routes


def test_another_users_conversation_is_404(client_factory):
    minji, junho = client_factory(), client_factory()
    assert minji.signup("minji").status_code == 303
    assert junho.signup("junho").status_code == 303
    events = minji.chat("오이는 싫어요. 점심 추천해 줘")
    conversation = events[0][1]["conversation_id"]
    preference = events[0][1]["preferences"][0]["id"]

    assert junho.http.get(f"/api/conversations/{conversation}").status_code == 404
    assert junho.http.get("/api/conversations").json() == {"conversations": []}
    assert junho.http.get("/api/preferences").json() == {"preferences": []}
    headers = junho.headers()
    assert (
        junho.http.delete(f"/api/conversations/{conversation}", headers=headers).status_code == 404
    )
    assert junho.http.delete(f"/api/preferences/{preference}", headers=headers).status_code == 404
    response = junho.http.post(
        "/api/chat", json={"conversation_id": conversation, "content": "끼어들기"}, headers=headers
    )
    assert response.status_code == 404
    # a conversation id that exists nowhere is the same 404 (ids reveal nothing)
    assert junho.http.get("/api/conversations/" + "0" * 32).status_code == 404

    mine = minji.http.get(f"/api/conversations/{conversation}").json()
    assert [m["content"] for m in mine["messages"]][0] == "오이는 싫어요. 점심 추천해 줘"
    assert len(mine["messages"]) == 2  # junho's attempt added nothing
    assert minji.http.get("/api/preferences").json()["preferences"][0]["item"] == "오이"


def test_cross_site_requests_are_refused(client_factory, web):
    minji = client_factory()
    minji.signup("minji")
    body = {"conversation_id": None, "content": "안녕"}
    good = minji.headers()
    cases = {
        "no token": {"Origin": web.url},
        "wrong token": {"Origin": web.url, "X-CSRF-Token": "x" * 43},
        "other origin": {**good, "Origin": "http://evil.example"},
        "null origin": {**good, "Origin": "null"},
        "other referer": {
            "Referer": "http://evil.example/page",
            "X-CSRF-Token": good["X-CSRF-Token"],
        },
    }
    for name, headers in cases.items():
        response = minji.http.post("/api/chat", json=body, headers=headers)
        assert response.status_code == 403, name
    assert minji.http.get("/api/conversations").json() == {"conversations": []}
    # a log-in form posted from another site, and a log-out without the token
    evil = minji.http.post(
        "/login",
        data={"username": "minji", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert evil.status_code == 403 and "set-cookie" not in evil.headers
    assert minji.http.post("/logout", headers={"Origin": web.url}).status_code == 403
    assert minji.http.get("/").status_code == 200  # still logged in
    # the page's own way works
    assert minji.http.post("/api/chat", json=body, headers=good).status_code == 200


def test_passwords_are_never_stored_or_logged_in_clear(client_factory, web, caplog):
    password = "Zebra-Kimchi-7719"
    with caplog.at_level(logging.DEBUG):
        minji = client_factory()
        assert minji.signup("minji", password).status_code == 303
        minji.http.post("/logout", data={"csrf_token": minji.csrf}, headers={"Origin": web.url})
        assert minji.login("minji", "wrong-password-1").status_code == 401
        assert minji.login("minji", password).status_code == 303
    web.store.engine.dispose()  # flush SQLite's WAL into the file
    stored = b"".join(
        p.read_bytes() for p in web.db_path.parent.iterdir() if p.name.startswith("chat.db")
    )
    assert password.encode() not in stored and b"wrong-password-1" not in stored
    account = web.store.user_by_name("minji")
    assert account.password_hash.startswith("$argon2id$")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert password not in logged and "wrong-password-1" not in logged


def test_hostile_strings_are_stored_and_returned_verbatim(client_factory):
    minji = client_factory()
    minji.signup("minji")
    hostile = ["'; DROP TABLE users;--", '<script>alert("x")</script><img src=x onerror=alert(1)>']
    conversation = None
    for text in hostile:
        events = minji.chat(text, conversation)
        conversation = events[0][1]["conversation_id"]
    messages = minji.http.get(f"/api/conversations/{conversation}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == hostile
    assert hostile[1] in messages[-1]["content"]  # the model's echo, stored as text too
    # the users table is still there and still holds minji
    second = Browserish(minji.base_url)
    assert second.login("minji").status_code == 303
    second.close()


def test_markup_in_the_persona_is_escaped_on_the_page(scripted, tmp_path):
    from kotune.serving.backend import Persona

    persona = Persona("<b>메뉴</b>", "<script>alert(1)</script>", "", preferences=False)
    server, web = start_web(scripted, tmp_path / "chat.db", persona)
    try:
        page = httpx.get(f"{web.url}/login").text
        assert "&lt;b&gt;메뉴&lt;/b&gt;" in page and "<script>alert(1)" not in page
    finally:
        server.stop()
        web.store.close()


def test_cookie_flags_and_security_headers(client_factory, web):
    minji = client_factory()
    response = minji.form("/signup", username="minji", password=PASSWORD)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert response.headers["cache-control"] == "no-store"
    # X-Forwarded-Proto is ignored unless the server is told it sits behind a TLS proxy
    forwarded = minji.http.post(
        "/login",
        data={"username": "minji", "password": PASSWORD},
        headers={"Origin": web.url, "X-Forwarded-Proto": "https"},
    )
    assert "secure" not in forwarded.headers["set-cookie"].lower()
    page = minji.http.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_secure_cookie_behind_a_trusted_tls_proxy(scripted, tmp_path):
    server, web = start_web(scripted, tmp_path / "chat.db", trust_forwarded_proto=True)
    try:
        response = httpx.post(
            f"{web.url}/signup",
            data={"username": "minji", "password": PASSWORD},
            headers={"Origin": web.url, "X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()
    finally:
        server.stop()
        web.store.close()


def test_signup_closed_unless_allowed(scripted, tmp_path):
    server, web = start_web(scripted, tmp_path / "chat.db", allow_signup=False)
    try:
        assert httpx.get(f"{web.url}/signup").status_code == 403
        response = httpx.post(
            f"{web.url}/signup",
            data={"username": "mallory", "password": PASSWORD},
            headers={"Origin": web.url},
        )
        assert response.status_code == 403 and web.store.user_by_name("mallory") is None
        assert "/signup" not in httpx.get(f"{web.url}/login").text
    finally:
        server.stop()
        web.store.close()


@pytest.mark.parametrize(
    ("host", "open_"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.0.10", False),
        ("example.com", False),
    ],
)
def test_signup_is_open_by_default_only_on_loopback(host, open_):
    from kotune.serving.accounts import signup_open_by_default

    assert signup_open_by_default(host) is open_


def test_failed_logins_are_slowed_down_per_account(client_factory, web):
    minji = client_factory()
    minji.signup("minji")
    other = client_factory()
    for _ in range(web.state.throttle.free_per_account):
        assert other.login("minji", "not-the-password").status_code == 401
    # the account now waits, even for the right password; a retry says when to come back
    blocked = other.login("minji", PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    # another account from the same address is still heard
    assert other.signup("junho").status_code == 303
