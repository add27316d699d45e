"""Accounts: argon2 hashes, name and password rules, and the log-in back-off (fake clock)."""

from __future__ import annotations

import pytest

from kotune.serving.accounts import (
    AccountError,
    LoginThrottle,
    check_password,
    check_username,
    hash_password,
    verify_password,
)


def test_argon2id_hash_verifies_only_the_password():
    hashed = hash_password("비밀번호-1234")
    assert hashed.startswith("$argon2id$") and "비밀번호" not in hashed
    assert verify_password(hashed, "비밀번호-1234")
    assert not verify_password(hashed, "비밀번호-1235")
    assert not verify_password(None, "anything")  # unknown user: a dummy check, then False
    assert not verify_password("not-a-hash", "anything")
    assert hash_password("same") != hash_password("same")  # salted


@pytest.mark.parametrize("name", ["minji", "민지_01", "jun.ho-2", "ab"])
def test_good_usernames(name):
    assert check_username(f" {name} ") == name


@pytest.mark.parametrize("name", ["a", "x" * 33, "min ji", "min/ji", "<script>", "'; DROP", ""])
def test_bad_usernames(name):
    with pytest.raises(AccountError):
        check_username(name)


def test_username_is_nfc_normalized():
    decomposed = "\u1106\u1175\u11ab\u110c\u1175"  # 민지 as jamo
    assert check_username(decomposed) == "민지"


def test_password_length_rules():
    assert check_password("12345678") == "12345678"
    for bad in ("1234567", "x" * 1025):
        with pytest.raises(AccountError):
            check_password(bad)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_backs_off_per_account_doubling_and_forgets():
    clock = Clock()
    throttle = LoginThrottle(free_per_account=3, free_per_address=100, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("minji", "10.0.0.1") == 0
        throttle.failed("minji", "10.0.0.1")
    assert throttle.wait_s("minji", "10.0.0.9") == pytest.approx(1.0)  # any address
    assert throttle.wait_s("MINJI", "10.0.0.1") == pytest.approx(1.0)  # any case
    assert throttle.wait_s("junho", "10.0.0.1") == 0  # another account is not slowed
    clock.now += 1.0
    throttle.failed("minji", "10.0.0.1")
    assert throttle.wait_s("minji", "10.0.0.1") == pytest.approx(2.0)
    clock.now += 2.0
    throttle.failed("minji", "10.0.0.1")
    assert throttle.wait_s("minji", "10.0.0.1") == pytest.approx(4.0)
    for _ in range(20):
        throttle.failed("minji", "10.0.0.1")
    assert throttle.wait_s("minji", "10.0.0.1") == pytest.approx(300.0)  # capped
    clock.now += 3601
    assert throttle.wait_s("minji", "10.0.0.1") == 0  # forgotten after an hour's quiet
    throttle.failed("minji", "10.0.0.1")
    assert throttle.wait_s("minji", "10.0.0.1") == 0  # counting starts over


def test_throttle_per_address_catches_many_accounts_and_success_clears_the_account():
    clock = Clock()
    throttle = LoginThrottle(free_per_account=5, free_per_address=4, clock=clock)
    for i in range(4):
        throttle.failed(f"user{i}", "10.0.0.7")
    assert throttle.wait_s("someone-new", "10.0.0.7") == pytest.approx(1.0)
    assert throttle.wait_s("someone-new", "10.0.0.8") == 0
    throttle = LoginThrottle(free_per_account=2, free_per_address=100, clock=clock)
    throttle.failed("minji", "a")
    throttle.succeeded("minji")
    throttle.failed("minji", "a")
    assert throttle.wait_s("minji", "a") == 0  # the success reset the count


def test_throttle_memory_is_bounded():
    throttle = LoginThrottle(max_keys=100, clock=Clock())
    for i in range(1000):
        throttle.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(throttle._seen) <= 100
