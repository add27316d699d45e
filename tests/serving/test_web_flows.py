"""The page's flows over HTTP: log-in pages, conversations, history and preferences reaching
the model, and bad requests answered with a clear error while the app goes on serving."""

from __future__ import annotations

import httpx
from conftest import PASSWORD, Browserish, start_web, unique_name

from kotune.serving.backend import Persona


def test_logged_out_visit_goes_to_login_and_signup_opens_the_chat(web):
    with httpx.Client(base_url=web.url) as anonymous:
        response = anonymous.get("/", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
        page = anonymous.get("/login").text
        assert 'lang="ko"' in page and "메뉴 추천 도우미" in page
        for testid in ("login-username", "login-password", "login-submit"):
            assert f'data-testid="{testid}"' in page
        signup = anonymous.get("/signup").text
        for testid in ("signup-username", "signup-password", "signup-submit"):
            assert f'data-testid="{testid}"' in signup
    client = Browserish(web.url)
    response = client.signup("minji")
    assert response.status_code == 303 and response.headers["location"] == "/"
    chat = client.http.get("/").text
    for testid in ("logout", "message-input", "send", "new-conversation"):
        assert f'data-testid="{testid}"' in chat
    assert "상황과 취향에 맞춰 메뉴를 추천해 드려요." in chat and "내 음식 취향" in chat
    assert '<label for="message-input"' in chat
    # the page's assets come from the package, nothing from elsewhere
    assert "http://" not in chat and "https://" not in chat
    for asset in ("/static/app.css", "/static/chat.js"):
        assert client.http.get(asset).status_code == 200
    client.close()


def test_login_errors_and_logout(web):
    client = Browserish(web.url)
    client.signup("minji")
    assert client.signup("minji").status_code == 409  # taken
    assert client.form("/signup", username="x", password=PASSWORD).status_code == 400
    assert client.form("/signup", username="junho", password="short").status_code == 400
    response = client.http.post(
        "/logout", data={"csrf_token": client.csrf}, headers={"Origin": web.url}
    )
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.http.get("/", follow_redirects=False).status_code == 303
    failed = client.login("minji", "wrong-password")
    assert failed.status_code == 401 and "아이디 또는 비밀번호가 맞지 않습니다." in failed.text
    assert client.login("nobody", PASSWORD).status_code == 401
    assert client.login("minji").status_code == 303
    client.close()


def test_history_and_preferences_reach_the_model(web, scripted):
    client = Browserish(web.url)
    client.signup("minji")
    first = client.chat("땅콩 알레르기 있어요. 간식 추천해 줘")
    conversation = first[0][1]["conversation_id"]
    assert first[0][1]["preferences"][0]["item"] == "땅콩"
    answer = "".join(d["text"] for name, d in first if name == "delta")
    assert "선호 반영: 못 먹음 — 땅콩" in answer
    second = client.chat("매운 거 좋아해요", conversation)
    sent = scripted.app.state.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"] == (
        "당신은 메뉴 추천 도우미입니다.\n\n사용자 선호: 좋아함 — 매운 것; 못 먹음 — 땅콩"
    )
    assert [m["role"] for m in sent[1:]] == ["user", "assistant", "user"]
    assert sent[2]["content"] == answer  # the stored answer went back as history
    done = second[-1][1]
    assert done["prompt_tokens"] > 0 and done["completion_tokens"] > 0
    # a new conversation starts without the old history, the preferences stay
    client.chat("저녁은?")
    sent = scripted.app.state.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    listed = client.http.get("/api/conversations").json()["conversations"]
    assert len(listed) == 2 and listed[0]["title"] == "저녁은?"  # newest first
    # a preference removed from the panel is gone from the prompt
    prefs = client.http.get("/api/preferences").json()["preferences"]
    peanut = next(p for p in prefs if p["item"] == "땅콩")
    removed = client.http.delete(f"/api/preferences/{peanut['id']}", headers=client.headers())
    assert removed.status_code == 200
    client.chat("야식은?")
    system = scripted.app.state.requests[-1]["messages"][0]["content"]
    assert "땅콩" not in system and "매운 것" in system
    client.close()


def test_persona_without_preferences_stores_none_and_sends_no_system_message(scripted, tmp_path):
    persona = Persona(
        "맹자", "맹자의 가르침으로 답합니다.", "당신은 맹자입니다.", preferences=False
    )
    server, web = start_web(scripted, tmp_path / "chat.db", persona)
    try:
        client = Browserish(web.url)
        client.signup("minji")
        events = client.chat("저는 오이를 싫어해요")
        assert events[0][1]["preferences"] == []
        assert client.http.get("/api/preferences").json() == {"preferences": []}
        assert scripted.app.state.requests[-1]["messages"] == [
            {"role": "user", "content": "저는 오이를 싫어해요"}
        ]
        assert "내 음식 취향" not in client.http.get("/").text
        client.close()
    finally:
        server.stop()
        web.store.close()


def test_bad_requests_get_a_clear_error_and_the_app_keeps_serving(web):
    client = Browserish(web.url)
    client.signup("minji")
    headers = {**client.headers(), "Content-Type": "application/json"}
    cases = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"content": ""}', 400),
        (b'{"content": "   "}', 400),
        (b'{"content": 5}', 400),
        (b'{"content": "hi", "conversation_id": 5}', 400),
        (b'{"content": "' + b"x" * 4001 + b'"}', 413),
        (b'{"content": "hi", "conversation_id": "' + b"z" * 300 + b'"}', 404),
    ]
    for body, status in cases:
        response = client.http.post("/api/chat", content=body, headers=headers)
        assert response.status_code == status, body[:40]
        assert isinstance(response.json()["detail"], str)
    assert client.http.get("/api/conversations").json() == {"conversations": []}
    assert client.chat("이제 정상 요청")[-1][0] == "done"
    client.close()


def test_deleting_a_conversation(web):
    client = Browserish(web.url)
    client.signup("minji")
    conversation = client.chat("오이 싫어요")[0][1]["conversation_id"]
    response = client.http.delete(f"/api/conversations/{conversation}", headers=client.headers())
    assert response.status_code == 200
    assert client.http.get(f"/api/conversations/{conversation}").status_code == 404
    # the preference it stated stays (it is the user's, not the conversation's)
    assert client.http.get("/api/preferences").json()["preferences"][0]["item"] == "오이"
    client.close()


def test_kotune_serve_answers_the_page_from_its_engine(live_client, live):
    """The live `kotune serve` (tiny menu adapter): the answer leaves the server piece by piece
    as the engine generates it, with the engine's token counts, and is stored complete; the
    /v1 API on the same port serves the same model; the persona comes from kotune.json."""
    minji = live_client()
    minji.signup(unique_name("minji"))
    assert "메뉴 추천 도우미" in minji.http.get("/").text  # kotune.json's display_name
    events = minji.chat("땅콩 알레르기 있어요. 간식 추천해 줘")
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and names.count("delta") >= 2
    done = events[-1][1]
    assert done["prompt_tokens"] > 0 and 1 <= done["completion_tokens"] <= 24  # kotune.json's
    assert 0 < done["first_token_ms"] <= done["latency_ms"]
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert events[0][1]["preferences"][0]["item"] == "땅콩"
    conversation = events[0][1]["conversation_id"]
    stored = minji.http.get(f"/api/conversations/{conversation}").json()["messages"]
    assert stored[1]["content"] == text and stored[1]["complete"] is True
    models = httpx.get(f"{live.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["menu"]
    health = httpx.get(f"{live.url}/health").json()
    assert health["finished"] >= 1 and health["failed"] == 0
