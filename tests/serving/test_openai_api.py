"""`kotune serve` against the official `openai` client: models, answers streamed and not, usage,
every error as the client's matching exception with an OpenAI-shaped body, many streams at
once, clients that leave, a generation that fails, and logs without message content."""

import http.client
import json
import socket
import subprocess
import threading
import time

import openai
import pytest
from openai_live import (
    KEY,
    KOTUNE,
    QUESTIONS,
    SECRET,
    ask,
    client,
    free_port,
    health,
    raw_post,
    wait_until_up,
)


def test_the_model_list_names_the_persona(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["mencius"]
    assert client(server).models.retrieve("mencius").owned_by == "kotune"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("gpt-4o")


def test_an_answer_streamed_joins_to_the_same_answer(server):
    api = client(server)
    answer = api.chat.completions.create(model="mencius", messages=ask(QUESTIONS[1]), temperature=0)
    choice = answer.choices[0]
    assert answer.object == "chat.completion" and answer.model == "mencius"
    assert choice.message.role == "assistant" and choice.message.content
    assert any("가" <= c <= "힣" for c in choice.message.content)  # Korean
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(
        api.chat.completions.create(
            model="mencius",
            messages=ask(QUESTIONS[1]),
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == usage  # the usage chunk comes last
    assert all(c.usage is None for c in chunks[:-1])


def test_the_token_limit_and_a_stop_string(server):
    api = client(server)
    eos = {"0": -100}  # <|endoftext|> is id 0 in the scratch tokenizer: no early end
    long = api.chat.completions.create(
        model="mencius", messages=ask(QUESTIONS[0]), max_completion_tokens=7, logit_bias=eos
    )
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 7
    text = long.choices[0].message.content
    stop = text[2:4]
    cut = api.chat.completions.create(
        model="mencius", messages=ask(QUESTIONS[0]), max_tokens=7, logit_bias=eos, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)].rstrip()
    assert cut.choices[0].finish_reason == "stop"


def body_of(error: openai.APIStatusError) -> dict:
    assert set(error.body) == {"message", "type", "param", "code"}, error.body
    return error.body


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"top_p": -0.5}, "top_p", "greater than or equal to 0"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"extra_body": {"tempreature": 0.5}}, "tempreature", "Unrecognized request argument"),
        ({"n": 129}, "n", "less than or equal to 128"),
        ({"presence_penalty": 2.5}, "presence_penalty", "less than or equal to 2"),
        ({"logit_bias": {"999999": 5}}, "logit_bias", "not a token id"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "user"}]}, "messages.[0].content", "Missing required"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.[0].role", "'user'"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages", "the user's"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages.[0].content.[0].type",
            "'image_url' content is not supported",
        ),
    ],
)
def test_a_bad_request_is_a_400_naming_the_parameter(server, kwargs, param, words):
    arguments = {"model": "mencius", "messages": ask(QUESTIONS[0]), **kwargs}
    with pytest.raises(openai.BadRequestError) as error:
        client(server).chat.completions.create(**arguments)
    body = body_of(error.value)
    assert body["param"] == param and words in body["message"], body
    assert body["type"] == "invalid_request_error"


def test_a_prompt_over_the_context_names_the_limit(server):
    with pytest.raises(openai.BadRequestError) as error:
        client(server).chat.completions.create(
            model="mencius", messages=ask("인의예지 " * 200), max_tokens=10
        )
    body = body_of(error.value)
    assert body["code"] == "context_length_exceeded" and body["param"] == "messages"
    assert "maximum context length is 256 tokens" in body["message"]
    with pytest.raises(openai.BadRequestError) as error:  # the answer's budget counts too
        client(server).chat.completions.create(
            model="mencius", messages=ask(QUESTIONS[0]), max_tokens=250
        )
    assert body_of(error.value)["code"] == "context_length_exceeded"
    assert "250 in the completion" in error.value.message


def test_an_unknown_model_is_a_404_and_a_wrong_key_a_401(server):
    with pytest.raises(openai.NotFoundError) as error:
        client(server).chat.completions.create(model="gpt-4o", messages=ask(QUESTIONS[0]))
    assert body_of(error.value)["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError) as error:
        client(server, "wrong-key").chat.completions.create(model="mencius", messages=ask("x"))
    assert body_of(error.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong-key").models.list()
    body = json.dumps({"model": "mencius", "messages": ask("x")}).encode()
    status, data = raw_post(server, body, {"Authorization": ""})  # no key at all
    assert status == 401 and data["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in data["error"]["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"model": "mencius", "messages": [', "could not parse the JSON body"),
        (b"[1, 2]", "must be a JSON object"),
        ('{"model": "mencius", "messages": "인"}'.encode(), "'messages'"),
    ],
)
def test_malformed_json_is_a_400_in_openai_shape(server, body, words):
    status, data = raw_post(server, body)
    assert status == 400 and set(data) == {"error"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert words in data["error"]["message"]


def test_eight_streams_at_once_get_their_own_answers_faster_than_in_turn(server):
    api = client(server)

    def stream(question: str) -> str:
        chunks = api.chat.completions.create(
            model="mencius", messages=ask(question), temperature=0, max_tokens=24, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    start = time.perf_counter()
    alone = [stream(q) for q in QUESTIONS]
    in_turn = time.perf_counter() - start
    assert len(set(alone)) >= 3, "different questions should get different answers"
    results: dict[int, str] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.update({i: stream(QUESTIONS[i])}))
        for i in range(8)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = time.perf_counter() - start
    assert [results[i] for i in range(8)] == alone  # no cross-talk, no drift in the batch
    assert together < in_turn, f"8 streams at once took {together:.2f} s, in turn {in_turn:.2f} s"


@pytest.mark.parametrize("choices", [1, 3])
def test_a_client_that_leaves_mid_stream_frees_its_slot(server, choices):
    before = health(server)
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    body = {
        "model": "mencius",
        "messages": ask(QUESTIONS[2]),
        "stream": True,
        "max_tokens": 180,
        "temperature": 2.0,
        "seed": 1,
        "n": choices,
        "logit_bias": {"0": -100},  # no end of text: the answer would run for 180 tokens
    }
    connection.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(body),
        {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith(
        "text/event-stream"
    )
    first = response.readline()
    assert first.startswith(b"data: {")
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = health(server)
        if now["cancelled"] >= before["cancelled"] + choices and now["running"] == 0:
            break
        time.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + choices and now["running"] == 0, now
    assert now["finished"] == before["finished"]  # it was stopped, not run to its end


def test_the_log_says_method_path_status_tokens_but_no_content(server):
    api = client(server)
    api.chat.completions.create(model="mencius", messages=ask(SECRET), max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model="mencius", messages=ask(SECRET), temperature=9)
    time.sleep(0.5)
    log = server["log"].read_text(encoding="utf-8")
    assert "POST /v1/chat/completions 200 prompt_tokens=" in log
    assert "POST /v1/chat/completions 400 error=invalid_request_error" in log
    for secret in (SECRET, "010-1234-5678", "전화번호", QUESTIONS[1]):
        assert secret not in log


# ---------------------------------------------------------------------------- failures


class Breaking:
    """The model, but its forward raises while `armed` (what a CUDA error looks like)."""

    def __init__(self, model):
        self.model, self.armed = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        if self.armed and kwargs["input_ids"].shape[1] == 1:  # a decode step
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.model(**kwargs)


@pytest.fixture(scope="module")
def breaking_server(tiny_adapter):
    """The app in this process (uvicorn in a thread), its model able to fail on demand."""
    import uvicorn

    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine
    from kotune.serving.app import create_app
    from kotune.serving.engine_backend import EngineBackend

    loaded = load_exported(tiny_adapter)
    engine = Engine(loaded.model, loaded.tokenizer, loaded.settings, slots=4)
    breaking = Breaking(engine.batcher.model)
    engine.batcher.model = breaking
    port = free_port()
    app = create_app(EngineBackend(engine, "mencius"))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_up(port)
    yield {"port": port, "breaking": breaking}
    server.should_exit = True
    thread.join(timeout=30)


def test_a_generation_that_fails_is_reported_and_the_server_goes_on(breaking_server):
    api = openai.OpenAI(
        base_url=f"http://127.0.0.1:{breaking_server['port']}/v1", api_key="none", max_retries=0
    )
    arguments = {
        "model": "mencius",
        "messages": ask(QUESTIONS[0]),
        "max_tokens": 12,
        "logit_bias": {"0": -100},
    }
    good = api.chat.completions.create(**arguments).choices[0].message.content
    breaking_server["breaking"].armed = 1
    with pytest.raises(openai.InternalServerError) as error:
        api.chat.completions.create(**arguments)
    assert "generation failed: RuntimeError: CUDA error" in body_of(error.value)["message"]
    with pytest.raises(openai.APIError, match="generation failed"):  # mid-stream: an error event
        for _ in api.chat.completions.create(**arguments, stream=True):
            pass
    breaking_server["breaking"].armed = 0
    assert api.chat.completions.create(**arguments).choices[0].message.content == good
    streamed = api.chat.completions.create(**arguments, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == good


def test_a_port_in_use_is_one_line(tiny_adapter):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [KOTUNE, "serve", "--adapter", str(tiny_adapter), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"kotune: error: --host 127.0.0.1 --port {port}: Address already in use"
    )
