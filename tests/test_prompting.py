import pytest

from kotune.prompting import (
    KOALPACA,
    StopFilter,
    cut_at_stop,
    render_answer,
    render_prompt,
    stop_patterns,
)


def test_koalpaca_prompt_with_history():
    context = [
        {"role": "user", "content": "성선이란?"},
        {"role": "assistant", "content": "본성은 선하오."},
        {"role": "user", "content": "그렇다면 악은?"},
    ]
    assert render_prompt(KOALPACA, "당신은 맹자입니다.", context) == (
        "당신은 맹자입니다.\n\n### 질문: 성선이란?\n\n### 답변: 본성은 선하오.\n\n"
        "### 질문: 그렇다면 악은?\n\n### 답변:"
    )
    assert render_answer("물과 같소.") == " 물과 같소."


def test_no_system_prompt():
    assert (
        render_prompt(KOALPACA, "", [{"role": "user", "content": "q"}])
        == "### 질문: q\n\n### 답변:"
    )


def test_stop_patterns_add_the_format_headers_once():
    assert stop_patterns(KOALPACA, ["\n질문:", "### 질문:"]) == [
        "\n질문:",
        "### 질문:",
        "### 답변:",
    ]


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
