"""Console passwords: argon2id hashes, the length rule and the list of common passwords.

A password is at least 12 characters and not on the bundled list (common-passwords.txt,
compared in lower case). `verify` of an address with no account runs argon2 against a
dummy hash, so a sign-in takes the same work whether or not the address has an account.
"""

from __future__ import annotations

import functools
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from campaigns.errors import InputError

__all__ = ["MIN_LENGTH", "check_new_password", "hash_password", "is_common", "verify"]

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; a megabyte "password" is only work for us
COMMON_LIST = Path(__file__).with_name("common-passwords.txt")

_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile


@functools.cache
def _common() -> frozenset[str]:
    lines = COMMON_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("not a password anyone has: the work an unknown address costs")


def is_common(password: str) -> bool:
    return password.lower() in _common()


def check_new_password(password: str, confirm: str | None = None) -> None:
    """InputError (naming the field) unless `password` may be chosen."""
    if confirm is not None and password != confirm:
        raise InputError("the two passwords are not the same", field="confirm")
    if len(password) < MIN_LENGTH:
        raise InputError(f"use at least {MIN_LENGTH} characters", field="password")
    if len(password) > MAX_LENGTH:
        raise InputError(f"use at most {MAX_LENGTH} characters", field="password")
    if is_common(password):
        raise InputError(
            "this password is on the list of common passwords; choose another", field="password"
        )


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches the argon2 hash `stored`; with no hash (no account, or
    not set up yet) a dummy hash is checked so the answer takes the same time."""
    try:
        matched = _HASHER.verify(stored or _dummy_hash(), password[:MAX_LENGTH])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and stored is not None
