"""The web app's security against a real `kotune serve` process (the tiny menu adapter on the
in-process engine; the flag tests in front of the scripted model with --backend-url): every
page and API call needs a session, one user never reaches another's data, cross-site requests
are refused, passwords are never stored or logged in clear, hostile strings are stored
verbatim, a bad request is one clear error and others are still served, no message text or
personal data in the server's log, cookies carry the right flags."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import httpx
import pytest
from conftest import PASSWORD, Browserish, start_serve, unique_name
from fastapi.routing import APIRoute

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/signup"), ("POST", "/signup")}
PHONE = "010-2345-6789"  # personal data in a message: never in the server's log


def test_every_page_and_api_call_needs_a_session(live):
    from kotune.serving.backend import Persona
    from kotune.serving.web import WebSettings, WebState, web_router
    from kotune.serving.webapi import api_router

    # the routes kotune serve installs, listed anew from its routers
    state = WebState(SimpleNamespace(persona=Persona("x")), None, WebSettings(True))
    routers = (web_router(state), api_router(state))
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    checked = 0
    with httpx.Client(base_url=live.url, follow_redirects=False) as anonymous:
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            for method in route.methods - {"HEAD"}:
                if (method, route.path) in PUBLIC:
                    continue
                response = anonymous.request(method, path, headers={"Origin": live.url})
                if route.path.startswith("/api/"):
                    assert response.status_code == 401, (method, route.path)
                    assert response.json() == {"detail": "로그인이 필요합니다."}
                else:
                    assert response.status_code == 303, (method, route.path)
                    assert response.headers["location"] == "/login"
                checked += 1
        # a made-up session cookie is no session
        anonymous.cookies.set("kotune_session", "forged-token")
        assert anonymous.get("/api/conversations").status_code == 401
    assert checked >= 8  # /, /logout and the six /api routes


def test_another_users_conversation_is_404(live_client):
    minji, junho = live_client(), live_client()
    assert minji.signup(unique_name("minji")).status_code == 303
    assert junho.signup(unique_name("junho")).status_code == 303
    events = minji.chat("오이는 싫어요. 점심 추천해 줘")
    assert events[-1][0] == "done"
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
    assert mine["messages"][1]["content"] and mine["messages"][1]["complete"] is True
    assert minji.http.get("/api/preferences").json()["preferences"][0]["item"] == "오이"


def test_cross_site_requests_are_refused(live_client, live):
    minji = live_client()
    name = unique_name("minji")
    minji.signup(name)
    body = {"conversation_id": None, "content": "안녕"}
    good = minji.headers()
    cases = {
        "no token": {"Origin": live.url},
        "wrong token": {"Origin": live.url, "X-CSRF-Token": "x" * 43},
        "other origin": {**good, "Origin": "http://evil.example"},
        "null origin": {**good, "Origin": "null"},
        "other referer": {
            "Referer": "http://evil.example/page",
            "X-CSRF-Token": good["X-CSRF-Token"],
        },
    }
    for case, headers in cases.items():
        response = minji.http.post("/api/chat", json=body, headers=headers)
        assert response.status_code == 403, case
    assert minji.http.get("/api/conversations").json() == {"conversations": []}
    # a log-in form posted from another site, and a log-out without the token
    evil = minji.http.post(
        "/login",
        data={"username": name, "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert evil.status_code == 403 and "set-cookie" not in evil.headers
    assert minji.http.post("/logout", headers={"Origin": live.url}).status_code == 403
    assert minji.http.get("/").status_code == 200  # still logged in
    # the page's own way works
    assert minji.http.post("/api/chat", json=body, headers=good).status_code == 200


def test_passwords_and_messages_never_in_clear_in_the_database_file_or_log(live_client, live):
    password, wrong = "Zebra-Kimchi-7719", "wrong-password-1"
    name = unique_name("minji")
    minji = live_client()
    assert minji.signup(name, password).status_code == 303
    events = minji.chat(f"제 번호는 {PHONE}이고 땅콩 알레르기 있어요")
    assert events[-1][0] == "done"
    minji.http.post("/logout", data={"csrf_token": minji.csrf}, headers={"Origin": live.url})
    assert minji.login(name, wrong).status_code == 401
    assert minji.login(name, password).status_code == 303

    store = live.store()
    try:
        account = store.user_by_name(name)
        assert account.password_hash.startswith("$argon2id$")
        store.engine.dispose()
    finally:
        store.close()
    stored = b"".join(
        p.read_bytes() for p in live.db_path.parent.iterdir() if p.name.startswith("chat.db")
    )
    assert password.encode() not in stored and wrong.encode() not in stored
    log = live.log_text()
    assert "POST /api/chat 200" in log and "POST /login 401" in log  # the log is written
    for secret in (password, wrong, PHONE, "땅콩", "알레르기"):
        assert secret not in log, secret


def test_hostile_strings_are_stored_and_returned_verbatim(live_client):
    minji = live_client()
    name = unique_name("minji")
    minji.signup(name)
    hostile = ["'; DROP TABLE users;--", '<script>alert("x")</script><img src=x onerror=alert(1)>']
    conversation = None
    for text in hostile:
        events = minji.chat(text, conversation)
        assert events[-1][0] == "done"
        conversation = events[0][1]["conversation_id"]
    messages = minji.http.get(f"/api/conversations/{conversation}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == hostile
    titles = [c["title"] for c in minji.http.get("/api/conversations").json()["conversations"]]
    assert titles == [hostile[0]]
    # the users table is still there and still holds minji
    second = Browserish(minji.base_url)
    assert second.login(name).status_code == 303
    second.close()


def test_a_bad_request_is_one_clear_error_and_others_are_still_served(live_client, live):
    minji, junho = live_client(), live_client()
    minji.signup(unique_name("minji"))
    junho.signup(unique_name("junho"))
    post = minji.http.post
    bad = {
        "not JSON": (post("/api/chat", content=b"{nope", headers=minji.headers()), 400),
        "a list": (post("/api/chat", json=[1, 2], headers=minji.headers()), 400),
        "no content": (post("/api/chat", json={"content": "  "}, headers=minji.headers()), 400),
        "a number id": (
            post("/api/chat", json={"conversation_id": 7, "content": "a"}, headers=minji.headers()),
            400,
        ),
        "too long": (
            post("/api/chat", json={"content": "가" * 5000}, headers=minji.headers()),
            413,
        ),
        "huge body": (
            post(
                "/api/chat",
                content=b'{"content": "' + b"a" * 70_000 + b'"}',
                headers=minji.headers(),
            ),
            413,
        ),
        "not UTF-8": (post("/api/chat", content=b"\xff\xfe{}", headers=minji.headers()), 400),
        "bad id": (minji.http.delete("/api/preferences/abc", headers=minji.headers()), 422),
    }
    for case, (response, status) in bad.items():
        assert response.status_code == status, (case, response.text)
        detail = response.json()["detail"]
        assert detail and (isinstance(detail, list) or "\n" not in detail), case
        assert "Traceback" not in response.text, case
    # the server goes on: both users chat, and the failed sends stored nothing
    assert junho.chat("김치찌개 추천해 줘")[-1][0] == "done"
    assert minji.chat("된장찌개는 어때요?")[-1][0] == "done"
    assert len(minji.http.get("/api/conversations").json()["conversations"]) == 1
    assert "Traceback" not in live.log_text()


def test_a_message_too_long_for_the_model_is_an_error_event_and_stored_incomplete(live_client):
    """Over the model's context (the tiny model has 256 tokens): the answer fails cleanly."""
    minji = live_client()
    minji.signup(unique_name("minji"))
    events = minji.chat("맛있는 점심 메뉴를 추천해 주세요. " * 80)
    assert [name for name, _ in events] == ["meta", "error"]
    assert "다시 시도" in events[-1][1]["message"]
    conversation = events[0][1]["conversation_id"]
    answer = minji.http.get(f"/api/conversations/{conversation}").json()["messages"][1]
    assert answer["complete"] is False and answer["content"] == ""
    assert minji.chat("짧은 질문", conversation)[-1][0] == "done"  # the next one is answered


def front_of_scripted(scripted, menu_adapter, folder, *flags, **persona):
    """`kotune serve --backend-url` (the scripted model) with FLAGS, the persona from a copy of
    the menu adapter's kotune.json with PERSONA's fields changed."""
    adapter = folder / "adapter"
    adapter.mkdir(parents=True)
    settings = json.loads((menu_adapter / "kotune.json").read_text(encoding="utf-8"))
    settings.update(persona)
    (adapter / "kotune.json").write_text(json.dumps(settings, ensure_ascii=False), "utf-8")
    args = ["--backend-url", f"{scripted.url}/v1", "--adapter", str(adapter), *flags]
    return start_serve(args, folder / "serve")


def test_behind_a_tls_proxy_open_signup_and_markup_in_the_persona(scripted, menu_adapter, tmp_path):
    """0.0.0.0 with --allow-signup and --trust-forwarded-proto: sign-up is open, the proxy's
    X-Forwarded-Proto: https makes the cookie Secure; the persona's markup is shown as text."""
    server = front_of_scripted(
        scripted,
        menu_adapter,
        tmp_path,
        "--host",
        "0.0.0.0",
        "--allow-signup",
        "--trust-forwarded-proto",
        display_name="<b>메뉴</b>",
        description="<script>alert(1)</script>",
    )
    try:
        page = httpx.get(f"{server.url}/login").text
        assert "&lt;b&gt;메뉴&lt;/b&gt;" in page and "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert httpx.get(f"{server.url}/signup").status_code == 200
        response = httpx.post(
            f"{server.url}/signup",
            data={"username": "minji", "password": PASSWORD},
            headers={"Origin": server.url, "X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()
    finally:
        server.stop()


def test_cookie_flags_and_security_headers(live_client, live):
    minji = live_client()
    name = unique_name("minji")
    response = minji.form("/signup", username=name, password=PASSWORD)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert response.headers["cache-control"] == "no-store"
    # X-Forwarded-Proto is ignored unless the server is told it sits behind a TLS proxy
    forwarded = minji.http.post(
        "/login",
        data={"username": name, "password": PASSWORD},
        headers={"Origin": live.url, "X-Forwarded-Proto": "https"},
    )
    assert "secure" not in forwarded.headers["set-cookie"].lower()
    page = minji.http.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in httpx.get(f"{live.url}/health").headers  # not /v1's


def test_signup_closed_unless_allowed_and_the_front_mode_loads_no_model(
    scripted, menu_adapter, tmp_path
):
    """On 0.0.0.0 sign-up is closed unless --allow-signup; the web chat in front of another
    server says so at start, loads no model and names the served one on /health."""
    from kotune.serving.accounts import signup_open_by_default

    assert not signup_open_by_default("0.0.0.0")
    server = front_of_scripted(scripted, menu_adapter, tmp_path, "--host", "0.0.0.0")
    try:
        assert httpx.get(f"{server.url}/signup").status_code == 403
        response = httpx.post(
            f"{server.url}/signup",
            data={"username": "mallory", "password": PASSWORD},
            headers={"Origin": server.url},
        )
        assert response.status_code == 403
        assert "/signup" not in httpx.get(f"{server.url}/login").text
        log = server.log_text()
        assert "sign-up closed" in log and "no model loaded here" in log
        assert httpx.get(f"{server.url}/health").json()["model"] == "scripted-persona"
    finally:
        server.stop()
    store = server.store()
    try:
        assert store.user_by_name("mallory") is None
    finally:
        store.close()


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


def test_failed_logins_are_slowed_down_per_account(live_client):
    from kotune.serving.accounts import LoginThrottle

    minji = live_client()
    name = unique_name("minji")
    minji.signup(name)
    other = live_client()
    for _ in range(LoginThrottle.free_per_account):
        assert other.login(name, "not-the-password").status_code == 401
    # the account now waits, even for the right password; a retry says when to come back
    blocked = other.login(name, PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    # another account from the same address is still heard
    assert other.signup(unique_name("junho")).status_code == 303


CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def installed_routes(state) -> list[APIRoute]:
    """The routes install_web puts on an app, listed anew from its routers."""
    from kotune.serving.web import web_router
    from kotune.serving.webapi import api_router

    routers = (web_router(state), api_router(state))
    return [r for router in routers for r in router.routes if isinstance(r, APIRoute)]


def test_every_state_changing_route_refuses_cross_site_requests(web):
    """Each POST/DELETE route the web app has (listed from the app, so a new one is checked
    too), sent with the session cookie from another site — with the right CSRF token even — or
    from this site without the token, is refused and changes nothing."""
    minji = Browserish(web.url)
    name = unique_name("minji")
    minji.signup(name)
    meta = minji.chat("오이는 싫어요")[0][1]
    ids = {
        "conversation_id": meta["conversation_id"],
        "preference_id": str(meta["preferences"][0]["id"]),
    }
    evil = "http://evil.example"
    cases = {
        "other origin, right token": {"Origin": evil, "X-CSRF-Token": minji.csrf},
        "null origin, right token": {"Origin": "null", "X-CSRF-Token": minji.csrf},
        "other referer, right token": {"Referer": f"{evil}/x", "X-CSRF-Token": minji.csrf},
        "this site, no token": {"Origin": web.url},
        "this site, another session's token": {"Origin": web.url, "X-CSRF-Token": "x" * 43},
    }
    account = {"username": unique_name("mallory"), "password": PASSWORD, "content": "evil"}
    checked = 0
    for route in installed_routes(web.state):
        path = route.path.format(**ids)
        public = route.path in ("/login", "/signup")  # no session yet: the origin decides
        for method in sorted(route.methods & CHANGING):
            for case, headers in cases.items():
                if public and "this site" in case:
                    continue
                if route.path == "/api/chat":
                    response = minji.http.request(
                        method, path, json={"content": "evil"}, headers=headers
                    )
                else:  # a plain form carries the case's token as a field too
                    form = {**account, "csrf_token": headers.get("X-CSRF-Token", "")}
                    response = minji.http.request(method, path, data=form, headers=headers)
                assert response.status_code == 403, (method, route.path, case)
                assert "set-cookie" not in response.headers, (method, route.path, case)
                checked += 1
    assert checked >= 5 * 4 + 3 * 2  # logout and the three /api changes; log-in and sign-up
    # nothing changed: still logged in, one conversation of two messages, the preference kept
    assert minji.http.get("/").status_code == 200
    conversations = minji.http.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in conversations] == [ids["conversation_id"]]
    conversation = minji.http.get(f"/api/conversations/{ids['conversation_id']}").json()
    assert len(conversation["messages"]) == 2
    assert [p["item"] for p in minji.http.get("/api/preferences").json()["preferences"]] == ["오이"]
    assert web.store.user_by_name(account["username"]) is None  # no account made cross-site
    minji.close()


def test_log_out_ends_the_session_on_the_server(web):
    """The cookie of a logged-out session, kept by someone (a copy, another tab, a thief), opens
    nothing: the session is gone from the store, not only from the browser."""
    minji = Browserish(web.url)
    minji.signup(unique_name("minji"))
    token, csrf = minji.http.cookies["kotune_session"], minji.csrf
    response = minji.http.post("/logout", data={"csrf_token": csrf}, headers={"Origin": web.url})
    assert response.status_code == 303
    assert 'kotune_session=""' in response.headers["set-cookie"]  # the browser's copy cleared
    thief = httpx.Client(base_url=web.url, cookies={"kotune_session": token})
    with thief:
        assert thief.get("/", follow_redirects=False).headers["location"] == "/login"
        assert thief.get("/api/conversations").status_code == 401
        headers = {"Origin": web.url, "X-CSRF-Token": csrf}
        assert thief.post("/api/chat", json={"content": "안녕"}, headers=headers).status_code == 401
    minji.close()
