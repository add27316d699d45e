"""The split step: 90/10 by conversation, decided by a seeded hash so file order cannot matter."""

from __future__ import annotations

import hashlib
from typing import Any

from kotune.errors import DataError
from kotune.records import training_examples


def split_key(conversation_id: str, seed: int) -> str:
    """A seeded, order-independent sort key: sha256(seed:conversation_id)."""
    return hashlib.sha256(f"{seed}:{conversation_id}".encode()).hexdigest()


def split_by_conversation(
    records: list[dict[str, Any]], test_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Put round(n × test_fraction) conversations (at least one) with the smallest seeded hash
    in test and the rest in train; every record of a conversation goes to the same side.

    Both sides keep input order, so equal input gives byte-equal outputs."""
    conversation_ids = sorted({r["conversation_id"] for r in records})
    if len(conversation_ids) < 2:
        raise DataError(
            f"split: need at least 2 conversations to make a train and a test set, "
            f"got {len(conversation_ids)}"
        )
    n_test = min(max(1, round(len(conversation_ids) * test_fraction)), len(conversation_ids) - 1)
    ranked = sorted(conversation_ids, key=lambda cid: split_key(cid, seed))
    test_ids = set(ranked[:n_test])
    train = [r for r in records if r["conversation_id"] not in test_ids]
    test = [r for r in records if r["conversation_id"] in test_ids]
    overlap = {r["conversation_id"] for r in train} & {r["conversation_id"] for r in test}
    if overlap:  # cannot happen by construction; checked because the metric promises it
        raise DataError(f"split: conversations on both sides: {sorted(overlap)[:5]}")
    stats = {
        "train_conversations": len({r["conversation_id"] for r in train}),
        "test_conversations": len(test_ids),
        "train_examples": sum(len(training_examples(r)) for r in train),
        "test_examples": sum(len(training_examples(r)) for r in test),
        "conversations_on_both_sides": len(overlap),
    }
    return train, test, stats
