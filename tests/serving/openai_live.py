"""The live `kotune serve` the API tests talk to (the tiny adapter, an API key, a site allowed
by CORS), and the helpers they share: the official client, raw HTTP, /health."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai

KOTUNE = str(Path(sys.executable).with_name("kotune"))
KEY = "test-key-123"
ALLOWED_ORIGIN = "https://app.example.com"
QUESTIONS = [
    "인이란 무엇입니까?",
    "호연지기는?",
    "맹자님, 왕도란 무엇입니까?",
    "의란 무엇이오?",
    "성선설을 설명해 주십시오.",
    "사단이란?",
    "군자의 도는 무엇입니까?",
    "백성을 어떻게 다스립니까?",
]
SECRET = "제 전화번호는 010-1234-5678입니다"  # must never reach the server's log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(port: int, process=None, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"kotune serve exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


@contextlib.contextmanager
def api_server(adapter: Path, folder: Path) -> Iterator[dict]:
    """A live `kotune serve` on `adapter`, with an API key and CORS for ALLOWED_ORIGIN; its
    log in `folder`."""
    port = free_port()
    log = folder / "serve.log"
    command = [KOTUNE, "serve", "--adapter", str(adapter), "--port", str(port), "--slots", "8"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--cors-origin", ALLOWED_ORIGIN],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KOTUNE_API_KEY": KEY},
        )
    try:
        wait_until_up(port, process)
        banner = log.read_text(encoding="utf-8")
        assert f"(API key required, CORS for {ALLOWED_ORIGIN})" in banner, banner
        assert KEY not in banner
        yield {"port": port, "log": log, "process": process}
    finally:
        process.terminate()
        process.wait(timeout=60)


def client(server, key: str | None = KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server['port']}/v1", api_key=key, max_retries=0, timeout=120
    )


def health(server) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def raw_post(server, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    all_headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", body, {**all_headers, **(headers or {})})
    response = connection.getresponse()
    return response.status, json.loads(response.read())
