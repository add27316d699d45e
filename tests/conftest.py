"""Shared fixtures: the project root, the small Mencius fixture and a tokenizer trained on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mencius_small() -> dict:
    return json.loads((FIXTURES / "mencius_small.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def mencius_records(mencius_small) -> list[dict]:
    from kotune.formats import mencius

    return mencius.parse(mencius_small, "mencius_small.json", {})[0]


@pytest.fixture(scope="session")
def tiny_tokenizer(mencius_records):
    """A byte-level BPE tokenizer trained on the fixture, as the base stage trains one."""
    from kotune.modeling.base import corpus_texts
    from kotune.modeling.scratch import train_tokenizer

    return train_tokenizer(
        corpus_texts(mencius_records) + ["### 질문:", "### 답변:"] * 4, 600, 2, 512
    )
