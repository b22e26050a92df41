"""SES event records -> ProviderEvents: the pure parser over AWS's documented shapes.

The fixtures in tests/fixtures/ses/ follow "Examples of event data that Amazon SES
publishes to Amazon SNS" (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html)
and, for notification_bounce.json, an identity's feedback notification with original
headers (https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.compliance.event_model import EventKind
from campaigns.compliance.ses_events import parse_ses_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ses"
PAT = "pat@example.com"
MESSAGE_ID = "0102018e2b1f4c3a-5d2c1e9b-7f4a-4c1d-9a6e-3b8f2d1c0e9a-000000"


def record(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "kind", "address", "reason"),
    [
        ("bounce_permanent", EventKind.BOUNCED_HARD, "pat@example.com", "Permanent/General 5.1.1"),
        (
            "bounce_transient",
            EventKind.BOUNCED_SOFT,
            "pat@example.com",
            "Transient/MailboxFull 4.2.2",
        ),
        ("complaint", EventKind.COMPLAINED, PAT, "abuse"),
        ("delivery", EventKind.DELIVERED, None, None),
        ("send", EventKind.ACCEPTED, None, None),
        ("reject", EventKind.REJECTED, None, "Bad content"),
        ("delivery_delay", EventKind.DEFERRED, None, "TransientCommunicationFailure"),
        ("open", EventKind.OPENED, None, None),
        ("click", EventKind.CLICKED, None, None),
    ],
)
def test_each_documented_event_maps_to_one_kind(name, kind, address, reason):
    [event] = parse_ses_event(record(name), key="sns-1")

    assert (event.provider, event.event_id, event.kind) == ("ses", "sns-1", kind)
    assert (event.address, event.reason) == (address, reason)
    assert event.delivery_id == 1 and event.message_id == MESSAGE_ID
    assert event.campaign_hint == "c-0123456789"
    assert event.occurred_at is not None and event.occurred_at.tzinfo == UTC


def test_an_undetermined_bounce_is_soft():
    data = record("bounce_permanent")
    data["bounce"]["bounceType"] = "Undetermined"
    [event] = parse_ses_event(data, key="k")
    assert event.kind is EventKind.BOUNCED_SOFT


def test_times_are_the_events_own():
    [bounce] = parse_ses_event(record("bounce_permanent"), key="k")
    assert bounce.occurred_at == datetime(2026, 3, 10, 14, 59, 2, 669000, tzinfo=UTC)


def test_an_identity_notification_finds_the_delivery_in_our_header():
    [event] = parse_ses_event(record("notification_bounce"), key="k")
    assert event.kind is EventKind.BOUNCED_HARD and event.delivery_id == 1
    assert event.campaign_hint is None


def test_nothing_identifying_leaves_the_parser_but_a_bounce_or_complaint_address():
    for name in ("open", "click", "delivery", "delivery_delay"):
        [event] = parse_ses_event(record(name), key="k")
        text = repr(event)
        for secret in ("192.0.2.1", "iPhone", "/sleep", "pat@example.com", "Subject"):
            assert secret not in text, (name, secret)
    # A diagnostic that quotes the address never becomes the reason.
    [bounce] = parse_ses_event(record("bounce_permanent"), key="k")
    assert "@" not in bounce.reason


def test_several_recipients_get_one_event_each_with_distinct_ids():
    data = record("bounce_permanent")
    data["bounce"]["bouncedRecipients"].append({"emailAddress": "other@example.com"})
    events = parse_ses_event(data, key="k")
    assert [(e.event_id, e.address) for e in events] == [
        ("k", "pat@example.com"),
        ("k:1", "other@example.com"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        record("rendering_failure"),
        {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"},
        {"eventType": "Bounce"},  # no recipients
        "not a record",
        None,
        [],
    ],
)
def test_records_we_do_not_use_give_no_events(data):
    assert parse_ses_event(data, key="k") == []


@pytest.mark.parametrize("value", ["test-0a1b2c", "0", "-3", "99999999999", "1.5", ""])
def test_a_delivery_id_that_is_not_ours_is_left_out(value):
    data = record("delivery")
    data["mail"]["tags"]["delivery_id"] = [value]
    [event] = parse_ses_event(data, key="k")
    assert event.delivery_id is None and event.message_id == MESSAGE_ID
