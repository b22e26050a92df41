"""Postmark, pure parts: batch entries and their planning, the answers' reading, the
webhook records' parsing (on Postmark's documented sample payloads, tests/fixtures/postmark)
and the webhook's credentials."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.compliance.event_model import EventKind
from campaigns.compliance.postmark_events import parse_postmark_event
from campaigns.errors import ConfigurationError
from campaigns.web.postmark_webhook import authorised, credentials
from senders.base import Message
from senders.postmark_answers import _entries
from senders.postmark_body import MAX_BATCH, MAX_BATCH_BYTES, EntryWriter, plan_batches

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "postmark"
PUBLIC_URL = "https://mail.clinic.example"


def record(name: str, **changes) -> dict:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    data.update(changes)
    return data


def message(delivery_id: str = "7", **changes) -> Message:
    fields = {
        "delivery_id": delivery_id,
        "from_name": "Balanced Ketamine Care Team",
        "from_address": "care@balancedketamine.example.com",
        "to_address": "pat@example.com",
        "to_name": "Pat",
        "subject": "Welcome",
        "preheader": None,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "reply_to": "Care Team <care@balancedketamine.example.com>",
        "headers": {
            "Message-ID": "<dripmail.7@balancedketamine.example.com>",
            "List-Unsubscribe": f"<{PUBLIC_URL}/u/t>, <mailto:unsubscribe@clinic.example>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Date": "Mon, 02 Mar 2026 10:00:00 -0500",
        },
    }
    fields.update(changes)
    return Message(**fields)


# -- the batch entries --------------------------------------------------------------------


def test_an_entry_carries_dripmails_headers_and_the_opaque_id_only():
    entry = EntryWriter().entry(message())

    assert entry == {
        "From": "Balanced Ketamine Care Team <care@balancedketamine.example.com>",
        "To": "Pat <pat@example.com>",
        "Subject": "Welcome",
        "MessageStream": "broadcast",
        "Metadata": {"delivery_id": "7"},
        "TrackOpens": False,
        "TrackLinks": "None",
        "TextBody": "Hello",
        "HtmlBody": "<p>Hello</p>",
        "ReplyTo": "Care Team <care@balancedketamine.example.com>",
        "Headers": [
            {"Name": "Message-ID", "Value": "<dripmail.7@balancedketamine.example.com>"},
            {
                "Name": "List-Unsubscribe",
                "Value": f"<{PUBLIC_URL}/u/t>, <mailto:unsubscribe@clinic.example>",
            },
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
        ],
    }


def test_the_stream_and_tracking_follow_the_settings():
    entry = EntryWriter("outbound", track_opens=True, track_clicks=True).entry(message())
    assert (entry["MessageStream"], entry["TrackOpens"], entry["TrackLinks"]) == (
        "outbound",
        True,
        "HtmlAndText",
    )


def test_names_with_separators_are_quoted_and_crlf_never_splits_a_field():
    entry = EntryWriter().entry(
        message(
            from_name="Care, Team\r\nBcc: eve@evil.example",
            to_name='Smith, Pat; "Jr"',
            subject="Hi\r\nBcc: eve@evil.example",
            to_address="pat@bücher.example",
        )
    )
    assert entry["From"] == '"Care, Team Bcc: eve@evil.example" <care@balancedketamine.example.com>'
    assert entry["To"] == '"Smith, Pat; \\"Jr\\"" <pat@xn--bcher-kva.example>'
    assert entry["Subject"] == "Hi Bcc: eve@evil.example"


def test_batches_hold_at_most_500_entries_and_50_mb():
    assert [len(b) for b in plan_batches([100] * 1200, MAX_BATCH)] == [500, 500, 200]
    assert [len(b) for b in plan_batches([100] * 3, 1)] == [1, 1, 1]
    big = MAX_BATCH_BYTES // 3
    assert plan_batches([big, big, big, 10], MAX_BATCH) == [[0, 1], [2, 3]]


def test_each_entry_of_an_answered_batch_gets_its_own_answer():
    answer = _entries(
        json.dumps(
            [
                {"ErrorCode": 0, "Message": "OK", "MessageID": "m-1", "To": "a@example.com"},
                {"ErrorCode": 406, "Message": "Found inactive addresses: pat@example.com."},
                {"ErrorCode": 300, "Message": "Invalid 'To' address: 'x@y'."},
                {"ErrorCode": 429, "Message": "Rate limit exceeded"},
                {"ErrorCode": 10, "Message": "Bad or missing API token"},
            ]
        ).encode(),
        5,
    )
    assert [e.kind for e in answer.entries] == ["sent", "permanent", "permanent", "retry", "config"]
    assert answer.entries[0].provider_id == "m-1"
    assert "406" in answer.entries[1].error and "pat@example.com" not in answer.entries[1].error
    # A 200 whose array does not match the request cannot be read entry by entry.
    assert _entries(b"[]", 2).kind == "ambiguous"
    assert _entries(b"<html>", 1).kind == "ambiguous"


# -- the webhook records ------------------------------------------------------------------


def test_a_hard_bounce_is_bounced_hard_with_its_delivery_and_address():
    [event] = parse_postmark_event(record("bounce"))
    assert event.kind is EventKind.BOUNCED_HARD
    assert (event.delivery_id, event.address, event.reason) == (17, "pat@example.com", "HardBounce")
    assert event.event_id == "Bounce:4323372036854775807"
    assert event.message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert event.occurred_at == datetime(2026, 3, 2, 15, 28, 10, 273539, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "kind", "has_address"),
    [
        ("soft_bounce", EventKind.BOUNCED_SOFT, False),
        ("spam_complaint", EventKind.COMPLAINED, True),
        ("delivery", EventKind.DELIVERED, False),
        ("open", EventKind.OPENED, False),
        ("click", EventKind.CLICKED, False),
        ("subscription_change", EventKind.UNSUBSCRIBED, True),
    ],
)
def test_each_record_type_maps_to_one_kind(name, kind, has_address):
    [event] = parse_postmark_event(record(name))
    assert event.provider == "postmark" and event.kind is kind and event.delivery_id == 17
    # Only a suppressing kind needs the address; nothing else about the reader is kept.
    assert (event.address == "pat@example.com") is has_address
    assert event.reason is None or "@" not in event.reason


@pytest.mark.parametrize(
    ("bounce_type", "inactive", "kind"),
    [
        ("BadEmailAddress", True, EventKind.BOUNCED_HARD),
        ("ManuallyDeactivated", True, EventKind.BOUNCED_HARD),
        ("Transient", False, EventKind.BOUNCED_SOFT),
        ("DnsError", False, EventKind.BOUNCED_SOFT),
        ("Blocked", False, EventKind.BOUNCED_SOFT),
        ("Unsubscribe", False, EventKind.UNSUBSCRIBED),
        ("SpamComplaint", True, EventKind.COMPLAINED),
        ("Unknown", True, EventKind.BOUNCED_HARD),  # Postmark deactivated it: gone for us too
        ("AutoResponder", False, None),  # an out-of-office reply is no failure
    ],
)
def test_bounce_types_follow_postmarks_list(bounce_type, inactive, kind):
    found = parse_postmark_event(record("bounce", Type=bounce_type, Inactive=inactive))
    assert [e.kind for e in found] == ([kind] if kind else [])


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("HardBounce", EventKind.BOUNCED_HARD),
        ("SpamComplaint", EventKind.COMPLAINED),
        ("ManualSuppression", EventKind.UNSUBSCRIBED),
    ],
)
def test_a_subscription_change_says_why_it_suppresses(reason, kind):
    [event] = parse_postmark_event(record("subscription_change", SuppressionReason=reason))
    assert event.kind is kind and event.reason == reason


def test_a_reactivation_and_other_records_are_no_events():
    assert parse_postmark_event(record("reactivation")) == []
    assert parse_postmark_event({"RecordType": "Inbound", "From": "x@example.com"}) == []
    assert parse_postmark_event([record("bounce")]) == []


def test_a_replayed_record_has_the_same_event_id_and_others_differ():
    ids = {parse_postmark_event(record(name))[0].event_id for name in ("delivery", "open", "click")}
    assert len(ids) == 3
    assert parse_postmark_event(record("open")) == parse_postmark_event(record("open"))
    later = parse_postmark_event(record("open", ReceivedAt="2026-03-02T13:00:00Z"))[0]
    assert later.event_id not in ids


def test_a_delivery_id_that_is_not_ours_is_left_out():
    for metadata in ({"delivery_id": "test-3"}, {"delivery_id": "99999999999"}, {}, None):
        [event] = parse_postmark_event(record("delivery", Metadata=metadata))
        assert event.delivery_id is None


# -- the webhook's credentials -----------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_are_a_rotatable_list_compared_in_full():
    pairs = credentials("hook:old-pass, hook:new-pass")
    assert authorised(basic("hook", "old-pass"), pairs)
    assert authorised(basic("hook", "new-pass"), pairs)
    for header in (
        basic("hook", "new-pas"),
        basic("hook2", "new-pass"),
        "Bearer new-pass",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        None,
    ):
        assert not authorised(header, pairs)
    assert credentials(None) == [] and credentials(" ") == []


def test_a_malformed_credentials_variable_is_one_line_without_its_value():
    with pytest.raises(ConfigurationError) as raised:
        credentials("hook:secret-one,just-a-password")
    assert "POSTMARK_WEBHOOK_CREDENTIALS" in str(raised.value)
    assert "secret-one" not in str(raised.value) and "just-a-password" not in str(raised.value)
