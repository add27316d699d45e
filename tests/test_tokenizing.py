import pytest

from kotune.errors import KotuneError
from kotune.prompting import prompt_builder
from kotune.tokenizing import IGNORE_INDEX, encode_example, tokenize_split

SYSTEM = "당신은 맹자입니다."


@pytest.fixture(scope="module")
def builder(tiny_tokenizer):
    return prompt_builder(tiny_tokenizer, "koalpaca", None, SYSTEM, "tiny")


def example(*turns):
    roles = ["user", "assistant"] * len(turns)
    messages = [{"role": r, "content": t} for r, t in zip(roles, turns)]
    return {"id": "e", "context": messages[:-1], "answer": messages[-1]["content"]}


def test_prompt_is_masked_and_answer_with_eos_is_learned(tiny_tokenizer, builder):
    row = encode_example(builder, example("인이란?", "사람의 마음이오."), 512)
    n_prompt = row["prompt_tokens"]
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    # the end-of-answer token is inside the loss, or the model never learns to stop
    assert row["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert row["labels"][-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(row["input_ids"][n_prompt:-1]) == " 사람의 마음이오."
    assert tiny_tokenizer.decode(row["input_ids"][:n_prompt]).endswith(
        "### 질문: 인이란?\n\n### 답변:"
    )


def test_over_long_examples_lose_the_oldest_context_first(tiny_tokenizer, builder):
    ex = example(
        "첫째 질문은 아주 길고 길다",
        "첫째 답변이오",
        "둘째 질문",
        "둘째 답변이오",
        "셋째 질문",
        "셋째 답변이오",
    )
    full = encode_example(builder, ex, 4096)
    assert full["context_turns_dropped"] == 0
    first_pair = len(
        tiny_tokenizer("### 질문: 첫째 질문은 아주 길고 길다\n\n### 답변: 첫째 답변이오\n\n")[
            "input_ids"
        ]
    )
    cut = encode_example(builder, ex, len(full["input_ids"]) - 1)
    assert cut["context_turns_dropped"] == 1
    text = tiny_tokenizer.decode(cut["input_ids"])
    assert (
        "첫째" not in text and "둘째 질문" in text and text.endswith("셋째 답변이오<|endoftext|>")
    )
    assert len(cut["input_ids"]) <= len(full["input_ids"]) - first_pair + 2
    # the answer itself is never cut
    assert cut["answer_tokens"] == full["answer_tokens"]


def test_an_example_whose_answer_cannot_fit_is_skipped_and_counted(builder):
    fits = example("짧은 질문", "짧은 답")
    too_long = example("짧은 질문", "아주 " * 200)
    rows, stats = tokenize_split(builder, [fits, too_long], 64)
    assert len(rows) == 1 and stats["skipped_too_long"] == 1 and stats["examples"] == 1


def test_padding_is_masked_by_the_collator(tiny_tokenizer, builder):
    from transformers import DataCollatorForSeq2Seq

    rows = [
        encode_example(builder, example("q", "짧소"), 512),
        encode_example(builder, example("q", "조금 더 긴 답변이오"), 512),
    ]
    collate = DataCollatorForSeq2Seq(tiny_tokenizer, label_pad_token_id=IGNORE_INDEX)
    batch = collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    short = len(rows[0]["input_ids"])
    assert batch["labels"][0, short:].tolist() == [IGNORE_INDEX] * (
        batch["labels"].shape[1] - short
    )
    assert batch["attention_mask"][0, short:].sum() == 0


def test_a_tokenizer_without_eos_is_refused():
    class NoEos:
        eos_token_id = None

    with pytest.raises(KotuneError, match="no eos token .* could never learn to stop"):
        prompt_builder(NoEos(), "koalpaca", None, SYSTEM, "tiny")
