"""The engine: shown text (stop patterns across chunk boundaries, whole characters only), the
history budget, and the batching scheduler (answers in a batch equal answers alone, rows joining
and leaving, per-row sampling, failures and cancellation reaching the caller)."""

import threading
import time

import pytest

from kotune.inference.decoding import AnswerText, Detokenizer
from kotune.prompting import cut_at_stop

STOPS = ["\n질문:", "### 질문:", "<|im_start|>"]


@pytest.mark.parametrize(
    "pieces",
    [
        ["인은 사람의 ", "마음이오.", "\n질", "문: 다음"],  # the pattern split over two pieces
        ["인은 사람의 마음이오.\n", "\n", "###", " 질문", ": 의란?"],
        ["  인은", " 사람의 마음이오.  ", "\n\n"],  # no pattern: whitespace trimmed at both ends
        ["인은 <|im_", "start|>user"],
        ["", "인", "은", " ", "마", "음", "#", "## 질", "문:"],
        ["인은 ### 질의 응답이오.", " 끝"],  # a prefix of a pattern that does not complete
    ],
)
def test_stop_patterns_are_never_shown_and_the_pieces_join_to_the_answer(pieces):
    text = AnswerText(STOPS)
    shown = [text.feed(p) for p in pieces] + [text.finish()]
    whole = "".join(pieces)
    expected = cut_at_stop(whole, STOPS).strip()
    assert "".join(shown) == expected
    for end in range(1, len(shown)):  # no prefix of what was shown ends in a partial pattern
        so_far = "".join(shown[:end])
        assert not any(p in so_far for p in STOPS)
        assert so_far == so_far.rstrip() or not so_far  # trailing whitespace is held back


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-level alphabet (what tokenizers' ByteLevel uses): printable bytes stand for
    themselves, the others are shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokens(tokenizer, text: str) -> list[int]:
    """`text` as one byte-level token per UTF-8 byte (the worst split a BPE can make)."""
    alphabet = byte_alphabet()
    ids = [tokenizer.convert_tokens_to_ids(alphabet[b]) for b in text.encode("utf-8")]
    assert tokenizer.unk_token_id not in ids and None not in ids
    return ids


def test_a_hangul_syllable_split_over_tokens_is_shown_whole(tiny_tokenizer):
    text = "호연지기는 무엇입니까?"
    detokenizer = Detokenizer(tiny_tokenizer)
    pieces = [detokenizer.feed(t) for t in byte_tokens(tiny_tokenizer, text)]
    assert "\ufffd" not in "".join(pieces)
    assert "".join(pieces) + detokenizer.finish() == text
    assert [p for p in pieces if p] == list(text)  # each syllable released once all 3 bytes came
    # real BPE tokens too
    detokenizer = Detokenizer(tiny_tokenizer)
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert "".join(detokenizer.feed(t) for t in ids) + detokenizer.finish() == text


def test_an_answer_cut_mid_syllable_drops_the_partial_bytes_but_shows_invalid_ones(tiny_tokenizer):
    cut = byte_tokens(tiny_tokenizer, "인의")[:-1]  # the token limit hit inside 의
    detokenizer = Detokenizer(tiny_tokenizer)
    shown = "".join(detokenizer.feed(t) for t in cut) + detokenizer.finish()
    assert shown == "인"
    # a continuation byte with no lead byte is the model's own invalid output: it stays visible
    stray = byte_tokens(tiny_tokenizer, "인")[1:2]  # 0xB8 alone
    detokenizer = Detokenizer(tiny_tokenizer)
    ids = stray + byte_tokens(tiny_tokenizer, "의")
    assert "".join(detokenizer.feed(t) for t in ids) + detokenizer.finish() == "\ufffd의"


# ---------------------------------------------------------------------------- the engine

QUESTIONS = [
    "인이란 무엇입니까?",
    "호연지기는?",
    "맹자님, 왕도란 무엇입니까?",
    "의란 무엇이오?",
    "성선설을 설명해 주십시오.",
    "사단이란?",
    "군자의 도는 무엇입니까?",
    "백성을 어떻게 다스립니까?",
    "양혜왕이 이익을 물었을 때 무엇이라 답하셨습니까?",
    "부동심이란?",
]


@pytest.fixture(scope="module")
def loaded(tiny_adapter):
    from kotune.inference.adapter import load_exported

    return load_exported(tiny_adapter)


@pytest.fixture
def make_engine(loaded):
    from kotune.inference.engine import Engine

    engines = []

    def make(**options):
        engine = Engine(loaded.model, loaded.tokenizer, loaded.settings, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def ask(engine, question, **params):
    return engine.prompt([{"role": "user", "content": question}], params.get("max_new_tokens", 24))


def test_answers_in_a_batch_equal_answers_alone(make_engine):
    engine = make_engine(slots=8)
    params = engine.params(max_new_tokens=24)
    prompts = [ask(engine, q) for q in QUESTIONS[:8]]
    alone = [engine.answer(p, params) for p in prompts]
    together = engine.answer_all(prompts, params)
    assert [a.text for a in together] == [a.text for a in alone]
    assert len({a.text for a in alone}) >= 3, "the questions should get different answers"
    assert all(a.finish_reason in ("stop", "length") for a in together)
    assert [a.prompt_tokens for a in together] == [len(p.ids) for p in prompts]


def test_rows_join_and_leave_through_few_slots_and_a_short_context(make_engine):
    """10 answers through 3 slots in a 128-token context: answers end at different steps, the
    last row moves into a freed slot, new rows join mid-stream, and the shared write position
    reaches the end and shifts back, many times. Every answer is still its answer alone."""
    reference = make_engine(slots=1)
    engine = make_engine(slots=3, context=128)
    eos = engine.tokenizer.eos_token_id  # no early end: rows run up to 40 tokens
    params = engine.params(max_new_tokens=40, logit_bias=((eos, -100.0),))
    prompts = [ask(engine, q, max_new_tokens=40) for q in QUESTIONS]
    alone = [reference.answer(p, params).text for p in prompts]
    cache, calls = engine.batcher.cache, {"left": 0, "right": 0, "move": 0}
    shift, move = cache.shift, cache.move

    def spy_shift(rows, lo, new_t):
        calls["left" if new_t < cache.t else "right"] += rows > 0
        shift(rows, lo, new_t)

    def spy_move(*args):
        calls["move"] += 1
        move(*args)

    cache.shift, cache.move = spy_shift, spy_move
    assert [a.text for a in engine.answer_all(prompts, params)] == alone
    assert cache.t <= 128
    assert calls["left"] >= 1 and calls["move"] >= 1, calls  # the paths under test did run


def test_seeded_sampling_is_the_rows_own(make_engine):
    engine = make_engine(slots=4)
    prompts = [ask(engine, q) for q in QUESTIONS[:4]]
    sample = [
        engine.params(max_new_tokens=24, do_sample=True, temperature=1.5, seed=s)
        for s in (1, 2, 3, 4)
    ]
    alone = [engine.answer(p, s).text for p, s in zip(prompts, sample)]
    assert [engine.answer(p, s).text for p, s in zip(prompts, sample)] == alone  # repeatable
    results = {}

    def run(i):
        results[i] = engine.answer(prompts[i], sample[i]).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(4)] == alone  # batched with others: the same draws
    other = engine.answer(
        prompts[0], engine.params(max_new_tokens=24, do_sample=True, temperature=1.5, seed=99)
    )
    greedy = engine.answer(prompts[0], engine.params(max_new_tokens=24))
    assert len({alone[0], other.text, greedy.text}) >= 2


@pytest.mark.parametrize(
    ("answer", "presence", "frequency", "chosen"),
    [
        ([], 2.0, 2.0, 2),  # nothing said yet: nothing to penalise
        ([2, 2], 0.0, 1.0, 1),  # 2.5 - 2 × 1.0 = 0.5 < 1.0
        ([2], 0.0, 1.0, 2),  # 2.5 - 1.0 = 1.5: still first
        ([2], 2.0, 0.0, 1),  # once is enough for presence
        ([3], -3.0, 0.0, 3),  # negative: said again
    ],
)
def test_presence_and_frequency_penalties_count_the_answers_tokens(
    answer, presence, frequency, chosen
):
    import torch

    from kotune.inference.decoding import SamplingParams, pick_tokens

    logits = torch.tensor([[0.0, 1.0, 2.5, 0.0, 0.0]] * 2)
    plain = SamplingParams(max_new_tokens=4)
    penalised = SamplingParams(
        max_new_tokens=4, presence_penalty=presence, frequency_penalty=frequency
    )
    greedy = logits.argmax(dim=-1)
    picked = pick_tokens(logits, greedy, [plain, penalised], [None, None], [answer, answer])
    assert picked == [2, chosen]  # the unpenalised row keeps its greedy choice


def test_any_integer_seed_is_answered(make_engine):
    """A seed outside torch's range once failed in the engine's thread: its answer (and the
    others joining with it) waited forever. Seeds are taken modulo 2**64."""
    engine = make_engine(slots=4)
    prompt = ask(engine, QUESTIONS[0])
    texts = {}

    def run(seed):
        params = engine.params(max_new_tokens=8, do_sample=True, temperature=1.5, seed=seed)
        texts[seed] = engine.answer(prompt, params).text

    seeds = [2**64 + 5, 2**70, -(2**63) - 1, 5, -1, 2**64 - 1]
    threads = [threading.Thread(target=run, args=(seed,), daemon=True) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(texts) == sorted(seeds), "an answer was left waiting"
    assert texts[2**64 + 5] == texts[5] and texts[-1] == texts[2**64 - 1]


def test_a_request_stop_string_and_logit_bias(make_engine):
    engine = make_engine(slots=2)
    prompt = ask(engine, QUESTIONS[1])
    answer = engine.answer(prompt, engine.params(max_new_tokens=24)).text
    assert len(answer) >= 3
    stop = answer[1:3]
    cut = engine.answer(prompt, engine.params(max_new_tokens=24, stop=(stop,)))
    assert cut.text == answer[: answer.index(stop)].rstrip() and cut.finish_reason == "stop"
    eos = engine.tokenizer.eos_token_id
    long = engine.answer(prompt, engine.params(max_new_tokens=30, logit_bias=((eos, -100.0),)))
    assert long.completion_tokens == 30 or long.finish_reason == "stop"


def test_the_history_budget_leaves_out_the_oldest_turns(make_engine):
    from kotune.inference.engine import PromptTooLong

    engine = make_engine(slots=1)
    turn = "맹자께서 말씀하시기를 인은 사람의 마음이요 의는 사람의 길이라 하셨소. " * 2
    history = []
    for i in range(12):
        history += [
            {"role": "user", "content": f"{i}번째 질문: {turn}"},
            {"role": "assistant", "content": turn},
        ]
    messages = [*history, {"role": "user", "content": "마지막 질문"}]
    prompt = engine.prompt(messages, 24, drop_oldest=True)
    assert prompt.turns_dropped > 0 and len(prompt.ids) + 24 <= engine.context
    text = engine.tokenizer.decode(prompt.ids)
    assert "마지막 질문" in text and "0번째 질문" not in text
    with pytest.raises(PromptTooLong) as error:
        engine.prompt(messages, 24)  # the API's way: no turn is left out silently
    assert error.value.context == engine.context == 256
    with pytest.raises(PromptTooLong):
        engine.prompt([{"role": "user", "content": turn * 20}], 24, drop_oldest=True)


def test_the_system_message_replaces_the_personas(make_engine):
    engine = make_engine(slots=1)
    persona = engine.tokenizer.decode(engine.prompt([{"role": "user", "content": "인?"}], 8).ids)
    assert engine.settings.system_prompt in persona
    own = [{"role": "system", "content": "너는 공자다."}, {"role": "user", "content": "인?"}]
    text = engine.tokenizer.decode(engine.prompt(own, 8).ids)
    assert "너는 공자다." in text and engine.settings.system_prompt not in text


class Breaking:
    """The model, but its forward raises while `armed` (what a CUDA error looks like)."""

    def __init__(self, model):
        self.model, self.armed = model, False

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        if self.armed:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.model(**kwargs)


def test_a_failed_forward_reaches_the_caller_and_the_engine_goes_on(make_engine):
    from kotune.errors import KotuneError

    engine = make_engine(slots=2)
    breaking = Breaking(engine.batcher.model)
    engine.batcher.model = breaking
    prompt = ask(engine, QUESTIONS[0])
    params = engine.params(max_new_tokens=12)
    before = engine.answer(prompt, params).text
    breaking.armed = True
    with pytest.raises(KotuneError, match="generation failed: RuntimeError: CUDA error"):
        engine.answer(prompt, params)
    breaking.armed = False
    assert engine.answer(prompt, params).text == before
    assert engine.load()["failed"] == 1 and engine.load()["running"] == 0


def test_a_cancelled_answer_frees_its_slot(make_engine):
    from kotune.inference.engine import Delta

    engine = make_engine(slots=1)
    eos = engine.tokenizer.eos_token_id
    params = engine.params(
        max_new_tokens=200, do_sample=True, temperature=2.0, seed=0, logit_bias=((eos, -100.0),)
    )
    prompt = ask(engine, QUESTIONS[0], max_new_tokens=200)
    stream = engine.stream(prompt, params)
    first = next(e for e in stream if isinstance(e, Delta))
    assert first.text
    stream.close()  # the caller leaves after the first piece
    for _ in range(200):
        if engine.load()["running"] == 0:
            break
        time.sleep(0.01)
    load = engine.load()
    assert load["running"] == 0 and load["cancelled"] == 1 and load["finished"] == 0
    # the freed slot serves the next request
    assert (
        engine.answer(ask(engine, QUESTIONS[1]), engine.params(max_new_tokens=8)).completion_tokens
        >= 1
    )


def test_the_cache_goes_in_under_the_keyword_the_models_forward_takes():
    """transformers 5.24 renamed forward's `past_key_values` to `cache` (the old name warns on
    every call, and goes in 5.40): the engine passes it under the name the model declares,
    looked up through a PEFT wrapper."""
    from kotune.inference.slots import cache_keyword

    class Before:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    class After:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs): ...

    class Wrapped:  # PeftModel's forward takes *args, **kwargs; its base model says
        def __init__(self, inner):
            self.inner = inner

        def forward(self, *args, **kwargs): ...

        def get_base_model(self):
            return self.inner

    assert cache_keyword(Before()) == "past_key_values"
    assert cache_keyword(After()) == "cache"
    assert cache_keyword(Wrapped(After())) == "cache"
    assert cache_keyword(Wrapped(Before())) == "past_key_values"
