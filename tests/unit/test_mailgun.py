"""Mailgun, without a network: the webhook parser over payloads written after Mailgun's
documented samples (tests/fixtures/mailgun, after
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads),
the signature check, the sender's settings, and how each answer is read."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from campaigns.authoring.sender_settings import FileSenderSettings, MailgunSenderSettings
from campaigns.compliance.event_model import EventKind
from campaigns.compliance.mailgun_events import parse_mailgun_payload
from campaigns.errors import InputError
from campaigns.settings import Settings
from campaigns.web.mailgun_webhook import MailgunVerifier
from campaigns.web.webhooks import WebhookRejected
from senders.addresses import NeedsSmtpUtf8
from senders.base import Message, SenderConfigurationError
from senders.mailgun import MailgunSender
from senders.mailgun_answers import MessagesMime
from senders.registry import make_sender

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mailgun"
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SIGNING_KEY = "whsk-1f2e3d4c5b6a79880011223344556677"
NOW = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


def payload(name: str, **changes) -> dict:
    body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    body["event-data"].update(changes)
    return body


# -- the parser --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "suppresses_address"),
    [
        ("accepted", EventKind.ACCEPTED, True),
        ("delivered", EventKind.DELIVERED, True),
        ("failed_permanent", EventKind.BOUNCED_HARD, True),
        ("failed_temporary", EventKind.BOUNCED_SOFT, True),
        ("failed_suppress_bounce", EventKind.REJECTED, True),
        ("rejected", EventKind.REJECTED, False),
        ("complained", EventKind.COMPLAINED, True),
        ("unsubscribed", EventKind.UNSUBSCRIBED, True),
        ("opened", EventKind.OPENED, True),
        ("clicked", EventKind.CLICKED, True),
    ],
)
def test_each_documented_event_maps_to_one_kind(name, kind, suppresses_address):
    [event] = parse_mailgun_payload(payload(name))

    assert event.provider == "mailgun" and event.kind is kind
    assert event.delivery_id == 41  # "41" in user-variables, or 41 when Mailgun read it as JSON
    assert event.message_id == "20261206141224.1e7901dc78baf773@mg.clinic.example"
    assert event.occurred_at is not None and event.occurred_at.tzinfo is UTC
    # The recipient goes on only for the suppression's hash; a message Mailgun itself
    # rejected (a sandbox domain) says nothing about the address.
    assert event.address == ("pat@example.com" if suppresses_address else None)
    # Nothing of the recipient, their device or what they clicked is kept as a reason.
    for kept in (event.event_id, event.reason or ""):
        for private in ("pat@", "203.0.113", "Mozilla", "after-your-session", "iPhone"):
            assert private not in kept


def test_failures_keep_mailguns_reason_and_code_without_the_smtp_text():
    [hard] = parse_mailgun_payload(payload("failed_permanent"))
    [soft] = parse_mailgun_payload(payload("failed_temporary"))
    [listed] = parse_mailgun_payload(payload("failed_suppress_bounce"))
    [rejected] = parse_mailgun_payload(payload("rejected"))

    assert (hard.reason, soft.reason, listed.reason) == (
        "bounce 550",
        "generic 451",
        "suppress-bounce 605",
    )
    assert rejected.reason.startswith("Sandbox subdomains are for test purposes only.")


def test_the_event_key_is_mailguns_id_and_time_so_a_retry_counts_once():
    [first] = parse_mailgun_payload(payload("delivered"))
    [retried] = parse_mailgun_payload(payload("delivered"))
    # Mailgun's ids are "unique within a day": the same id a day later is another event.
    [next_day] = parse_mailgun_payload(payload("delivered", timestamp=1770920731.6 + 86400))

    assert first.event_id == retried.event_id == "mailgun:MXcc2gEpS-eN8HfkOnmK2w:1770920731"
    assert next_day.event_id != first.event_id
    without_id = payload("delivered")
    del without_id["event-data"]["id"]
    [a] = parse_mailgun_payload(without_id)
    [b] = parse_mailgun_payload(without_id)
    assert a.event_id == b.event_id and a.event_id.startswith("mailgun:sha256:")


@pytest.mark.parametrize(
    "variables",
    [{}, {"delivery_id": "test-3f9a1c"}, {"delivery_id": "0"}, {"delivery_id": 2**31},
     {"delivery_id": True}, {"delivery_id": "٤١"}, None, "41"],
)  # fmt: skip
def test_a_delivery_id_that_is_not_ours_names_no_delivery(variables):
    [event] = parse_mailgun_payload(payload("delivered", **{"user-variables": variables}))
    assert event.delivery_id is None


def test_events_outside_the_model_are_ignored_and_non_events_refused():
    assert parse_mailgun_payload(payload("stored")) == []
    for body in ([], {"signature": {}}, {"event-data": []}, {"event-data": {"event": 5}}):
        with pytest.raises(InputError, match="no Mailgun event"):
            parse_mailgun_payload(body)


# -- the signature -----------------------------------------------------------------------


def sign(timestamp: str, token: str, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def block(at: datetime = NOW, token: str = "t" * 50, key: str = SIGNING_KEY, **extra) -> dict:
    timestamp = str(int(at.timestamp()))
    return {
        "timestamp": timestamp,
        "token": token,
        "signature": sign(timestamp, token, key),
        **extra,
    }


def verifier(value: str = SIGNING_KEY) -> MailgunVerifier:
    found = MailgunVerifier.from_settings(Settings.from_env({"MAILGUN_WEBHOOK_SIGNING_KEY": value}))
    assert found is not None
    return found


def test_a_signature_under_any_configured_key_verifies():
    rotating = verifier(f"whsk-old-key, {SIGNING_KEY}")
    token, signed_at = rotating.verify(block(), now=NOW)
    assert (token, signed_at) == ("t" * 50, NOW)
    assert rotating.verify(block(key="whsk-old-key"), now=NOW)[0] == "t" * 50
    # A subaccount's event: the primary account's key signs `parent-signature`.
    sub = block(key="subaccount-key")
    sub["parent-signature"] = block()["signature"]
    assert verifier().verify(sub, now=NOW)[0] == "t" * 50


@pytest.mark.parametrize(
    ("changed", "status", "message"),
    [
        ({"key": "whsk-another-accounts-key"}, 403, "does not match"),
        ({"at": NOW - timedelta(minutes=5, seconds=1)}, 403, "too old"),
        ({"at": NOW + timedelta(minutes=1, seconds=1)}, 403, "in the future"),
    ],
)
def test_a_wrong_key_or_a_stale_or_future_time_is_refused(changed, status, message):
    with pytest.raises(WebhookRejected, match=message) as refused:
        verifier().verify(block(**changed), now=NOW)
    assert refused.value.status == status
    assert verifier().verify(block(at=NOW - timedelta(minutes=4, seconds=59)), now=NOW)


def test_a_signature_for_another_token_or_time_is_refused():
    good = block()
    for forged in (
        {**good, "token": "u" * 50},
        {**good, "timestamp": str(int(good["timestamp"]) + 1)},
        {**good, "signature": good["signature"].upper()[:-1] + "0"},
        {**good, "signature": "zz" * 32},
    ):
        with pytest.raises(WebhookRejected, match="does not match"):
            verifier().verify(forged, now=NOW)


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        (None, 401),
        ({}, 401),
        ({"timestamp": "1", "token": "t"}, 401),
        ({"timestamp": "soon", "token": "t", "signature": "0" * 64}, 400),
        ({"timestamp": "1" * 13, "token": "t", "signature": "0" * 64}, 400),
        ({"timestamp": "1770920772", "token": ["t"], "signature": "0" * 64}, 400),
    ],
)
def test_a_missing_or_malformed_signature_block_is_refused(signature, status):
    with pytest.raises(WebhookRejected) as refused:
        verifier().verify(signature, now=NOW)
    assert refused.value.status == status


def test_no_signing_key_means_no_verifier():
    for environ in ({}, {"MAILGUN_WEBHOOK_SIGNING_KEY": " , "}):
        assert MailgunVerifier.from_settings(Settings.from_env(environ)) is None


# -- the sender's settings ----------------------------------------------------------------


def message(**changes) -> Message:
    fields = {
        "delivery_id": "41",
        "from_name": "Balanced Ketamine Care Team",
        "from_address": "care@mg.balancedketamine.example.com",
        "to_address": "pat@example.com",
        "to_name": "Smith, Pat",
        "subject": "Welcome",
        "preheader": None,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "date": NOW,
        "headers": {"Message-ID": "<dripmail.41@balancedketamine.example.com>"},
        "categories": ("c-0123456789", "s-0123456789"),
    }
    return Message(**{**fields, **changes})


def test_a_missing_api_key_variable_is_named():
    settings = MailgunSenderSettings(api_key_env="CLINIC_MAILGUN_KEY")
    for environ in ({}, {"CLINIC_MAILGUN_KEY": "  "}, {"MAILGUN_API_KEY": KEY}):
        with pytest.raises(SenderConfigurationError, match="CLINIC_MAILGUN_KEY") as raised:
            make_sender("mailgun", settings, Settings.from_env(environ))
        assert KEY not in str(raised.value)


def test_the_region_picks_the_host_and_the_environment_overrides_it():
    key = {"MAILGUN_API_KEY": KEY}
    us = make_sender("mailgun", MailgunSenderSettings(), Settings.from_env(key))
    eu = make_sender("mailgun", MailgunSenderSettings(region="eu"), Settings.from_env(key))
    local = make_sender(
        "mailgun",
        MailgunSenderSettings(region="eu"),
        Settings.from_env({**key, "MAILGUN_API_HOST": "http://127.0.0.1:8080/"}),
    )
    by_flag = make_sender("mailgun", FileSenderSettings(), Settings.from_env(key))  # --sender
    try:
        assert (us.host, eu.host, local.host, by_flag.host) == (
            "https://api.mailgun.net",
            "https://api.eu.mailgun.net",
            "http://127.0.0.1:8080",
            "https://api.mailgun.net",
        )
        assert KEY not in repr(us)
    finally:
        for sender in (us, eu, local, by_flag):
            sender.close()


@pytest.mark.parametrize(
    "host", ["api.mailgun.net", "ftp://api.mailgun.net", "https://", "https://a b"]
)
def test_a_malformed_host_is_a_configuration_error(host):
    environ = {"MAILGUN_API_KEY": KEY, "MAILGUN_API_HOST": host}
    with pytest.raises(SenderConfigurationError, match="not an API address") as raised:
        make_sender("mailgun", MailgunSenderSettings(), Settings.from_env(environ))
    assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    "domain", ["mg.clinic.example/../v4", "clinic", "-mg.clinic.example", "mg clinic.example"]
)
def test_a_domain_that_is_not_a_dns_name_is_refused_in_the_campaign_file(domain):
    with pytest.raises(ValidationError, match="is not a domain name"):
        MailgunSenderSettings(domain=domain)


def test_the_request_carries_the_recipient_the_options_and_the_delivery_id_only():
    sender = MailgunSender(KEY, domain="mg.clinic.example", track_clicks=True, test_mode=True)
    try:
        built = sender.build(message())
        assert built.prepared is not None and b"Message-ID: <dripmail.41@" in built.prepared
        assert sender.form(built) == {
            "to": "pat@example.com",  # bare: the name, with its comma, is in the MIME's To
            "o:tracking-opens": "no",
            "o:tracking-clicks": "yes",
            "o:testmode": "yes",
            "v:delivery_id": "41",
        }
        assert sender.sending_domain(built) == "mg.clinic.example"
    finally:
        sender.close()


def test_without_a_domain_each_email_goes_for_its_from_addresses_domain():
    sender = MailgunSender(KEY)
    try:
        assert sender.sending_domain(message()) == "mg.balancedketamine.example.com"
        idn = message(from_address="care@bücher.example")
        assert sender.sending_domain(idn) == "xn--bcher-kva.example"
        assert sender.form(message(to_address="pat@bücher.example"))["to"] == (
            "pat@xn--bcher-kva.example"
        )
    finally:
        sender.close()


def test_an_address_that_needs_smtputf8_fails_alone_when_built():
    sender = MailgunSender(KEY, domain="mg.clinic.example")
    try:
        with pytest.raises(NeedsSmtpUtf8):
            sender.build(message(to_address="pät@example.com"))
    finally:
        sender.close()


# -- the answers ---------------------------------------------------------------------------


def read(status: int, body: object = None, **headers: str):
    api = MessagesMime(httpx.Client(), "https://api.mailgun.net", "MAILGUN_API_KEY", KEY)
    content = json.dumps(body).encode() if isinstance(body, dict) else (body or "").encode()
    response = httpx.Response(status, content=content, headers=headers)
    try:
        return api.read(response, "mg.clinic.example")
    finally:
        api.client.close()


def test_each_documented_answer_means_one_thing():
    queued = read(200, {"id": "<20261206.1@mg.clinic.example>", "message": "Queued. Thank you."})
    assert (queued.kind, queued.provider_id) == ("sent", "20261206.1@mg.clinic.example")
    assert (
        read(
            400, {"message": "to parameter is not a valid address. please check documentation"}
        ).kind
        == "permanent"
    )
    assert read(413, "Request Entity Too Large").kind == "permanent"
    for status in (429, 500, 502, 503, 504):
        assert read(status).kind == "retry"
    assert read(429, **{"Retry-After": "7"}).retry_after == 7.0
    assert (
        read(
            429,
            **{
                "Retry-After": "Sun, 06 Dec 2026 14:00:30 GMT",
                "Date": "Sun, 06 Dec 2026 14:00:00 GMT",
            },
        ).retry_after
        == 30.0
    )
    refused = read(401, "Forbidden")
    assert refused.kind == "config" and "MAILGUN_API_KEY" in refused.error
    assert "Forbidden" in refused.error
    assert (
        read(
            403, {"message": "Domain mg.clinic.example is not allowed to send large batches yet"}
        ).kind
        == "config"
    )
    missing = read(404, {"message": "Domain not found: mg.clinic.example"})
    assert missing.kind == "config" and "sender.region" in missing.error
    unverified = read(
        400,
        {"message": "Domain mg.clinic.example is not allowed to send: The domain is unverified "
         "and requires DNS configuration. Log in to your control panel to view required DNS "
         "records."},
    )  # fmt: skip
    assert unverified.kind == "config" and "unverified" in unverified.error
    sandbox = read(400, {"message": "Domain mg.clinic.example is not allowed to send: Sandbox "
                         "subdomains are for test purposes only. Please add your own domain or "
                         "add the address to authorized recipients."})  # fmt: skip
    assert sandbox.kind == "permanent"  # the next recipient may be an authorized one


def test_a_key_in_an_answer_is_scrubbed_and_control_characters_folded():
    answer = read(400, {"message": f"bad\r\nX-Injected: {KEY}"})
    assert KEY not in answer.error and "\n" not in answer.error and "[api key]" in answer.error
