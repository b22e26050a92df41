"""One event model: stats, suppressions, "I changed my mind" and settling `unknown` read
the same kinds whichever provider reported them (compliance/event_model.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.sendgrid_events import apply_sendgrid_events
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.store import utcnow
from campaigns.storage.tables import deliveries, suppressions
from campaigns.web.app import create_app
from cli import app as cli_app
from tests.test_stats import PEOPLE, sendgrid
from tests.test_stats import sent as sent
from tests.test_unsubscribe import delivery_rows, enroll_pat, second_campaign, token_for

PROVIDERS = ("sendgrid", "ses", "mailgun", "postmark", "mailbox")


def events_for(provider: str, ids: list[int]) -> list[ProviderEvent]:
    """The same story from any provider: three delivered, one hard bounce, one soft, opens,
    a click, a complaint and an unsubscribe through the provider."""
    a, b, c, d = ids

    def event(n: int, kind: EventKind, delivery: int, address: str | None = None):
        return ProviderEvent(provider, f"{provider}-{n}", kind, delivery_id=delivery,
                             address=address)  # fmt: skip

    return [
        event(1, EventKind.ACCEPTED, a),
        event(2, EventKind.DELIVERED, a),
        event(3, EventKind.DELIVERED, b),
        event(4, EventKind.DELIVERED, c),
        event(5, EventKind.BOUNCED_HARD, d, PEOPLE[3]),
        event(6, EventKind.OPENED, a),
        event(7, EventKind.OPENED, a),  # one email opened twice is one open
        event(8, EventKind.OPENED, b),
        event(9, EventKind.CLICKED, a),
        event(10, EventKind.COMPLAINED, c, PEOPLE[2]),
        event(11, EventKind.UNSUBSCRIBED, b, PEOPLE[1]),
        event(12, EventKind.DEFERRED, a),
    ]


def sendgrid_story(ids: list[int]) -> list[dict]:
    """The same story as SendGrid's webhook posts it."""
    a, b, c, d = ids
    return [
        sendgrid("processed", a),
        sendgrid("delivered", a),
        sendgrid("delivered", b),
        sendgrid("delivered", c),
        sendgrid("bounce", d, email=PEOPLE[3], type="bounce"),
        sendgrid("open", a, 1),
        sendgrid("open", a, 2),
        sendgrid("open", b),
        sendgrid("click", a),
        sendgrid("spamreport", c, email=PEOPLE[2]),
        sendgrid("group_unsubscribe", b, email=PEOPLE[1]),
        sendgrid("deferred", a),
    ]


@pytest.mark.parametrize("provider", ["sendgrid webhook", *PROVIDERS])
def test_every_providers_events_count_the_same_in_stats(store, clinic, sent, provider):
    ids = sent[clinic.steps[0].key]
    if provider == "sendgrid webhook":  # through SendGrid's own parser
        report = apply_sendgrid_events(store, sendgrid_story(ids), now=utcnow())
    else:
        report = apply_provider_events(store, events_for(provider, ids), now=utcnow())

    first = campaign_stats(store, clinic.name).steps[0].counts
    assert (first.sent, first.delivered, first.bounced) == (4, 3, 1)
    assert (first.opened, first.clicked, first.complaints, first.unsubscribed) == (2, 1, 1, 1)
    assert first.soft_bounced == 0
    # The bounce, the complaint and the unsubscribe each suppress their address.
    assert report.suppressed == 3
    with store.connect() as conn:
        held = set(conn.scalars(select(suppressions.c.address_hash)))
    assert held == {store.address_hash(p) for p in PEOPLE[1:]}


def test_a_soft_bounce_is_shown_apart_and_keeps_the_address(store, clinic, sent):
    a, b, *_ = sent[clinic.steps[0].key]
    apply_sendgrid_events(
        store, [sendgrid("bounce", a, email=PEOPLE[0], type="blocked")], now=utcnow()
    )
    apply_provider_events(
        store,
        [ProviderEvent("ses", "ses-1", EventKind.BOUNCED_SOFT, delivery_id=b, address=PEOPLE[1])],
        now=utcnow(),
    )
    result = campaign_stats(store, clinic.name)
    first = result.steps[0].counts
    assert (first.bounced, first.soft_bounced) == (0, 2)
    assert "soft_bounced" not in first.rates()
    assert result.as_dict()["total"]["soft_bounced"] == 2
    table = CliRunner().invoke(cli_app, ["stats", clinic.name, "--db", store.url])
    assert "soft bounces: 2 (not in bounced" in " ".join(table.stdout.split())
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", [EventKind.BOUNCED_HARD, EventKind.COMPLAINED])
def test_undoing_an_unsubscribe_keeps_what_any_providers_bounce_asked_for(
    store, clinic, provider, kind
):
    pat = enroll_pat(store, clinic)
    token, claim = token_for(store, pat)
    with TestClient(create_app(store, environ={}), base_url="https://mail.clinic.test") as client:
        client.post(f"/u/{token}", data={"choice": "all"})
        # The address bounces (or complains) after the unsubscribe, at any provider.
        apply_provider_events(
            store,
            [
                ProviderEvent(
                    provider,
                    "later",
                    kind,
                    delivery_id=claim.delivery_id,
                    address="pat@example.com",
                )
            ],
            now=utcnow(),
        )
        client.post(f"/u/{token}", data={"choice": "undo"})
    with store.connect() as conn:
        held = conn.execute(select(suppressions.c.address_hash)).scalars().all()
    assert held == [store.address_hash("pat@example.com")]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_providers_event_settles_an_unknown_delivery(
    store, clinic_folder, clinic, tmp_path, provider
):
    first = delivery_rows(store, enroll_pat(store, clinic))[0]
    other = delivery_rows(store, enroll_pat(store, second_campaign(clinic_folder, tmp_path)))[0]
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([first.id, other.id]))
            .values(status="unknown")
        )
    apply_provider_events(
        store,
        [
            ProviderEvent(
                provider, "d", EventKind.DELIVERED, delivery_id=first.id, message_id="msg-1"
            ),
            ProviderEvent(
                provider,
                "r",
                EventKind.REJECTED,
                delivery_id=other.id,
                reason="Recipient on the suppression list",
            ),
        ],
        now=utcnow(),
    )
    settled = {row.id: row for row in delivery_rows(store)}
    assert (settled[first.id].status, settled[first.id].provider_message_id) == ("sent", "msg-1")
    assert settled[other.id].status == "failed"
    assert "Recipient on the suppression list" in settled[other.id].error
