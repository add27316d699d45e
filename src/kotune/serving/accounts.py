"""Accounts: argon2id password hashes, the rules for names and passwords, who may sign up, and
the back-off that slows down guessing (per account and per client address)."""

from __future__ import annotations

import ipaddress
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from kotune.errors import KotuneError

USERNAME = re.compile(r"^[\w.-]{2,32}$")  # \w: Hangul too (민지_01)
PASSWORD_MIN, PASSWORD_MAX = 8, 1024  # argon2 takes any length; 1 KiB bounds the work


class AccountError(KotuneError):
    """A name or password that breaks the rules; the message is shown to the user (Korean)."""


def normalize_username(username: str) -> str:
    """NFC, so that the same name typed on two keyboards is one account."""
    return unicodedata.normalize("NFC", username.strip())


def check_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME.match(name):
        raise AccountError("아이디는 2–32자의 한글, 영문, 숫자, '_', '.', '-'만 쓸 수 있습니다.")
    return name


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"비밀번호는 {PASSWORD_MIN}자 이상이어야 합니다.")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"비밀번호는 {PASSWORD_MAX}자 이하여야 합니다.")
    return password


def hash_password(password: str) -> str:
    """argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, t=3)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. With no hash (unknown user) a dummy hash is checked, so an
    unknown name takes as long as a wrong password and does not reveal itself by its speed."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(password_hash or _dummy_hash(), password) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("kotune-no-such-user"))
    return _DUMMY[0]


def signup_open_by_default(host: str) -> bool:
    """Sign-up is open by default only when the server listens on loopback: on 127.0.0.1 only
    this machine can reach it; on 0.0.0.0 or a LAN address anyone could make an account."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """Failed log-ins slow down further tries, per account name and per client address.

    After `free` failures each further one doubles the wait before the next try is heard
    (1, 2, 4 … s, at most `max_wait_s`); a try during the wait is refused without checking the
    password, even a right one. A success clears the account's count; counts are forgotten
    after `forget_s` quiet. An address gets more free tries than an account (many people
    share one address behind a NAT). Kept in memory, bounded to `max_keys` entries."""

    free_per_account: int = 5
    free_per_address: int = 20
    max_wait_s: float = 300.0
    forget_s: float = 3600.0
    max_keys: int = 50_000
    clock: Callable[[], float] = time.monotonic
    _seen: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def wait_s(self, username: str, address: str) -> float:
        """Seconds until a try for this account from this address is heard (0: now)."""
        return max(
            self._wait(f"user:{normalize_username(username).lower()}", self.free_per_account),
            self._wait(f"addr:{address}", self.free_per_address),
        )

    def failed(self, username: str, address: str) -> None:
        for key in (f"user:{normalize_username(username).lower()}", f"addr:{address}"):
            entry = self._entry(key)
            entry.count += 1
            entry.last = self.clock()

    def succeeded(self, username: str) -> None:
        self._seen.pop(f"user:{normalize_username(username).lower()}", None)

    def _entry(self, key: str) -> _Failures:
        entry = self._seen.pop(key, None) or _Failures()
        if entry.count and self.clock() - entry.last > self.forget_s:
            entry = _Failures()
        self._seen[key] = entry  # most recent last
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return entry

    def _wait(self, key: str, free: int) -> float:
        entry = self._seen.get(key)
        if entry is None or entry.count < free:
            return 0.0
        if self.clock() - entry.last > self.forget_s:
            return 0.0
        delay = min(self.max_wait_s, 2.0 ** (entry.count - free))
        return max(0.0, entry.last + delay - self.clock())
