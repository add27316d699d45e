"""What real OpenAI clients send, against a live `kotune serve`: content as a list of parts, the
`developer` role, assistant turns with `content: null`, every OpenAI field at the default a
client sends, what the server cannot honour refused by name, the key checked before the body,
HEAD, 405, CORS only for the site named, streamed events as the client parses them, and a
client that leaves a plain (not streamed) answer freeing its slot."""

import asyncio
import http.client
import json
import socket
import subprocess
import threading
import time

import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai_live import ALLOWED_ORIGIN, KEY, KOTUNE, QUESTIONS, ask, client, health, raw_post

NO_EOS = {"0": -100}
IMAGE = {
    "type": "image_url",
    "image_url": {"url": "https://example.com/menu.png"},
}  # <|endoftext|> is id 0 in the scratch tokenizer: no early end


def answer(server, **kwargs):
    arguments = {"model": "mencius", "messages": ask(QUESTIONS[0]), "temperature": 0, **kwargs}
    return client(server).chat.completions.create(**arguments)


def test_text_parts_read_as_their_lines_and_developer_as_system(server):
    lines = [{"role": "user", "content": "인이란\n무엇입니까?"}]
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "인이란"},
                {"type": "text", "text": "무엇입니까?"},
            ],
        }
    ]
    by_lines, by_parts = answer(server, messages=lines), answer(server, messages=parts)
    assert by_parts.choices[0].message.content == by_lines.choices[0].message.content
    assert by_parts.usage.prompt_tokens == by_lines.usage.prompt_tokens

    rule = "짧게 답하시오."
    said = {
        (role, kind): answer(server, messages=[{"role": role, "content": content}, *ask("인?")])
        for role in ("system", "developer")
        for kind, content in (("text", rule), ("parts", [{"type": "text", "text": rule}]))
    }
    system = said["system", "text"]
    persona = answer(server, messages=ask("인?")).usage.prompt_tokens
    assert system.usage.prompt_tokens != persona
    for blank in ("", " \n"):  # an app's empty system prompt field: the persona's stays
        kept = answer(server, messages=[{"role": "system", "content": blank}, *ask("인?")])
        assert kept.usage.prompt_tokens == persona
    for each in said.values():  # the request's system prompt replaces the persona's
        assert each.usage.prompt_tokens == system.usage.prompt_tokens
        assert each.choices[0].message.content == system.choices[0].message.content


def test_assistant_turns_as_clients_send_them_back(server):
    def history(turn: dict) -> int:
        messages = [*ask(QUESTIONS[1]), {"role": "assistant", **turn}, *ask(QUESTIONS[0])]
        return answer(server, messages=messages, max_tokens=2).usage.prompt_tokens

    empty = history({"content": ""})
    words = history({"content": "말씀드릴 수 없습니다."})
    assert words > empty
    assert history({"content": None}) == empty
    assert history({}) == empty
    # what the client's own ChatCompletionMessage dumps: null refusal, audio, tool calls
    assert history({"content": "", "refusal": None, "audio": None, "tool_calls": []}) == empty
    assert history({"content": None, "refusal": "말씀드릴 수 없습니다."}) == words
    part = {"type": "refusal", "refusal": "말씀드릴 수 없습니다."}
    assert history({"content": [part]}) == words


def test_the_defaults_clients_send_are_accepted_and_change_nothing(server):
    plain = answer(server, max_tokens=8)
    tool = {"type": "function", "function": {"name": "menu", "parameters": {"type": "object"}}}
    defaults = answer(
        server,
        max_tokens=8,
        n=1,
        top_p=1,
        presence_penalty=0,
        frequency_penalty=0,
        logprobs=False,
        logit_bias={},
        stream=False,
        stop=None,
        user="user-1",
        metadata={"app": "kotune-test"},
        store=False,
        parallel_tool_calls=True,
        tools=[tool],
        tool_choice="none",  # never called: nothing to honour
        response_format={"type": "text"},
        modalities=["text"],
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        prediction={"type": "content", "content": "인"},
        extra_body={"function_call": "none", "audio": None, "reasoning_effort": None},
    )
    assert defaults.choices[0].message.content == plain.choices[0].message.content
    assert defaults.usage == plain.usage


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "이"}, IMAGE]}]},
            "messages.[0].content.[1].type",
            "'image_url' content is not supported",
        )
    ]
    + [
        (
            {"messages": [{"role": "user", "content": [{"type": kind, kind: {}}]}]},
            "messages.[0].content.[0].type",
            f"'{kind}' content is not supported",
        )
        for kind in ("input_audio", "file")
    ]
    + [
        (
            {"messages": [*ask("x"), {"role": "tool", "content": "1", "tool_call_id": "c"}]},
            "messages.[1].role",
            "'tool' message",
        ),
        (
            {
                "messages": [
                    *ask("x"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    *ask("x"),
                ]
            },
            "messages.[1].tool_calls",
            "tool calls",
        ),
        ({"messages": [{"role": "user", "content": []}]}, "messages.[0].content", "empty array"),
        ({"messages": [{"role": "user", "content": None}]}, "messages.[0].content", "Missing"),
        ({"messages": [*ask("x"), {"role": "system", "content": "x"}]}, "messages", "user's"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools",
            "not supported",
        ),
        ({"tool_choice": "required"}, "tool_choice", "not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format", "not supported"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "not supported"),
        ({"store": True}, "store", "not supported"),
        ({"reasoning_effort": "high"}, "reasoning_effort", "not supported"),
        ({"modalities": ["text", "audio"]}, "modalities", "not supported"),
        ({"extra_body": {"top_k": 5}}, "top_k", "Unrecognized request argument"),
        ({"seed": 2**64}, "seed", "less than or equal to 9223372036854775807"),
        ({"max_tokens": 300}, "max_tokens", "maximum context length is 256"),
        ({"max_completion_tokens": 300}, "max_completion_tokens", "maximum context length"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(server, kwargs, param, words):
    arguments = {"model": "mencius", "messages": ask(QUESTIONS[0]), **kwargs}
    with pytest.raises(openai.BadRequestError) as error:
        client(server).chat.completions.create(**arguments)
    body = error.value.body
    assert set(body) == {"message", "type", "param", "code"}, body
    assert body["param"] == param and words in body["message"], body


def test_n_choices_are_n_answers_seeded_one_after_another(server):
    single = answer(server, max_tokens=8)
    three = answer(server, max_tokens=8, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {single.choices[0].message.content}
    assert three.usage.prompt_tokens == single.usage.prompt_tokens  # one prompt
    assert three.usage.completion_tokens == 3 * single.usage.completion_tokens

    sampled = {"temperature": 2, "max_tokens": 10, "logit_bias": NO_EOS}
    two = answer(server, n=2, seed=40, **sampled)
    alone = [answer(server, seed=seed, **sampled).choices[0].message.content for seed in (40, 41)]
    assert [c.message.content for c in two.choices] == alone

    chunks = list(
        client(server).chat.completions.create(
            model="mencius",
            messages=ask(QUESTIONS[0]),
            n=2,
            seed=40,
            stream=True,
            stream_options={"include_usage": True},
            **sampled,
        )
    )
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == alone[index]
        assert [c.finish_reason for c in mine if c.finish_reason] == ["length"]
        assert mine[-1].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20


def test_n_answers_merged_a_broken_one_ends_as_a_failure_not_a_wait():
    from kotune.inference.requests import Delta, Done, Failure
    from kotune.serving.openai_api import merge

    async def good():
        yield Delta("가")
        yield Done("stop", 3, 1)

    async def broken():
        yield Delta("나")
        raise RuntimeError("the engine is closed")

    async def run():
        return [event async for event in merge([good(), broken()])]

    events = asyncio.run(asyncio.wait_for(run(), timeout=10))
    assert [e for i, e in events if i == 0] == [Delta("가"), Done("stop", 3, 1)]
    assert [e for i, e in events if i == 1] == [
        Delta("나"),
        Failure("generation failed: RuntimeError: the engine is closed"),
    ]


class TemplateRefuses:
    """A backend whose chat template raises as HF templates do (`raise_exception`)."""

    model_id, vocab_size = "strict", 100

    def prepare(self, messages, max_tokens):
        from jinja2 import TemplateError

        raise TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")

    def close(self):
        pass


def test_a_chat_template_that_refuses_the_messages_is_a_400():
    from fastapi.testclient import TestClient

    from kotune.serving.app import create_app

    with TestClient(create_app(TemplateRefuses())) as http:
        messages = [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]
        response = http.post("/v1/chat/completions", json={"model": "strict", "messages": messages})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and "roles must alternate" in error["message"]


def test_the_token_limits_and_stops_as_clients_write_them(server):
    both = answer(server, max_tokens=20, max_completion_tokens=3, logit_bias=NO_EOS)
    assert both.usage.completion_tokens == 3  # max_completion_tokens wins, as in vLLM
    text = answer(server, max_tokens=10, logit_bias=NO_EOS).choices[0].message.content
    stop = text[3:5]
    one = answer(server, max_tokens=10, logit_bias=NO_EOS, stop=stop).choices[0].message
    listed = answer(server, max_tokens=10, logit_bias=NO_EOS, stop=["없는말", stop])
    assert one.content == listed.choices[0].message.content == text[: text.index(stop)].rstrip()


def test_presence_and_frequency_penalties_change_a_repetitive_answer(server):
    def words(**penalties) -> list[str]:
        no_repetition_penalty = {"repetition_penalty": 1.0}  # the persona's would blur it
        reply = answer(
            server, max_tokens=40, logit_bias=NO_EOS, extra_body=no_repetition_penalty, **penalties
        )
        return reply.choices[0].message.content.split()

    def most_repeated(said: list[str]) -> int:
        return max(said.count(word) for word in said)

    assert most_repeated(words()) >= 2  # greedy and unpenalised, the tiny model repeats itself
    for penalties in ({"frequency_penalty": 2}, {"presence_penalty": 2}):
        assert most_repeated(words(**penalties)) == 1, penalties
    repeating = words(frequency_penalty=-2)  # negative: the same word again and again
    assert most_repeated(repeating) > len(repeating) / 2, repeating


def test_a_seed_repeats_a_sampled_answer(server):
    def sampled(seed: int) -> str:
        said = answer(server, temperature=2, seed=seed, max_tokens=12, logit_bias=NO_EOS)
        return said.choices[0].message.content

    assert sampled(7) == sampled(7)
    assert len({sampled(seed) for seed in (1, 2, 3)}) > 1


def test_the_key_is_checked_first_and_never_logged(server):
    wrong = "sk-wrong-key-4242"
    status, data = raw_post(server, b'{"model": "mencius", "messages": [', {"Authorization": ""})
    assert status == 401 and data["error"]["code"] == "invalid_api_key"  # not the JSON error
    status, data = raw_post(server, b"{}", {"Authorization": f"Bearer {wrong}"})
    assert status == 401 and data["error"]["message"] == "Incorrect API key provided."
    body = json.dumps({"model": "mencius", "messages": ask("x"), "max_tokens": 1}).encode()
    assert raw_post(server, body, {"Authorization": f"bearer {KEY}"})[0] == 200
    assert raw_post(server, body, {"Authorization": f"Basic {KEY}"})[0] == 401
    with pytest.raises(openai.AuthenticationError):
        client(server, wrong).models.retrieve("mencius")
    status, data = raw_post(server, b"", {"Content-Length": "0"})
    assert status == 400 and "request body is empty" in data["error"]["message"]
    time.sleep(0.3)
    log = server["log"].read_text(encoding="utf-8")
    assert "POST /v1/chat/completions 401 error=invalid_api_key" in log
    assert KEY not in log and wrong not in log


def request(server, method: str, path: str, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_head_and_a_wrong_method(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/health", "/v1/models", "/v1/models/mencius"):
        response, body = request(server, "HEAD", path, auth)
        assert response.status == 200 and body == b"", path
    response, body = request(server, "GET", "/v1/chat/completions", auth)
    assert response.status == 405 and response.getheader("allow") == "POST"
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and "GET is not allowed" in error["message"]


def test_cors_only_for_the_site_named_and_only_on_the_api(server):
    preflight = {"Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization,content-type,x-stainless-os"
    response, _ = request(
        server, "OPTIONS", "/v1/chat/completions", {"Origin": ALLOWED_ORIGIN, **preflight}
    )
    assert response.status == 200
    assert response.getheader("access-control-allow-origin") == ALLOWED_ORIGIN
    assert "x-stainless-os" in response.getheader("access-control-allow-headers").lower()
    assert response.getheader("access-control-allow-credentials") is None  # never cookies
    response, _ = request(
        server, "OPTIONS", "/v1/chat/completions", {"Origin": "https://evil.example", **preflight}
    )
    assert response.getheader("access-control-allow-origin") is None
    response, _ = request(
        server, "GET", "/v1/models", {"Origin": ALLOWED_ORIGIN, "Authorization": f"Bearer {KEY}"}
    )
    assert response.getheader("access-control-allow-origin") == ALLOWED_ORIGIN
    response, _ = request(server, "GET", "/login", {"Origin": ALLOWED_ORIGIN})
    assert response.status == 200 and response.getheader("access-control-allow-origin") is None


def test_a_cors_origin_that_is_none_is_one_line(tiny_adapter):
    result = subprocess.run(
        [KOTUNE, "serve", "--adapter", str(tiny_adapter), "--cors-origin", "https://a.example/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kotune: error: --cors-origin 'https://a.example/': not an")


def test_every_streamed_event_parses_as_the_clients_chunk(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    body = {
        "model": "mencius",
        "messages": ask(QUESTIONS[3]),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 6,
        "logit_bias": NO_EOS,
    }
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    response = connection.getresponse()
    assert response.getheader("content-type").startswith("text/event-stream")
    assert response.getheader("x-accel-buffering") == "no"  # nginx passes pieces on at once
    events = [e for e in response.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e[6:])) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    *answer_chunks, usage_chunk = chunks
    assert [c.choices[0].finish_reason for c in answer_chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in answer_chunks[:-1])
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 6


def test_a_client_that_leaves_a_plain_answer_frees_its_slot(server):
    before = health(server)
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    body = {
        "model": "mencius",
        "messages": ask(QUESTIONS[2]),
        "max_tokens": 180,
        "temperature": 2.0,
        "seed": 1,
        "logit_bias": NO_EOS,  # the answer would run for 180 tokens
    }
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    deadline = time.monotonic() + 30
    while health(server)["running"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    others: list[str] = []
    other = threading.Thread(
        target=lambda: others.append(answer(server, max_tokens=4).choices[0].finish_reason)
    )
    other.start()
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    other.join(timeout=60)
    assert others and others[0] in ("stop", "length")  # the others are still served
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = health(server)
        if now["cancelled"] > before["cancelled"] and now["running"] == 0:
            break
        time.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + 1 and now["running"] == 0, now


def test_every_error_status_is_the_clients_exception_with_an_openai_body(caplog):
    """Whatever status a /v1 route raises (now or in a later route), the body has OpenAI's shape
    and the official client raises its class; an unexpected exception is a 500 whose words
    (which can hold a user's text) stay out of the answer and the log."""
    from fastapi import APIRouter, HTTPException
    from fastapi.testclient import TestClient

    from kotune.serving.app import create_app

    router = APIRouter(prefix="/v1/probe")

    @router.get("/{status}")
    async def probe(status: int):
        if status == 500:
            raise RuntimeError("제 전화번호는 010-1234-5678")
        raise HTTPException(status, "probe")

    app = create_app(TemplateRefuses(), routers=[router])
    http = TestClient(app, raise_server_exceptions=False)
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http)
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
        500: openai.InternalServerError,
        503: openai.InternalServerError,
    }
    raised = {}
    with caplog.at_level("INFO", logger="kotune"):
        for status, error_class in classes.items():
            with pytest.raises(error_class) as error:
                api.with_options(max_retries=0).get(f"/probe/{status}", cast_to=object)
            assert error.value.status_code == status
            raised[status] = error.value.body
    for status, body in raised.items():
        assert set(body) == {"message", "type", "param", "code"}, body
        kind = {429: "rate_limit_exceeded"}.get(status, "invalid_request_error")
        assert body["type"] == ("server_error" if status >= 500 else kind), body
    assert raised[500]["message"] == "internal server error (RuntimeError)"
    assert "010-1234-5678" not in caplog.text and "전화번호" not in caplog.text
    assert "internal error on GET /v1/probe/500: RuntimeError" in caplog.text
