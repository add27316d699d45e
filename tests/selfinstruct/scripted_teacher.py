"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script, for the
self-instruct tests: chat completions written from the request (deterministic per request, like
a seeded model), scripted 429/5xx answers, a context window (prompt + max_tokens, ~2 characters
a token) that answers 400 context_length_exceeded in OpenAI's or vLLM's shape, an API key it
checks, slow answers.

The tests only use what every teacher has: `base_url`, `model`, `api_key`, `stop()`. A live
`kotune serve` is a `ProcessTeacher` with the same four names (see `Teacher`).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Teacher(Protocol):
    base_url: str  # ends in /v1
    model: str
    api_key: str | None  # None: the server checks no key

    def stop(self) -> None: ...


SITUATIONS = [
    "비 오는 저녁", "시험 전날 밤", "이삿날 점심", "캠핑 둘째 날 아침", "야근 끝난 새벽", "친구 생일",
    "주말 브런치", "한여름 오후", "첫 출근 날", "명절 다음 날", "등산 후", "감기 걸린 날",
    "월급날", "혼자 쉬는 날", "손님 오는 날", "다이어트 3주 차",
]  # fmt: skip
FOODS = [
    "국물 요리", "면 요리", "덮밥", "분식", "샐러드", "고기 요리", "해산물", "죽", "디저트", "안주",
    "도시락", "비건 메뉴", "편의점 조합", "찌개", "구이", "빵",
]  # fmt: skip
LIMITS = [
    "만 원 이하로", "15분 안에 만들 수 있게", "전자레인지만 써서", "500kcal 안쪽으로",
    "아이도 먹을 수 있게", "맵지 않게", "재료 세 가지로", "배달로",
]  # fmt: skip
VERBS = ["골라 줘", "알려 줄래?", "추천해 주세요", "정리해 줘", "짜 줄 수 있어?", "제안해 봐"]


def novel_task(rng: random.Random) -> tuple[str, str, str]:
    situation, food, limit, verb = (rng.choice(x) for x in (SITUATIONS, FOODS, LIMITS, VERBS))
    people = rng.randint(1, 6)
    return (
        f"{situation}에 {limit} 먹을 {food} {verb}",
        rng.choice(["", f"{people}명", f"{people}명, 예산 {people * 8000:,}원"]),
        f"{situation}이라면 {food}로 이런 메뉴가 좋아요.\n1. 첫 번째 추천\n2. 두 번째 추천\n"
        f"{limit} 준비할 수 있어요.",
    )


def example_instructions(prompt: str) -> list[str]:
    return re.findall(r"^\d+\. 지시: (.*)$", prompt, re.MULTILINE)


def answer_for(request: dict[str, Any]) -> str:
    """What a mediocre, seeded teacher writes: new tasks, a near-duplicate of an example (other
    particles), one that asks for a photo, one in English, one whose output repeats it."""
    prompt = request["messages"][-1]["content"]
    first = int(re.search(r"(\d+)번부터", prompt)[1]) if "번부터" in prompt else 1
    rng = random.Random(request.get("seed", 0))
    tasks = [novel_task(rng) for _ in range(4)]
    examples = example_instructions(prompt)
    if examples:
        near = (
            rng.choice(examples).replace(" 줘", " 주세요").replace("를 ", " ").replace("은 ", "는 ")
        )
        tasks.insert(rng.randrange(len(tasks)), (near, "", "비슷한 질문의 답이에요."))
    tasks.append(("이 음식 사진을 보고 칼로리를 계산해 줘", "", "사진을 보니 약 500kcal예요."))
    tasks.append(("Recommend a snack", "", "Chips."))
    same = tasks[0][0]
    tasks.append((f"{same} 말고 다른 걸로", "", f"{same} 말고 다른 걸로"))
    rng.shuffle(tasks)
    style = rng.choice(["plain", "bold", "english"])
    lines = ["네, 새 과제를 만들어 볼게요."] if style == "bold" else []
    for number, (instruction, given, output) in enumerate(tasks, start=first):
        given = given or "<입력 없음>"
        if style == "plain":
            lines += [
                f"{number}. 지시: {instruction}",
                f"{number}. 입력:",
                given,
                f"{number}. 출력:",
                output,
                "###",
            ]
        elif style == "bold":
            lines += [
                f"**{number}. 지시:** {instruction}",
                f"**{number}. 입력:** {given}",
                f"**{number}. 출력:**",
                output,
                "",
                "---",
            ]
        else:
            lines += [
                f"### Task {number}",
                f"Instruction: {instruction}",
                f"Input: {given}",
                f"Output: {output}",
                "",
            ]
    return "\n".join(lines)


class ScriptedTeacher:
    """Start with `with ScriptedTeacher(...) as teacher:`; `faults` are (status, retry_after)
    answers given, in order, to the next chat requests before normal answers resume."""

    def __init__(
        self,
        model: str = "scripted-teacher",
        api_key: str | None = None,
        context_tokens: int | None = None,
        context_style: str = "openai",
        delay_s: float = 0.0,
        answer=answer_for,
        refuse_penalties: bool = False,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.context_tokens = context_tokens
        self.context_style = context_style
        self.delay_s = delay_s
        self.answer = answer
        self.refuse_penalties = refuse_penalties
        self.faults: list[tuple[int, float | None]] = []
        self.requests: list[dict[str, Any]] = []  # chat bodies, in arrival order
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedTeacher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ the API

    def respond(
        self, method: str, path: str, headers: Any, body: dict | None
    ) -> tuple[int, dict, dict]:
        if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
            return (
                401,
                {},
                error("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
            )
        if method == "GET" and path == "/v1/models":
            return (
                200,
                {},
                {
                    "object": "list",
                    "data": [
                        {"id": self.model, "object": "model", "created": 0, "owned_by": "tests"}
                    ],
                },
            )
        if method != "POST" or path != "/v1/chat/completions" or body is None:
            return 404, {}, error(f"no route {method} {path}", "invalid_request_error", None)
        with self.lock:
            self.requests.append(body)
            fault = self.faults.pop(0) if self.faults else None
        if fault:
            status, retry_after = fault
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return status, extra, error(f"scripted {status}", kind, kind)
        for param in ("presence_penalty", "frequency_penalty"):  # as kotune serve: refused by name
            if self.refuse_penalties and body.get(param):
                return (
                    400,
                    {},
                    error(
                        f"'{param}' is not supported by this server", "invalid_request_error", None
                    ),
                )
        if body.get("model") != self.model:
            return (
                404,
                {},
                error(
                    f"The model `{body.get('model')}` does not exist",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
        prompt = body["messages"][-1]["content"]
        prompt_tokens, max_tokens = len(prompt) // 2, int(body.get("max_tokens") or 0)
        if self.context_tokens is not None and prompt_tokens + max_tokens > self.context_tokens:
            return 400, {}, self.too_long(prompt_tokens, max_tokens)
        if self.delay_s:
            time.sleep(self.delay_s)
        text = self.answer(body)
        finish = "stop"
        limit = 2 * int(body.get("max_tokens") or 10**9)  # ~2 characters a token
        if len(text) > limit:
            text, finish = text[:limit], "length"
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{body.get('seed', 0)}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt) // 2,
                    "completion_tokens": len(text) // 2,
                    "total_tokens": len(prompt) // 2 + len(text) // 2,
                },
            },
        )

    def too_long(self, used: int, max_tokens: int) -> dict:
        window = self.context_tokens
        if self.context_style == "vllm":  # vLLM's shape: no error wrapper, code is the status
            return {
                "object": "error",
                "message": f"This model's maximum context length is {window} tokens. However, you requested "
                f"{used + max_tokens} tokens ({used} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        return error(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{used} tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
        )

    def _handler(self):
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, headers, payload = teacher.respond(method, self.path, self.headers, body)
                with teacher.lock:
                    teacher.statuses.append(status)
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                # the client may have cancelled the request (it had what it needed)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def error(message: str, kind: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class ProcessTeacher:
    """Any OpenAI-compatible server started as a process: this file's scripted server, or
    `kotune serve --adapter …`. Ready once GET /v1/models answers (with the key, if any); the
    model is the first one listed unless given. `log`: a file for its output; `env`: its
    environment (None: this process's)."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        model: str | None = None,
        api_key: str | None = None,
        ready_s: float = 180.0,
        log: Any = None,
        env: dict[str, str] | None = None,
    ) -> None:
        import subprocess
        import urllib.request

        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.api_key = api_key
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT if log else None, env=env
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        deadline = time.monotonic() + ready_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{argv[:3]} exited with {self.process.returncode} before serving"
                )
            try:
                request = urllib.request.Request(f"{self.base_url}/models", headers=headers)
                with urllib.request.urlopen(request, timeout=2) as response:
                    served = [m["id"] for m in json.loads(response.read())["data"]]
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"{argv[:3]} not serving {self.base_url} in {ready_s} s"
                    ) from None
                time.sleep(0.2)
        self.model = model or served[0]

    def __enter__(self) -> ProcessTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":  # python scripted_teacher.py --port N: the scripted server alone
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="scripted-teacher")
    options = parser.parse_args()
    server = ScriptedTeacher(model=options.model)
    server.server.server_close()
    server.server = ThreadingHTTPServer(("127.0.0.1", options.port), server._handler())
    server.server.serve_forever()
