"""The store: migrations from an empty database match the models, the user's message is
committed before generation starts and the answer when it ends, a stream that breaks (model
failure, client gone, server killed) leaves the answer marked incomplete and nothing lost.
Store-level tests run on SQLite and, where a server can be started here, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import MENU, PASSWORD, Browserish, ServerThread, free_port, shared_kiwi
from pg import postgres_url

from kotune.serving.backend import Usage
from kotune.serving.store import open_store
from kotune.serving.store.database import alembic_config, create_db_engine, upgrade
from kotune.serving.store.models import Base
from kotune.serving.web import WebSettings
from kotune.serving.webapp import create_web_app

TABLES = {"users", "sessions", "conversations", "messages", "preferences", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return postgres_url(request)


def test_migrations_from_empty_match_the_models(db_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    engine = create_db_engine(db_url)
    assert not set(inspect(engine).get_table_names()) & TABLES
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == "0001"
        assert compare_metadata(context, Base.metadata) == []
        command.check(alembic_config(connection))  # `alembic check`: nothing to autogenerate
    upgrade(engine)  # a second start changes nothing
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not set(inspect(engine).get_table_names()) & (TABLES - {"alembic_version"})
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_turns_preferences_and_removal(db_url):
    store = open_store(db_url)
    try:
        minji = store.add_user("minji", "$argon2id$x")
        junho = store.add_user("junho", "$argon2id$y")
        turn = store.begin_turn(minji.id, None, "오이 좋아해요", [("오이", "like")])
        store.finish_turn(turn.assistant_message_id, "좋아요", True, (10, 2), 5, 50)
        later = store.begin_turn(
            minji.id, turn.conversation_id, "오이 싫어요", [("오이", "dislike")]
        )
        assert later.history[0] == {"role": "user", "content": "오이 좋아해요"}
        assert later.history[-1] == {"role": "user", "content": "오이 싫어요"}
        prefs = store.preferences(minji.id)
        assert [(p["item"], p["polarity"]) for p in prefs] == [("오이", "dislike")]  # replaced
        store.begin_turn(
            minji.id, turn.conversation_id, "오이 싫어하진 않아요", [("오이", "neutral")]
        )
        assert store.preferences(minji.id) == []
        assert store.preferences(junho.id) == [] and store.conversations(junho.id) == []
        assert store.remove_user("minji")
        assert store.user_by_name("minji") is None and store.conversations(minji.id) == []
        assert store.user_by_name("junho") is not None
    finally:
        store.close()


class WatchingBackend:
    """A backend that, when asked to answer, looks at the database through its own
    connection: the user's message must already be committed, the answer incomplete."""

    model_id = "watching"
    persona = MENU

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.seen: list[tuple] = []

    async def stream(self, messages, *, max_tokens=None, temperature=None):
        from sqlalchemy import create_engine, text

        engine = create_engine(self.db_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT role, content, complete FROM messages ORDER BY id")
            ).all()
        engine.dispose()
        self.seen.append(tuple(tuple(r) for r in rows))
        yield "첫 조각"
        yield " 끝"
        yield Usage(7, 2)

    async def aclose(self):
        pass


def test_user_message_committed_before_generation_and_answer_after(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'chat.db'}"
    store = open_store(db_url)
    backend = WatchingBackend(db_url)
    app = create_web_app(backend, store, WebSettings(allow_signup=True), shared_kiwi())
    server = ServerThread(app).start()
    try:
        client = Browserish(server.url)
        client.signup("minji")
        events = client.chat("점심 뭐 먹지?")
        assert backend.seen == [(("user", "점심 뭐 먹지?", True), ("assistant", "", False))]
        conversation = store.conversation(1, events[0][1]["conversation_id"])
        answer = conversation["messages"][1]
        assert answer["content"] == "첫 조각 끝" and answer["complete"] is True
        with store.engine.connect() as connection:
            from sqlalchemy import text

            row = connection.execute(
                text(
                    "SELECT prompt_tokens, completion_tokens, latency_ms FROM messages WHERE id = 2"
                )
            ).one()
        assert row[0] == 7 and row[1] == 2 and row[2] >= 0
        client.close()
    finally:
        server.stop()
        store.close()


def wait_for(check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_client_gone_mid_stream_keeps_what_was_streamed_marked_incomplete(web, scripted):
    client = Browserish(web.url)
    client.signup("minji")
    cancelled_before = scripted.app.state.cancelled
    with client.http.stream(
        "POST",
        "/api/chat",
        json={"conversation_id": None, "content": "[[slow]] 길게 답해 줘"},
        headers=client.headers(),
    ) as response:
        deltas = 0
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                deltas += 1
                if deltas == 2:
                    break  # the browser tab is closed
    client.close()

    def stored_answer():
        conversation = web.store.conversations(1)
        if not conversation:
            return None
        answer = web.store.conversation(1, conversation[0]["id"])["messages"][1]
        return answer if answer["content"] else None

    answer = wait_for(stored_answer)
    assert answer["complete"] is False and answer["content"].startswith("질문: [[sl")
    # the model server saw its client leave too: the generation was stopped, not run to the end
    wait_for(lambda: scripted.app.state.cancelled > cancelled_before)


def test_model_failure_marks_the_answer_incomplete_and_the_app_keeps_serving(web):
    client = Browserish(web.url)
    client.signup("minji")
    events = client.chat("[[break]] 끊겨 봐")
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "error" and "done" not in names
    conversation = events[0][1]["conversation_id"]
    failed = client.chat("[[fail]] 실패해 봐", conversation)
    assert failed[-1][0] == "error"
    messages = web.store.conversation(1, conversation)["messages"]
    assert [(m["role"], m["complete"]) for m in messages] == [
        ("user", True),
        ("assistant", False),
        ("user", True),
        ("assistant", False),
    ]
    assert messages[1]["content"] == "질문: [[br"  # the two pieces before the break, kept
    assert client.chat("이제 괜찮아?", conversation)[-1][0] == "done"
    client.close()


def start_subprocess_server(scripted, db_url: str, port: int) -> subprocess.Popen:
    """`kotune serve` in front of the scripted model (its `[[slow]]` answer is long enough to
    be killed in the middle of), on PORT and the database DB_URL."""
    command = [
        str(Path(sys.executable).with_name("kotune")),
        "serve",
        "--backend-url",
        f"{scripted.url}/v1",
        "--adapter",
        "no-such-adapter",  # the persona then is the served model's id
        "--db",
        db_url,
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None and pytest.fail(process.stderr.read())

    wait_for(up, 60)
    return process


@pytest.mark.slow
def test_server_killed_mid_stream_leaves_question_kept_and_answer_incomplete(scripted, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'chat.db'}"
    port = free_port()
    process = start_subprocess_server(scripted, db_url, port)
    url = f"http://127.0.0.1:{port}"
    try:
        client = Browserish(url)
        assert client.signup("minji").status_code == 303
        first = client.chat("첫 질문")
        conversation = first[0][1]["conversation_id"]
        with client.http.stream(
            "POST",
            "/api/chat",
            json={"conversation_id": conversation, "content": "[[slow]] 두 번째 질문"},
            headers=client.headers(),
        ) as response:
            for line in response.iter_lines():
                if line.startswith("event: delta"):
                    os.kill(process.pid, signal.SIGKILL)  # mid-answer, no chance to clean up
                    break
        process.wait(timeout=10)
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = open_store(db_url)
    messages = store.conversation(1, conversation)["messages"]
    assert [(m["role"], m["content"], m["complete"]) for m in messages] == [
        ("user", "첫 질문", True),
        ("assistant", messages[1]["content"], True),
        ("user", "[[slow]] 두 번째 질문", True),
        ("assistant", "", False),  # marked incomplete; nothing half-written
    ]
    store.close()

    # a restarted server has it all, and goes on with the conversation
    process = start_subprocess_server(scripted, db_url, port)
    try:
        client = Browserish(url)
        assert client.login("minji", PASSWORD).status_code == 303
        shown = client.http.get(f"/api/conversations/{conversation}").json()["messages"]
        assert [m["complete"] for m in shown] == [True, True, True, False]
        assert client.chat("다시 시작", conversation)[-1][0] == "done"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert "kotune: database sqlite:///" in process.stderr.read()


def test_bad_database_url_is_one_clear_line(tmp_path):
    from kotune.errors import KotuneError

    with pytest.raises(KotuneError, match=r"^--db 'nonsense': not a database URL"):
        open_store("nonsense")
    with pytest.raises(KotuneError, match=r"postgresql\+psycopg://u:\*\*\*@127.0.0.1:9/x"):
        open_store("postgresql+psycopg://u:secret@127.0.0.1:9/x")
    assert not Path(tmp_path / "nonsense").exists()
