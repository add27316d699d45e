"""Live servers for the web app's tests: a real `kotune serve` process (the tiny menu adapter on
the in-process engine, or in front of the scripted model with --backend-url), the scripted
OpenAI-compatible backend and the web app in front of it in a thread (the web layer's own
tests), and an httpx client that signs up like a browser would (Origin header, cookie, the
page's CSRF token)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted_openai import create_app as create_scripted_app  # noqa: E402

from kotune.serving.backend import OpenAIBackend, Persona  # noqa: E402
from kotune.serving.store import open_store  # noqa: E402
from kotune.serving.web import WebSettings  # noqa: E402
from kotune.serving.webapp import create_web_app  # noqa: E402

MENU = Persona(
    "메뉴 추천 도우미",
    "상황과 취향에 맞춰 메뉴를 추천해 드려요.",
    "당신은 메뉴 추천 도우미입니다.",
    preferences=True,
)
PASSWORD = "correct horse battery"
KOTUNE = str(Path(sys.executable).with_name("kotune"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread, until `stop()`."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def scripted():
    """The scripted model server (shared by the session's tests)."""
    app = create_scripted_app(delay_s=0.005)
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@dataclass
class WebServer:
    url: str
    app: Any
    store: Any
    db_url: str
    db_path: Path

    @property
    def state(self):
        return self.app.state.web


_KIWI: list[Any] = []


def shared_kiwi() -> Any:
    """One Kiwi for all the test servers: loading one takes seconds on a busy 2-core machine."""
    if not _KIWI:
        from kotune.serving.preferences import new_kiwi

        _KIWI.append(new_kiwi())
    return _KIWI[0]


def start_web(scripted, db_path: Path, persona: Persona = MENU, **settings: Any):
    db_url = f"sqlite:///{db_path}"
    store = open_store(db_url)
    backend = asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", None, persona))
    settings = WebSettings(**{"allow_signup": True, **settings})
    app = create_web_app(backend, store, settings, shared_kiwi())
    server = ServerThread(app).start()
    return server, WebServer(server.url, app, store, db_url, db_path)


@pytest.fixture
def web(scripted, tmp_path):
    """The web app on a fresh SQLite file, sign-up open, the menu persona (preferences on)."""
    server, info = start_web(scripted, tmp_path / "chat.db")
    yield info
    server.stop()
    info.store.close()


@dataclass
class LiveServe:
    """A `kotune serve` process on 127.0.0.1, its SQLite file and its log (stdout and stderr)."""

    url: str
    process: subprocess.Popen
    db_url: str
    db_path: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def store(self) -> Any:
        """The same database, opened from the test (close it when done)."""
        return open_store(self.db_url)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_the_tests() -> None:
    """In the server's process before exec (Linux): SIGTERM when the test process dies, so a
    crashed run leaves no server behind."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_serve(args: list[str], folder: Path, seconds: float = 300) -> LiveServe:
    """`kotune serve ARGS --port P --db sqlite:///FOLDER/chat.db`, once /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port, db_path, log = free_port(), folder / "chat.db", folder / "serve.log"
    db_url = f"sqlite:///{db_path}"
    command = [KOTUNE, "serve", "--port", str(port), "--db", db_url, *args]
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            preexec_fn=_die_with_the_tests,
        )
    live = LiveServe(f"http://127.0.0.1:{port}", process, db_url, db_path, log)
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"kotune serve exited with {process.returncode}:\n{live.log_text()}")
        try:
            if httpx.get(f"{live.url}/health", timeout=2).status_code == 200:
                return live
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            live.stop()
            raise RuntimeError(f"kotune serve did not come up:\n{live.log_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def live(menu_adapter, tmp_path_factory):
    """One real `kotune serve` for the session: the tiny adapter exported as the menu persona,
    answered by the in-process engine, sign-up open (loopback). Tests share it: each makes
    its own users (`unique_name`)."""
    server = start_serve(["--adapter", str(menu_adapter)], tmp_path_factory.mktemp("live"))
    yield server
    server.stop()


_NAMES = itertools.count(1)


def unique_name(base: str) -> str:
    """A user name no other test on the shared server has taken."""
    return f"{base}{next(_NAMES):03d}"


@pytest.fixture
def live_client(live):
    """Browser-like clients of the shared live server."""
    made = []

    def make() -> Browserish:
        client = Browserish(live.url)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Browserish:
    """An httpx client that behaves as the page does: same-origin Origin header on posts,
    the session cookie, the CSRF token read from the chat page."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)
        self.csrf: str | None = None

    def form(self, path: str, **fields: str) -> httpx.Response:
        return self.http.post(path, data=fields, headers={"Origin": self.base_url})

    def signup(self, username: str, password: str = PASSWORD) -> httpx.Response:
        response = self.form("/signup", username=username, password=password)
        if response.status_code == 303:
            self.load_csrf()
        return response

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        response = self.form("/login", username=username, password=password)
        if response.status_code == 303:
            self.load_csrf()
        return response

    def load_csrf(self) -> None:
        page = self.http.get("/")
        assert page.status_code == 200, page.status_code
        self.csrf = CSRF_META.search(page.text).group(1)

    def headers(self) -> dict[str, str]:
        return {"Origin": self.base_url, "X-CSRF-Token": self.csrf or ""}

    def chat(self, content: str, conversation_id: str | None = None) -> list[tuple[str, dict]]:
        """Send a message; the answer's events, read to the end."""
        import json

        response = self.http.post(
            "/api/chat",
            json={"conversation_id": conversation_id, "content": content},
            headers=self.headers(),
        )
        assert response.status_code == 200, response.text
        events = []
        for block in response.text.split("\n\n"):
            if block.strip():
                name = block.split("\n")[0].removeprefix("event: ")
                data = json.loads(block.split("\n")[1].removeprefix("data: "))
                events.append((name, data))
        return events

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def client_factory(web):
    made = []

    def make() -> Browserish:
        client = Browserish(web.url)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def server(tiny_adapter, tmp_path_factory):
    """A live `kotune serve` on the tiny adapter, with an API key (openai_live.KEY) and CORS
    for openai_live.ALLOWED_ORIGIN, shared by the API's tests; its log in a file."""
    from openai_live import api_server

    with api_server(tiny_adapter, tmp_path_factory.mktemp("serve")) as live_server:
        yield live_server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session, where Debian's binaries and psycopg are present."""
    from pg import PostgresServer, postgres_bindir

    pytest.importorskip("psycopg")
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    server = PostgresServer(bindir, free_port())
    url = server.start()
    yield url
    server.stop()
