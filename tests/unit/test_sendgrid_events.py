"""SendGrid's Event Webhook payload into the one event model: the pure parser.

tests/fixtures/sendgrid/events.json is a batch of every event SendGrid documents
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event), written
for these tests with our custom arg `delivery_id` and opaque categories.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from campaigns.compliance.event_model import SUPPRESSING, EventKind, ProviderEvent
from campaigns.compliance.sendgrid_events import sendgrid_event_key, sendgrid_events

BATCH = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "sendgrid" / "events.json").read_text()
)


def keyed(address: str) -> str:
    """Stands in for the store's keyed hash."""
    return "h:" + address


def parse(items) -> list[ProviderEvent]:
    return sendgrid_events(items, address_hash=keyed)


def test_every_documented_event_maps_to_its_kind():
    found = parse(BATCH)
    assert [(e.kind, e.delivery_id) for e in found] == [
        (EventKind.ACCEPTED, 17),
        (EventKind.DEFERRED, 17),
        (EventKind.DELIVERED, 17),
        (EventKind.OPENED, 17),
        (EventKind.CLICKED, 17),
        (EventKind.BOUNCED_HARD, 18),
        (EventKind.BOUNCED_SOFT, 19),  # type "blocked": SendGrid does not suppress it either
        (EventKind.REJECTED, 20),
        (EventKind.COMPLAINED, 21),
        (EventKind.UNSUBSCRIBED, 22),
        (EventKind.UNSUBSCRIBED, 23),
    ]  # group_resubscribe has no kind: left out
    assert {e.provider for e in found} == {"sendgrid"}
    suppressing = {e.address for e in found if e.kind in SUPPRESSING}
    assert suppressing == {"kim@example.org", "ana@example.com", "bo@example.com",
                           "cy@example.com", "di@example.com"}  # fmt: skip


def test_ids_times_message_ids_reasons_and_the_campaign_hint():
    accepted, *_rest, dropped = parse(BATCH)[:8]
    assert accepted.event_id == "cHJvY2Vzc2VkLTEyMzQ1"
    assert accepted.occurred_at == datetime.fromtimestamp(1772800000, UTC)
    # sg_message_id less SendGrid's ".filter..." routing: the X-Message-Id the send returned.
    assert accepted.message_id == "4f1c2a9e0b7"
    assert accepted.campaign_hint == "c-0a1b2c3d4e"  # the step's "s-..." names no campaign
    assert (dropped.kind, dropped.reason) == (EventKind.REJECTED, "Bounced Address")
    assert dropped.campaign_hint == "c-0a1b2c3d4e"  # one category comes as a string


def test_what_could_name_a_person_is_dropped():
    for event in parse(BATCH):
        kept = " ".join(str(v) for v in vars(event).values() if v is not None)
        assert "203.0.113.9" not in kept and "Mozilla" not in kept
        assert "clinic.example.com" not in kept
        assert "@" not in (event.reason or "")
    quoting = {**BATCH[7], "reason": "550 unknown user pat@example.com"}
    assert parse([quoting])[0].reason is None


def test_an_event_without_an_id_is_keyed_as_before_never_by_the_address():
    bare = {k: v for k, v in BATCH[2].items() if k != "sg_event_id"}
    [event] = parse([bare])
    parts = ["delivered", "17", "1772800120", bare["sg_message_id"], "h:pat@example.com"]
    expected = "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    assert event.event_id == expected == sendgrid_event_key(bare, "h:pat@example.com")
    assert parse([bare])[0].event_id == event.event_id  # a replay: the same key
    assert "pat@example.com" not in event.event_id


def test_anything_that_is_not_an_event_of_the_model_is_left_out():
    odd = [
        "processed",
        None,
        {"event": "bounce "},
        {"event": ["open"]},
        {"event": "group_resubscribe"},
        {"email": "pat@example.com"},
    ]
    assert parse(odd) == []
    # Values no delivery id could be: the event is kept, naming no delivery.
    for value in ("test-7", "-3", "0", 10**30, True, "99999999999999999999"):
        [event] = parse([{"event": "open", "delivery_id": value, "sg_event_id": "x"}])
        assert event.delivery_id is None
