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
    """A live scripted OpenAI-compatible teacher on 127.0.0.1 (faults, context window and
    requests seen are scriptable); test_selfinstruct_teachers.py also runs `kotune serve`."""
    with ScriptedTeacher() as server:
        yield server
