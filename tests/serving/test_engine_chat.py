"""EngineChat, the web chat's backend on the in-process engine: the answer streamed as text
then usage, the oldest turns left out to fit the context, a client that leaves cancels the
answer, and a message the model cannot take is a BackendError of one line without its text."""

from __future__ import annotations

import asyncio
import time

import pytest

from kotune.serving.backend import BackendError, Persona, Usage


@pytest.fixture(scope="module")
def chat(babbling_adapter):
    """The babbling export (random weights: it never ends before its token limit) in an engine;
    the persona as its kotune.json describes it."""
    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine
    from kotune.serving.engine_backend import EngineBackend, EngineChat

    loaded = load_exported(babbling_adapter)
    engine = Engine(loaded.model, loaded.tokenizer, loaded.settings, slots=2)
    backend = EngineBackend(engine, "mencius")
    yield EngineChat(backend, Persona.of_adapter(loaded.settings))
    backend.close()


def collect(chat, messages, **options):
    async def run():
        return [piece async for piece in chat.stream(messages, **options)]

    return asyncio.run(run())


def test_the_persona_comes_from_kotune_json(chat):
    assert chat.persona.display_name == "맹자" and chat.persona.preferences is False
    assert chat.persona.system_prompt and chat.model_id == "mencius"


def test_an_answer_streams_as_text_then_usage(chat):
    pieces = collect(chat, [{"role": "user", "content": "인이란 무엇입니까?"}], max_tokens=12)
    assert all(isinstance(p, str) and p for p in pieces[:-1]) and len(pieces) >= 3
    usage = pieces[-1]
    assert isinstance(usage, Usage) and usage.completion_tokens == 12 and usage.prompt_tokens > 0
    # without a limit: the persona's max_new_tokens (24 in the tiny export)
    assert collect(chat, [{"role": "user", "content": "의란?"}])[-1].completion_tokens == 24


def test_a_long_history_is_trimmed_from_the_oldest_turn(chat):
    history = []
    for i in range(40):
        history += [
            {"role": "user", "content": f"{i}번째 질문입니다. 왕도란 무엇입니까?"},
            {"role": "assistant", "content": "백성을 근본으로 삼는 것이오."},
        ]
    history.append({"role": "user", "content": "마지막 질문"})
    usage = collect(chat, history, max_tokens=8)[-1]
    assert usage.completion_tokens == 8
    assert usage.prompt_tokens + 8 <= chat.backend.context


def test_a_message_too_long_is_one_line_without_its_text(chat):
    secret = "제 번호는 010-9876-5432입니다. " * 60
    with pytest.raises(BackendError) as caught:
        collect(chat, [{"role": "user", "content": secret}])
    message = str(caught.value)
    assert "\n" not in message and "010" not in message and "context" in message


def test_leaving_early_cancels_the_answer(chat):
    before = chat.backend.load()["cancelled"]

    async def leave_after_two_pieces():
        stream = chat.stream([{"role": "user", "content": "호연지기는?"}], max_tokens=120)
        pieces = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return pieces

    assert all(isinstance(p, str) for p in asyncio.run(leave_after_two_pieces()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = chat.backend.load()
        if now["cancelled"] > before and now["running"] == 0:
            break
        time.sleep(0.05)
    assert now["cancelled"] == before + 1 and now["running"] == 0, now
