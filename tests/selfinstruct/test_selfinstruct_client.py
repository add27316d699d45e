"""The teacher client against a live scripted OpenAI-compatible server: retries, the prompt too
long in each server's words, and set-up errors in one line."""

from __future__ import annotations

import asyncio
import time

import pytest
from scripted_teacher import ScriptedTeacher

from kotune.config import TeacherConfig
from kotune.errors import KotuneError
from kotune.selfinstruct.client import Teacher, is_context_length_error

REQUEST = {
    "messages": [{"role": "user", "content": "1. 지시: 간식 추천해 줘\n1. 입력:\n<입력 없음>\n1. 출력:\n젤리\n###\n2번부터 3번까지"}],
    "temperature": 0.7,
    "max_tokens": 64,
    "seed": 7,
}  # fmt: skip


def complete(server, request=None, api_key=None, **teacher_options):
    options = {
        "base_url": server.base_url,
        "model": server.model,
        "backoff_s": 0.01,
        **teacher_options,
    }
    key = api_key or server.api_key or "EMPTY"
    teacher = Teacher(TeacherConfig(**options), key, concurrency=2, seed=0)

    async def ask():
        try:
            return await teacher.complete({"model": options["model"], **(request or REQUEST)}, 0)
        finally:
            await teacher.close()

    return asyncio.run(ask()), teacher


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "context_length_exceeded", "This model's maximum context length is 4097 tokens.", True),  # OpenAI
        (400, 400, "This model's maximum context length is 2048 tokens. However, you requested 3100 tokens "
                   "(28 in the messages, 3072 in the completion). Please reduce the length of the messages or completion.", True),  # vLLM < 0.10
        (400, None, "You passed 12289 input tokens and requested 4096 output tokens. However, the model's context "
                    "length is only 16384 tokens, resulting in a maximum input length of 12288 tokens. Please reduce "
                    "the length of the input prompt. (parameter=input_tokens, value=12289)", True),  # vLLM >= 0.10
        (400, None, "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length "
                    "is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778).", True),  # vLLM
        (400, None, "the request exceeds the available context size, try increasing it", True),  # llama.cpp
        (422, None, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. Given: 1900 "
                    "`inputs` tokens and 1024 `max_new_tokens`", True),  # TGI
        (400, None, "prompt is too long: 210000 tokens > 200000 maximum", True),  # Anthropic
        (400, "invalid_value", "temperature must be <= 2", False),
        (500, None, "maximum context length exceeded while batching", False),  # a 5xx is retried
        (429, "rate_limit_exceeded", "Rate limit reached", False),
    ],
)  # fmt: skip
def test_context_length_errors_in_each_servers_words(status, code, message, expected):
    assert is_context_length_error(status, code, message, {"message": message}) is expected


def test_429_and_5xx_are_retried_until_an_answer(teacher):
    teacher.faults = [(429, 0), (500, None), (503, None)]
    entry, client = complete(teacher)
    assert entry["response"]["choices"][0]["message"]["content"]
    assert teacher.statuses[-4:] == [429, 500, 503, 200]
    assert client.retries == 3 and client.calls == 4


def test_retry_after_is_honoured(teacher):
    teacher.faults = [(429, 0.5)]
    start = time.monotonic()
    complete(teacher)
    assert time.monotonic() - start >= 0.5


def test_a_teacher_that_keeps_failing_is_one_line_after_the_retries(teacher):
    teacher.faults = [(503, None)] * 4
    with pytest.raises(KotuneError, match="still failing after 3 retries: 503"):
        complete(teacher, max_retries=3)
    assert teacher.statuses.count(503) == 4


def test_time_outs_are_retried():
    with ScriptedTeacher(delay_s=0.5) as server:
        with pytest.raises(KotuneError, match="still failing after 1 retries: APITimeoutError"):
            complete(server, timeout_s=0.1, max_retries=1)
        assert len(server.requests) == 2


@pytest.mark.parametrize("style", ["openai", "vllm"])
def test_a_prompt_too_long_is_an_answer_not_an_error(style):
    with ScriptedTeacher(context_tokens=20, context_style=style) as server:
        entry, client = complete(server)
    assert entry["error"]["code"] == "context_length_exceeded"
    assert "maximum context length" in entry["error"]["message"]
    assert client.retries == 0


def test_a_wrong_key_fails_at_once_in_one_line():
    with ScriptedTeacher(api_key="sk-right") as server:
        with pytest.raises(
            KotuneError,
            match=r"refused the API key from \$OPENAI_API_KEY \(401: .*Incorrect API key",
        ):
            complete(server, api_key="sk-wrong")
        assert server.requests == []  # refused at /models, before any generation


def test_a_wrong_model_fails_at_once_naming_the_served_ones(teacher):
    with pytest.raises(
        KotuneError, match=r"--model gpt-nope: not served by .* \(it serves: scripted-teacher\)"
    ):
        complete(teacher, model="gpt-nope")


def test_an_unreachable_url_fails_at_once():
    server = ScriptedTeacher()
    url = server.base_url
    server.stop()  # the port was bound, now closed: connection refused
    start = time.monotonic()
    with pytest.raises(KotuneError, match=f"--base-url {url}: cannot reach the teacher"):
        complete(server, max_retries=5, backoff_s=1.0)
    assert time.monotonic() - start < 5  # no backoff rounds


def test_a_url_without_the_api_is_one_line_and_not_retried(teacher):
    with pytest.raises(KotuneError, match="404 for model scripted-teacher .*without /v1"):
        complete(teacher, base_url=teacher.base_url.replace("/v1", "/v2"), max_retries=5)
    assert teacher.statuses == [404, 404]  # /v2/models (no list: go on), then the one request
