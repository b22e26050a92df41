"""The engine's rules that need no database: the fast address check."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "address",
    [
        "pat@example.com",
        "Pat.Smith+sleep@Clinic.Example.com",
        "a@b.co",
        "x@localhost",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example",
        "a@example.test",
        "a@example.invalid",
        "a b@example.com",
        "josé@example.com",
        "a@exämple.com",
        f"{'a' * 65}@example.com",
        f"a@{'b' * 64}.com",
        "a@example.c0m",
        '"quoted"@example.com',
    ],
)
def test_the_fast_address_check_agrees_with_email_validator(address):
    from email_validator import EmailNotValidError, validate_email

    from campaigns.planning.contacts import normalise_email

    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        expected = None
    else:
        # The stored form: the domain as its A-label; a local part within 64 octets.
        local = checked.local_part.lower()
        expected = f"{local}@{checked.ascii_domain}" if len(local.encode()) <= 64 else None
    try:
        got = normalise_email(address)
    except ValueError:
        got = None
    assert got == expected
