"""Load on the web chat: N logged-in users chatting at once for a fixed number of turns.

A benchmark, not a test (tests/serving/test_web_load.py runs it small). Each user signs up
(sign-up must be open: a loopback server, or --allow-signup), then sends --turns messages one
after another, each waiting for its streamed answer; the users run concurrently. Afterwards
every user reads back everything the app shows them. It reports:
  errors          HTTP errors, error events, answers that never finished (must be 0)
  leaks           another user's message or marker seen, or another's conversation readable
                  (must be 0)
  stored vs sent  user messages stored = sent, answers stored complete = sent (must be equal)
  first token     p50/p95 ms from sending to the first streamed piece, as the browser sees it
  answer          p50/p95 ms from sending to the end of the answer

Against a running app (kotune serve, on its engine or with --backend-url):
    python bench/web_load.py --url http://127.0.0.1:8000 --users 20 --turns 5
Self-contained, with the tests' scripted OpenAI-compatible model (no model; app overhead only):
    python bench/web_load.py --spawn-scripted --users 20 --turns 5 --out bench/out/web_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "오늘 저녁 메뉴 추천해 줘",
    "매운 건 못 먹어요. 점심은 뭐가 좋을까요?",
    "다이어트 중인데 간식 추천해 줄래?",
    "비 오는 날 어울리는 음식은?",
    "오이는 싫어요. 샐러드 말고 다른 거 추천해 줘",
]


@dataclass
class UserRun:
    name: str
    marker: str
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    conversation_id: str | None = None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 1)


async def sign_up(client: httpx.AsyncClient, base: str, user: UserRun, password: str) -> str:
    response = await client.post(
        "/signup", data={"username": user.name, "password": password}, headers={"Origin": base}
    )
    if response.status_code != 303:
        raise RuntimeError(f"sign-up of {user.name} answered {response.status_code}")
    page = await client.get("/")
    start = page.text.index('name="csrf-token" content="') + len('name="csrf-token" content="')
    return page.text[start : page.text.index('"', start)]


async def one_turn(client: httpx.AsyncClient, base: str, csrf: str, user: UserRun, turn: int):
    content = f"{user.marker} {QUESTIONS[turn % len(QUESTIONS)]} ({turn + 1})"
    body = {"conversation_id": user.conversation_id, "content": content}
    headers = {"Origin": base, "X-CSRF-Token": csrf}
    started = time.perf_counter()
    first = None
    finished = False
    user.sent += 1
    async with client.stream("POST", "/api/chat", json=body, headers=headers) as response:
        if response.status_code != 200:
            user.errors.append(f"turn {turn}: HTTP {response.status_code}")
            return
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "meta":
                    user.conversation_id = data["conversation_id"]
                elif event == "delta" and first is None:
                    first = time.perf_counter()
                elif event == "done":
                    finished = True
                elif event == "error":
                    user.errors.append(f"turn {turn}: {data.get('message')}")
    ended = time.perf_counter()
    if not finished:
        user.errors.append(f"turn {turn}: the answer did not finish")
        return
    user.first_token_ms.append(((first or ended) - started) * 1000)
    user.answer_ms.append((ended - started) * 1000)


async def chat_turns(client: httpx.AsyncClient, base: str, csrf: str, user: UserRun, turns: int):
    for turn in range(turns):
        try:
            await one_turn(client, base, csrf, user, turn)
        except httpx.HTTPError as error:
            user.errors.append(f"turn {turn}: {type(error).__name__}: {error}")


async def audit(base: str, user: UserRun, others: list[UserRun], password: str) -> dict:
    """What this user can read back: own messages stored, and nothing of anyone else's."""
    async with httpx.AsyncClient(base_url=base, timeout=120, follow_redirects=False) as client:
        response = await client.post(
            "/login", data={"username": user.name, "password": password}, headers={"Origin": base}
        )
        if response.status_code != 303:
            return {
                "user_messages": 0,
                "complete_answers": 0,
                "leaks": [f"log-in {response.status_code}"],
            }
        listed = (await client.get("/api/conversations")).json()["conversations"]
        seen_text = json.dumps((await client.get("/api/preferences")).json(), ensure_ascii=False)
        user_messages = complete_answers = 0
        leaks = []
        for conversation in listed:
            data = (await client.get(f"/api/conversations/{conversation['id']}")).json()
            seen_text += json.dumps(data, ensure_ascii=False)
            for message in data["messages"]:
                if message["role"] == "user":
                    user_messages += 1
                    if not message["content"].startswith(user.marker):
                        leaks.append(f"{user.name} sees a message not theirs")
                elif message["complete"]:
                    complete_answers += 1
        for other in others:
            if other.marker in seen_text:
                leaks.append(f"{user.name} sees {other.name}'s marker")
            if other.conversation_id:
                peek = await client.get(f"/api/conversations/{other.conversation_id}")
                if peek.status_code != 404:
                    leaks.append(
                        f"{user.name} opened {other.name}'s conversation ({peek.status_code})"
                    )
        return {
            "user_messages": user_messages,
            "complete_answers": complete_answers,
            "leaks": leaks,
        }


async def run_load(base: str, users: int, turns: int) -> dict:
    run_id = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    runs = [UserRun(f"load{run_id}_{i:03d}", f"[u{i:03d}-{run_id}]") for i in range(users)]
    clients = [httpx.AsyncClient(base_url=base, timeout=600, follow_redirects=False) for _ in runs]
    try:
        signup_started = time.perf_counter()  # everyone signs up first, then all chat at once
        tokens = await asyncio.gather(
            *(sign_up(c, base, u, password) for c, u in zip(clients, runs))
        )
        started = time.perf_counter()
        results = await asyncio.gather(
            *(chat_turns(c, base, t, u, turns) for c, t, u in zip(clients, tokens, runs)),
            return_exceptions=True,
        )
        wall_s = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    errors = [f"{u.name}: {e}" for u in runs for e in u.errors]
    errors += [f"{u.name}: {r!r}" for u, r in zip(runs, results) if isinstance(r, Exception)]
    audits = [await audit(base, u, [o for o in runs if o is not u], password) for u in runs]
    first = [ms for u in runs for ms in u.first_token_ms]
    answer = [ms for u in runs for ms in u.answer_ms]
    sent = sum(u.sent for u in runs)
    return {
        "users": users,
        "turns": turns,
        "messages_sent": sent,
        "user_messages_stored": sum(a["user_messages"] for a in audits),
        "complete_answers_stored": sum(a["complete_answers"] for a in audits),
        "errors": len(errors),
        "error_samples": errors[:5],
        "leaks": sum(len(a["leaks"]) for a in audits),
        "leak_samples": [leak for a in audits for leak in a["leaks"]][:5],
        "first_token_ms_p50": percentile(first, 0.5),
        "first_token_ms_p95": percentile(first, 0.95),
        "answer_ms_p50": percentile(answer, 0.5),
        "answer_ms_p95": percentile(answer, 0.95),
        "wall_s": round(wall_s, 2),
        "answers_per_s": round(len(answer) / wall_s, 2) if wall_s else None,
        "signup_s": round(started - signup_started, 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {process.stderr.read()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url}: not up after {timeout_s} s")


def spawn_scripted(delay_ms: float) -> tuple[str, list[subprocess.Popen], str]:
    """The scripted model and `kotune serve --backend-url` in front of it on free loopback
    ports, a fresh SQLite; the persona (menu, preferences on) from a kotune.json of its own."""
    model_port, web_port = free_port(), free_port()
    folder = tempfile.mkdtemp(prefix="kotune-web-load-")
    adapter = Path(folder) / "adapter"
    adapter.mkdir()
    persona = {
        "persona": "menu",
        "base": {"name": "scripted", "family": "llama", "source": "hub", "hub_id": "scripted"},
        "prompt_format": "chatml",
        "display_name": "메뉴 추천 도우미",
        "preferences": True,
    }
    (adapter / "kotune.json").write_text(json.dumps(persona, ensure_ascii=False), "utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    model = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/serving/scripted_openai.py"), "--port", str(model_port),
         "--delay-ms", str(delay_ms)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    wait_up(f"http://127.0.0.1:{model_port}/v1/models", model)
    web = subprocess.Popen(
        [str(Path(sys.executable).with_name("kotune")), "serve", "--backend-url",
         f"http://127.0.0.1:{model_port}/v1", "--adapter", str(adapter), "--port", str(web_port),
         "--db", f"sqlite:///{folder}/chat.db"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    wait_up(f"http://127.0.0.1:{web_port}/login", web)
    return f"http://127.0.0.1:{web_port}", [web, model], folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running web chat, e.g. http://127.0.0.1:8000")
    parser.add_argument("--spawn-scripted", action="store_true", help="start the scripted setup")
    parser.add_argument("--delay-ms", type=float, default=20, help="scripted: pause per piece")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    if bool(args.url) == args.spawn_scripted:
        parser.error("give --url or --spawn-scripted (one of them)")
    processes: list[subprocess.Popen] = []
    folder = None
    try:
        url = args.url
        if args.spawn_scripted:
            url, processes, folder = spawn_scripted(args.delay_ms)
        result = asyncio.run(run_load(url.rstrip("/"), args.users, args.turns))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    result["target"] = (
        "scripted model (tests/serving/scripted_openai.py)" if args.spawn_scripted else url
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    for key, value in result.items():
        print(f"{key:26} {value}")
    ok = result["errors"] == 0 and result["leaks"] == 0
    ok = ok and result["user_messages_stored"] == result["messages_sent"]
    ok = ok and result["complete_answers_stored"] == result["messages_sent"]
    print("PASS" if ok else "FAIL: errors, leaks or stored ≠ sent")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
