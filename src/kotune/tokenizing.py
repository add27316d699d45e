"""Examples to token ids: the prompt is masked (-100), the answer and its end token are learned.

Over-long examples lose their oldest context turns first; the answer is never cut.
"""

from __future__ import annotations

from typing import Any

from kotune.prompting import PromptBuilder

IGNORE_INDEX = -100  # labels with this value are left out of the loss


def _drop_oldest_turn(context: list[dict[str, str]]) -> list[dict[str, str]]:
    """Remove the oldest exchange: everything before the second user turn (system kept)."""
    users = [k for k, m in enumerate(context) if m["role"] == "user"]
    if len(users) < 2:
        return context
    return [m for k, m in enumerate(context) if m["role"] == "system" or k >= users[1]]


def fit_prompt(
    builder: PromptBuilder, context: list[dict[str, str]], budget_tokens: int
) -> tuple[list[int] | None, int]:
    """Prompt ids within `budget_tokens`, dropping the oldest turns first; returns (ids, turns
    dropped), or (None, n) if even the last question alone does not fit."""
    dropped = 0
    while True:
        prompt_ids = builder.prompt_ids(context)
        if len(prompt_ids) <= budget_tokens:
            return prompt_ids, dropped
        shorter = _drop_oldest_turn(context)
        if shorter == context:
            return None, dropped
        context, dropped = shorter, dropped + 1


def encode_example(
    builder: PromptBuilder, example: dict[str, Any], max_seq_len: int
) -> dict[str, Any] | None:
    """Token ids and labels for one example, or None if even its last question and the answer
    do not fit in `max_seq_len` (the caller counts those). The labels are the answer's ids and
    the end-of-turn id; the prompt's are IGNORE_INDEX."""
    answer_ids = builder.answer_ids(example["answer"])
    budget = max_seq_len - len(answer_ids)
    prompt_ids, dropped = fit_prompt(builder, example["context"], budget)
    if prompt_ids is None:
        return None
    return {
        "id": example["id"],
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        "prompt_tokens": len(prompt_ids),
        "answer_tokens": len(answer_ids),
        "context_turns_dropped": dropped,
    }


def tokenize_split(
    builder: PromptBuilder, examples: list[dict[str, Any]], max_seq_len: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Encode every example of a split; returns the rows and counts (kept, skipped, cut)."""
    rows, skipped = [], 0
    for example in examples:
        row = encode_example(builder, example, max_seq_len)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    stats = {
        "examples": len(rows),
        "skipped_too_long": skipped,
        "context_turns_dropped": sum(r["context_turns_dropped"] for r in rows),
        "tokens": sum(len(r["input_ids"]) for r in rows),
        "answer_tokens": sum(r["answer_tokens"] for r in rows),
        "max_len": max((len(r["input_ids"]) for r in rows), default=0),
    }
    return rows, stats
