import pytest

from kotune.errors import KotuneError
from kotune.prompting import (
    CHATML_TEMPLATE,
    KOALPACA,
    StopFilter,
    cut_at_stop,
    prompt_builder,
    render_headers,
    template_turn_markers,
)


def test_koalpaca_prompt_with_history():
    context = [
        {"role": "user", "content": "성선이란?"},
        {"role": "assistant", "content": "본성은 선하오."},
        {"role": "user", "content": "그렇다면 악은?"},
    ]
    assert render_headers(KOALPACA, "당신은 맹자입니다.", context) == (
        "당신은 맹자입니다.\n\n### 질문: 성선이란?\n\n### 답변: 본성은 선하오.\n\n"
        "### 질문: 그렇다면 악은?\n\n### 답변:"
    )


def test_no_system_prompt():
    assert (
        render_headers(KOALPACA, "", [{"role": "user", "content": "q"}])
        == "### 질문: q\n\n### 답변:"
    )


def test_koalpaca_builder_renders_the_headers_and_ends_answers_with_eos(tiny_tokenizer):
    builder = prompt_builder(tiny_tokenizer, "koalpaca", None, "당신은 맹자입니다.", "tiny")
    context = [{"role": "user", "content": "q"}]
    assert builder.chat_template is None
    assert builder.render(context) == "당신은 맹자입니다.\n\n### 질문: q\n\n### 답변:"
    eos = tiny_tokenizer.eos_token_id
    assert builder.end_of_turn_id == eos and builder.stop_token_ids == (eos,)
    answer = builder.answer_ids("물과 같소.")
    assert answer[-1] == eos and tiny_tokenizer.decode(answer[:-1]) == " 물과 같소."


def test_stop_patterns_add_the_format_headers_once(tiny_tokenizer):
    builder = prompt_builder(tiny_tokenizer, "koalpaca", None, "", "tiny")
    assert builder.stop_patterns(["\n질문:", "### 질문:"]) == [
        "\n질문:",
        "### 질문:",
        "### 답변:",
    ]


class TemplateTokenizer:
    """Just what the builder asks of a tokenizer, with a chat template (or none)."""

    eos_token, eos_token_id, unk_token_id = "</s>", 2, None

    def __init__(self, chat_template):
        self.chat_template = chat_template

    def apply_chat_template(self, messages, chat_template, add_generation_prompt=False, **_):
        from jinja2 import Template

        return Template(chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, eos_token="</s>"
        )

    def convert_tokens_to_ids(self, token):
        return {"</s>": 2, "<|im_end|>": 7}.get(token)


# EEVE-style: plain-text turns, answers closed by eos
HUMAN_ASSISTANT = (
    "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}"
    "{% elif m.role == 'user' %}{{ '\\nHuman: ' + m.content }}"
    "{% else %}{{ '\\nAssistant: ' + m.content + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\nAssistant: ' }}{% endif %}"
)


@pytest.mark.parametrize(
    ("template", "end_of_turn", "prompt", "marker", "end_id"),
    [
        (HUMAN_ASSISTANT, None, "sys\nHuman: q\nAssistant: ", "Human:", 2),
        (
            CHATML_TEMPLATE,
            "<|im_end|>",
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
            "<|im_start|>assistant\n",
            "<|im_start|>user",
            7,
        ),
    ],
)
def test_template_format_renders_with_the_tokenizer_and_reads_its_turn_marker_off_it(
    template, end_of_turn, prompt, marker, end_id
):
    builder = prompt_builder(TemplateTokenizer(template), "template", end_of_turn, "sys", "eeve")
    assert builder.render([{"role": "user", "content": "q"}]) == prompt
    assert builder.stop_patterns(["\n질문:"]) == ["\n질문:", marker]
    assert builder.end_of_turn_id == end_id
    assert builder.stop_token_ids == tuple(dict.fromkeys([end_id, 2]))


def test_a_template_that_refuses_the_probe_gives_no_marker():
    refusing = "{{ raise_exception('only user and assistant') }}"
    assert template_turn_markers(TemplateTokenizer(refusing), refusing, ["</s>"]) == ()


def test_template_format_without_a_chat_template_is_a_clear_error():
    with pytest.raises(KotuneError, match="model 'eeve'.*has none.*koalpaca, chatml or llama3"):
        prompt_builder(TemplateTokenizer(None), "template", None, "sys", "eeve")


def test_an_end_of_turn_token_the_tokenizer_lacks_is_a_clear_error():
    with pytest.raises(KotuneError, match="model.end_of_turn '<\\|eot_id\\|>' is not a token"):
        prompt_builder(TemplateTokenizer(None), "llama3", "<|eot_id|>", "s", "bllossom")


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("인은 사람의 마음이오.\n질문: 의는?", "인은 사람의 마음이오."),
        ("답이오.\n\n### 질문: 또", "답이오."),
        ("답이오.\n사용자 질문: x\n질문: y", "답이오."),
        ("멈출 곳이 없소.", "멈출 곳이 없소."),
        ("### 답변: 바로", ""),
    ],
)
def test_cut_at_stop(text, cut):
    assert cut_at_stop(text, ["\n질문:", "\n사용자 질문:", "### 질문:", "### 답변:"]) == cut


@pytest.mark.parametrize(
    ("chunks", "shown"),
    [
        (["인은 ", "마음이오.", "\n", "질", "문:", " 다음"], "인은 마음이오."),
        (["답", "\n사용", "자 질문: x"], "답"),
        (["###", " 질", "문: 다음"], ""),
        (["끝까지 ", "갑니다\n"], "끝까지 갑니다"),
        (["질문이 아닌 ", "\n질", "서 있는 말"], "질문이 아닌 \n질서 있는 말"),
    ],
)
def test_stop_filter_never_shows_a_pattern_split_across_chunks(chunks, shown):
    stop = StopFilter(["\n질문:", "\n사용자 질문:", "### 질문:"])
    out = "".join(stop.feed(c) for c in chunks) + stop.finish()
    assert out == shown
