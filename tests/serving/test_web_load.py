"""bench/web_load.py, small: concurrent users against the live test app, every count exact."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("web_load", ROOT / "bench" / "web_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["web_load"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_concurrent_users_no_errors_no_leaks_all_stored(web, scripted):
    bench = load_bench()
    result = asyncio.run(bench.run_load(web.url, users=4, turns=2))
    assert result["errors"] == 0, result["error_samples"]
    assert result["leaks"] == 0, result["leak_samples"]
    assert result["messages_sent"] == 8
    assert result["user_messages_stored"] == 8 and result["complete_answers_stored"] == 8
    assert 0 < result["first_token_ms_p50"] <= result["answer_ms_p95"]
    assert scripted.app.state.most_active >= 2  # the users really were served at once


def test_the_audit_catches_a_leak(web):
    """The leak check is not blind: a user made to hold another's marker is reported."""
    bench = load_bench()
    minji, junho = bench.UserRun("minji", "[u000-x]"), bench.UserRun("junho", "[u001-x]")

    async def run():
        import httpx

        async with httpx.AsyncClient(base_url=web.url) as client:
            csrf = await bench.sign_up(client, web.url, minji, "pw-123456789")
            minji.marker = junho.marker  # minji's messages now carry junho's marker
            await bench.one_turn(client, web.url, csrf, minji, 0)
        minji.marker = "[u000-x]"
        return await bench.audit(web.url, minji, [junho], "pw-123456789")

    audit = asyncio.run(run())
    assert audit["user_messages"] == 1 and len(audit["leaks"]) == 2
