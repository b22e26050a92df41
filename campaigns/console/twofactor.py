"""The second factor: TOTP secrets and codes (RFC 6238, pyotp), the QR code, recovery codes.

A code is accepted in its 30-second step or the one either side (clock drift), and only
once: the step of the last accepted code is kept, and a code from it or before is
refused. Recovery codes are random, shown once, and kept as SHA-256 hashes (they are
long and random, so a fast hash is enough); each works once.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import datetime

import pyotp
import segno

__all__ = [
    "ISSUER",
    "hash_recovery",
    "new_recovery_codes",
    "new_secret",
    "provisioning_uri",
    "qr_svg",
    "verify_code",
]

ISSUER = "dripmail console"
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG QR code (no image library, nothing fetched)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", scale=4, border=4, xmldecl=False, svgns=True, title=None, nl=False
    )
    return out.getvalue().decode("ascii")


def verify_code(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to when it is valid now and newer than `last_step`."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if last_step is not None and candidate <= last_step:
            continue
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like `k7m3p-x9q2r` (50 bits each)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def hash_recovery(code: str) -> str:
    """The stored form of a recovery code: spaces, dashes and case do not matter."""
    plain = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(plain.encode()).hexdigest()
