"""Mail that comes back to a clinic, read as dripmail reads it: no database, no network.

The fixtures (tests/fixtures/mailbox/) are bounces, complaints and unsubscribe mails
in the shapes Postfix, Exim, Gmail, Microsoft 365, Yahoo and Microsoft's JMRP send.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from pydantic import ValidationError

from campaigns.authoring.sender_settings import SmtpSenderSettings
from campaigns.compliance.event_model import EventKind
from campaigns.compliance.imap import parse_imap_url
from campaigns.compliance.inbound import Keys, MailKind, read_mail
from campaigns.errors import InputError
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.rendering.verp import ReturnPaths

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mailbox"
KEY = "installation-secret-for-tests"
DELIVERY = 42
CONTACT = 7
MESSAGE_ID = "<dripmail.42.3f9a@clinic.example>"


def mail(name: str, *, keys: Keys | None = None, verp: str | None = None, token: str | None = None):
    """A fixture with this installation's return path and token filled in: (message, raw)."""
    keys = keys or Keys.of(KEY)
    verp = verp or keys.return_paths.address("bounces@clinic.example", DELIVERY)
    token = token or keys.tokens.token(UnsubscribeClaim(CONTACT, "ketamine-and-sleep", DELIVERY))
    text = (FIXTURES / name).read_text(encoding="utf-8")
    raw = (
        text.replace("{VERP}", verp).replace("{TOKEN}", token).replace("{MESSAGE_ID}", MESSAGE_ID)
    ).encode()
    return email.message_from_bytes(raw, policy=email.policy.default), raw


def read(name: str, **options):
    message, raw = mail(name, **options)
    return read_mail(message, raw, Keys.of(KEY))


@pytest.mark.parametrize(
    ("name", "what", "kind", "reason"),
    [
        ("postfix-hard.eml", MailKind.BOUNCE, EventKind.BOUNCED_HARD, "5.1.1"),
        ("postfix-delayed.eml", MailKind.BOUNCE, EventKind.DEFERRED, "4.4.1"),
        # Exim says Status 5.0.0; the Diagnostic-Code's 5.1.1 is the one that counts.
        ("exim-hard.eml", MailKind.BOUNCE, EventKind.BOUNCED_HARD, "5.1.1"),
        ("gmail-hard.eml", MailKind.BOUNCE, EventKind.BOUNCED_HARD, "5.1.1"),
        # Mailbox full: a 5.x.x that is not about the address, so the address stays.
        ("gmail-mailbox-full.eml", MailKind.BOUNCE, EventKind.BOUNCED_SOFT, "5.2.2"),
        ("m365-hard.eml", MailKind.BOUNCE, EventKind.BOUNCED_HARD, "5.1.10"),
        ("yahoo-arf.eml", MailKind.COMPLAINT, EventKind.COMPLAINED, "abuse"),
        ("jmrp.eml", MailKind.COMPLAINT, EventKind.COMPLAINED, "abuse"),
    ],
)
def test_each_report_is_read_as_what_it_says_about_our_delivery(name, what, kind, reason):
    reading = read(name)

    assert reading.what == what
    assert [(f.kind, f.delivery_id, f.reason) for f in reading.findings] == [
        (kind, DELIVERY, reason)
    ]
    assert "@" not in (reading.findings[0].reason or "")
    assert "@" not in reading.findings[0].event_id


def test_a_report_reads_the_same_twice_so_a_second_reading_is_a_replay():
    assert read("postfix-hard.eml").findings == read("postfix-hard.eml").findings
    assert read("postfix-hard.eml").findings != read("exim-hard.eml").findings


def test_the_bounce_to_the_from_address_is_known_by_the_returned_token():
    """Microsoft 365 bounced an email sent without a return path: no VERP, but the
    returned headers carry the signed List-Unsubscribe token."""
    (finding,) = read("m365-hard.eml").findings
    assert (finding.delivery_id, finding.contact_id) == (DELIVERY, CONTACT)


def test_a_complaint_with_the_recipient_redacted_is_known_by_its_return_path():
    (finding,) = read("yahoo-arf.eml", token="not.a.token").findings
    assert finding.delivery_id == DELIVERY


def test_an_unsubscribe_mail_carries_a_verified_claim():
    reading = read("gmail-unsubscribe.eml")
    assert reading.what == MailKind.UNSUBSCRIBE
    assert reading.claim == UnsubscribeClaim(CONTACT, "ketamine-and-sleep", DELIVERY)


def test_a_tampered_unsubscribe_token_verifies_nothing():
    good = Keys.of(KEY).tokens.token(UnsubscribeClaim(CONTACT, "ketamine-and-sleep", DELIVERY))
    payload, stamp, signature = good.split(".")
    tampered = f"{payload[:-2]}xx.{stamp}.{signature}"
    for token in (tampered, f"{payload}.{stamp}.{signature[:-3]}AAA"):
        reading = read("gmail-unsubscribe.eml", token=token)
        assert reading.what == MailKind.UNSUBSCRIBE
        assert reading.claim is None and not reading.verified
        assert reading.why == "its token does not verify"


def test_another_installations_signatures_are_foreign():
    other = Keys.of("another-clinic")
    for name in ("postfix-hard.eml", "yahoo-arf.eml", "gmail-unsubscribe.eml", "m365-hard.eml"):
        reading = read(name, keys=other)
        assert not reading.verified, name


def test_a_return_path_rewritten_to_another_delivery_does_not_verify():
    paths = ReturnPaths(KEY)
    ours = paths.address("bounces@clinic.example", DELIVERY)
    signature = ours.split("-", 1)[1]
    forged = f"bounces+{DELIVERY + 1}-{signature}"
    assert paths.delivery_id(forged) is None
    reading = read("postfix-hard.eml", verp=forged, token="not.a.token")
    assert reading.what == MailKind.BOUNCE and not reading.verified
    assert reading.why == "names no email of ours (no signed return path)"


def test_a_patients_reply_quoting_the_unsubscribe_link_is_left_for_a_person():
    reading = read("patient-reply.eml")
    assert reading.what == MailKind.OTHER and not reading.verified


def test_return_paths_survive_case_folding_and_fit_a_local_part():
    paths = ReturnPaths(KEY)
    address = paths.address("bounces@clinic.example", 2**31 - 1)
    local = address.rpartition("@")[0]
    assert len(local) <= 64 and local.startswith("bounces+")
    assert paths.delivery_id(address.upper()) == 2**31 - 1
    assert ReturnPaths("another-clinic").delivery_id(address) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bounces+x@clinic.example", "already has a `\\+` tag"),
        ("b" * 37 + "@clinic.example", "at most 36 characters"),
        ("not an address", "is not an email address"),
    ],
)
def test_a_return_path_that_cannot_carry_a_tag_is_refused(value, message):
    with pytest.raises(ValidationError, match=message):
        SmtpSenderSettings(return_path=value)
    assert SmtpSenderSettings(return_path="bounces@clinic.example").return_path


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://mail.clinic.example", "start it with imaps://"),
        ("imaps://mail.clinic.example/INBOX", "name the user and the host"),
        ("imaps://bounces:hunter2@mail.clinic.example", "leave the password out"),
        ("imaps://bounces@mail.clinic.example:99999", "the port must be a number"),
    ],
)
def test_a_bad_imap_url_is_one_line_naming_the_option(url, problem):
    with pytest.raises(InputError, match=problem) as caught:
        parse_imap_url(url)
    assert str(caught.value).startswith("--imap: ")
    assert "hunter2" not in str(caught.value)


def test_an_imap_url_names_user_host_port_and_mailbox():
    found = parse_imap_url("imaps://bounces%40clinic.example@mail.clinic.example/Bounces")
    assert (found.user, found.host, found.port, found.mailbox) == (
        "bounces@clinic.example",
        "mail.clinic.example",
        993,
        "Bounces",
    )
    assert parse_imap_url("imap://u@127.0.0.1").port == 143
