"""`kotune users add|list|remove|passwd`: passwords from stdin (never argv), errors as one
line with exit 2, and the accounts it makes log in on the web app."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from kotune.serving.accounts import verify_password
from kotune.serving.store import open_store

KOTUNE = str(Path(sys.executable).with_name("kotune"))


def users(db: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [KOTUNE, "users", "--db", db, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_add_list_passwd_remove(tmp_path):
    db = f"sqlite:///{tmp_path / 'chat.db'}"
    added = users(db, "add", "minji", "--name", "민지", stdin="first-password\n")
    assert added.returncode == 0, added.stderr
    assert "first-password" not in added.stdout + added.stderr
    listed = users(db, "list")
    assert listed.stdout.startswith("minji (민지)\t0 conversations")
    store = open_store(db)
    first_hash = store.user_by_name("minji").password_hash
    assert verify_password(first_hash, "first-password")
    user_id = store.user_by_name("minji").id
    store.begin_turn(user_id, None, "안녕")
    store.add_session(user_id, "h" * 64, "c", datetime(2099, 1, 1, tzinfo=timezone.utc))
    assert users(db, "passwd", "minji", stdin="second-password\n").returncode == 0
    account = store.user_by_name("minji")
    assert verify_password(account.password_hash, "second-password")
    assert not verify_password(account.password_hash, "first-password")
    assert store.session_user("h" * 64) is None  # the old session ended with the old password
    removed = users(db, "remove", "minji")
    assert removed.returncode == 0 and store.user_by_name("minji") is None
    assert store.conversations(account.id) == []
    assert b"first-password" not in (tmp_path / "chat.db").read_bytes()
    store.close()


def test_users_errors_are_one_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'chat.db'}"
    assert users(db, "add", "minji", stdin="good-password\n").returncode == 0
    cases = [
        (("add", "minji"), "good-password\n", "user 'minji' already exists"),
        (("add", "junho"), "short\n", "password: 비밀번호는 8자 이상"),
        (("add", "junho"), "", "no password on stdin"),
        (("add", "a b"), "good-password\n", "username 'a b':"),
        (("remove", "nobody"), "", "no user 'nobody'"),
        (("passwd", "nobody"), "good-password\n", "no user 'nobody'"),
    ]
    for args, stdin, message in cases:
        result = users(db, *args, stdin=stdin)
        assert result.returncode == 2, args
        assert result.stderr.startswith("kotune: error: ") and message in result.stderr, args
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    # there is no way to give a password on the command line
    result = users(db, "add", "junho", "--password", "in-argv-123")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
