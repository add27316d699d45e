"""OpenAIBackend, the `--backend-url` mode, against the scripted OpenAI-compatible server over
real HTTP: discovery, streamed pieces ending in usage, errors as BackendError, early close."""

from __future__ import annotations

import asyncio

import pytest
from conftest import MENU, free_port
from scripted_openai import reply_for

from kotune.serving.backend import BackendError, OpenAIBackend, Usage


def collect(backend, messages, **options):
    async def run():
        try:
            return [piece async for piece in backend.stream(messages, **options)]
        finally:
            await backend.aclose()

    return asyncio.run(run())


def test_connect_uses_the_servers_model_and_checks_a_named_one(scripted):
    backend = asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", None, MENU))
    assert backend.model_id == "scripted-persona" and backend.persona is MENU
    with pytest.raises(BackendError, match="--backend-model nope: not served at"):
        asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", "key", MENU, model="nope"))


def test_unreachable_server_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError, match=r"--backend-url .*: cannot connect"):
        asyncio.run(OpenAIBackend.connect(url, None, MENU, timeout_s=5))


def test_stream_yields_the_answer_then_usage(scripted):
    backend = asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", None, MENU))
    messages = [
        {"role": "system", "content": "당신은 도우미입니다.\n\n사용자 선호: 싫어함 — 오이"},
        {"role": "user", "content": "점심 추천"},
    ]
    pieces = collect(backend, messages, max_tokens=64, temperature=0.2)
    *text, usage = pieces
    assert all(isinstance(p, str) for p in text) and len(text) > 3  # streamed, not one block
    assert "".join(text) == reply_for(messages)
    assert usage == Usage(sum(len(m["content"]) for m in messages), len(text))
    sent = scripted.app.state.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.2
    assert sent["messages"] == messages and sent["model"] == "scripted-persona"


@pytest.mark.parametrize(
    ("question", "message"), [("[[fail]]", "HTTP 500: scripted failure"), ("[[break]]", "peer")]
)
def test_failures_raise_backend_error(scripted, question, message):
    backend = asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", None, MENU))
    with pytest.raises(BackendError, match=message):
        collect(backend, [{"role": "user", "content": question}])


def test_closing_the_stream_early_stops_the_generation(scripted):
    backend = asyncio.run(OpenAIBackend.connect(f"{scripted.url}/v1", None, MENU))
    before = scripted.app.state.cancelled

    async def run():
        stream = backend.stream([{"role": "user", "content": "[[slow]]"}])
        first = await stream.__anext__()
        await stream.aclose()  # what the web app does when its client leaves
        await backend.aclose()
        for _ in range(100):
            if scripted.app.state.cancelled > before:
                return first
            await asyncio.sleep(0.05)
        raise AssertionError("the server kept generating")

    assert asyncio.run(run()).startswith("질문")
