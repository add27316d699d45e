"""Fixtures for the self-instruct tests: one Kiwi for the session, the shipped seeds, a teacher."""

from __future__ import annotations

import pytest
from scripted_teacher import ScriptedTeacher


@pytest.fixture(scope="session")
def kiwi():
    from kotune.scoring import KiwiMorphemes

    return KiwiMorphemes()


@pytest.fixture
def teacher():
    """A live OpenAI-compatible teacher on 127.0.0.1 (phase 2 adds a `kotune serve` one)."""
    with ScriptedTeacher() as server:
        yield server
