"""The console's permission table as data, the password rules and the second factor.

No database, no server: the rules themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from campaigns.console import passwords, twofactor
from campaigns.console.permissions import PERMISSIONS, Permission, Role, allowed
from campaigns.console.signin import two_factor_required
from campaigns.errors import InputError

P = Permission
NOW = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)

# What each role may do, written out: a change to the table must change this too.
EXPECTED = {
    Role.VIEWER: {P.OWN_SESSION, P.VIEW_DASHBOARD, P.VIEW_STATISTICS, P.VIEW_CAMPAIGNS},
    Role.EDITOR: {
        P.OWN_SESSION,
        P.VIEW_DASHBOARD,
        P.VIEW_STATISTICS,
        P.VIEW_CAMPAIGNS,
        P.EDIT_CAMPAIGNS,
        P.SUBMIT,
        P.SEND_TEST,
        P.EDIT_NEWSLETTERS,
        P.PAUSE,
    },
    Role.REVIEWER: {
        P.OWN_SESSION,
        P.VIEW_DASHBOARD,
        P.VIEW_STATISTICS,
        P.VIEW_CAMPAIGNS,
        P.REVIEW,
        P.PUBLISH,
        P.PAUSE,
        P.SEND_TEST,
        P.SCHEDULE_NEWSLETTERS,
    },
    Role.ADMIN: set(Permission),
}


def test_the_permission_table_is_exactly_the_one_written_here():
    assert {role: set(held) for role, held in PERMISSIONS.items()} == EXPECTED


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        ("viewer", P.MANAGE_CONTACTS),  # no patient data for viewers
        ("editor", P.MANAGE_CONTACTS),
        ("reviewer", P.MANAGE_CONTACTS),
        ("viewer", P.PUBLISH),
        ("editor", P.PUBLISH),  # an editor submits; a reviewer or admin publishes
        ("editor", P.REVIEW),
        ("viewer", P.MANAGE_USERS),
        ("editor", P.MANAGE_USERS),
        ("reviewer", P.MANAGE_USERS),
        ("reviewer", P.VIEW_AUDIT),
        ("reviewer", P.EDIT_CAMPAIGNS),
        ("owner", P.VIEW_DASHBOARD),  # an unknown role holds nothing
        ("", P.OWN_SESSION),
    ],
)
def test_roles_lack_what_they_must_not_do(role: str, permission: Permission):
    assert not allowed(role, permission)


def test_only_admins_manage_people_contacts_settings_and_see_the_audit_trail():
    for permission in (P.MANAGE_USERS, P.MANAGE_CONTACTS, P.MANAGE_SETTINGS, P.VIEW_AUDIT):
        assert [role for role in Role if allowed(role, permission)] == [Role.ADMIN]


def test_two_factor_is_required_of_admins_editors_and_reviewers_unless_optional():
    assert [r.value for r in Role if two_factor_required(r, None)] == [
        "editor",
        "reviewer",
        "admin",
    ]
    assert not any(two_factor_required(r, "optional") for r in Role)
    assert two_factor_required("admin", "required")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short pass", "at least 12 characters"),
        ("Password1234", "common passwords"),
        ("QWERTYUIOP123", "common passwords"),
        ("123456789012", "common passwords"),
        ("correcthorsebatterystaple", "common passwords"),
        ("x" * 1025, "at most 1024"),
    ],
)
def test_weak_passwords_are_refused(password: str, problem: str):
    with pytest.raises(InputError, match=problem):
        passwords.check_new_password(password)


def test_a_good_password_is_hashed_with_argon2id_and_verified():
    passwords.check_new_password("violet kettle harbour 42", "violet kettle harbour 42")
    with pytest.raises(InputError, match="not the same"):
        passwords.check_new_password("violet kettle harbour 42", "violet kettle harbour 43")
    stored = passwords.hash_password("violet kettle harbour 42")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "violet kettle harbour 42")
    assert not passwords.verify(stored, "violet kettle harbour 43")
    assert not passwords.verify(None, "violet kettle harbour 42")
    assert not passwords.verify("not a hash", "anything")


def test_the_bundled_list_is_thousands_of_lower_case_entries():
    listed = passwords._common()
    assert len(listed) > 6000
    assert all(entry == entry.lower() for entry in listed)


def test_a_totp_code_works_in_its_step_and_beside_it_and_only_once():
    secret = twofactor.new_secret()
    totp = pyotp.TOTP(secret)
    code = totp.at(NOW)
    step = twofactor.verify_code(secret, code, NOW, None)
    assert step == int(NOW.timestamp()) // 30
    assert twofactor.verify_code(secret, code, NOW, step) is None  # used
    assert twofactor.verify_code(secret, code, NOW + timedelta(seconds=30), None) is not None
    assert twofactor.verify_code(secret, code, NOW + timedelta(seconds=90), None) is None
    assert twofactor.verify_code(secret, "12345", NOW, None) is None
    assert twofactor.verify_code(secret, f"{code[:3]} {code[3:]}", NOW, None) == step


def test_recovery_codes_are_random_and_compared_by_hash_whatever_their_case():
    codes = twofactor.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    assert all(len(code) == 11 and code[5] == "-" for code in codes)
    assert twofactor.hash_recovery(codes[0].upper()) == twofactor.hash_recovery(codes[0])
    assert twofactor.hash_recovery(codes[0].replace("-", " ")) == twofactor.hash_recovery(codes[0])


def test_the_qr_code_is_inline_svg_of_the_otpauth_uri():
    uri = twofactor.provisioning_uri(twofactor.new_secret(), "ana@clinic.example")
    assert uri.startswith("otpauth://totp/dripmail%20console:ana%40clinic.example?secret=")
    svg = twofactor.qr_svg(uri)
    assert (
        svg.startswith("<svg")
        and "<script" not in svg
        and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    )
