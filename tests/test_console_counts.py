"""The counts the database keeps (migration 0024) equal what counting the rows says.

The dashboard and a campaign's statistics read count tables that triggers keep up to
date. Here a database of random shape (statuses, due and sent times, events of every kind,
repeated, undone, deleted; many rows changed by one statement, as the engine's edits and
pauses do) is read both ways, SQLite and PostgreSQL: through the counts, and through
the queries the pages ran before (`reference_*`, kept here as the definition). Then the
real paths (enrolment, sending, provider events, an unsubscribe, pause and resume,
erasure) are followed step by step.
"""

from __future__ import annotations

import random
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, update
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.compliance.privacy import forget_contact
from campaigns.compliance.sendgrid_events import apply_sendgrid_events
from campaigns.console.campaign_list import _alerts, _next_sends, alert_lines
from campaigns.planning.enroll import enroll
from campaigns.planning.pause import pause, resume
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.reporting.counts import hour_key
from campaigns.reporting.overview import RECENT, campaign_overview
from campaigns.reporting.sends_over_time import sends_per_day
from campaigns.reporting.stats import COLUMNS, campaign_stats
from campaigns.storage.publish import publish
from campaigns.storage.statuses import PENDING, DeliveryStatus
from campaigns.storage.tables import campaigns, contacts, deliveries, enrollments, events
from campaigns.web.app import create_app
from tests.helpers import utc

NOW = utc("2026-03-02T12:34")
NAMES = ("alpha", "beta", "gamma")
TYPES = (
    "delivered", "opened", "clicked", "bounced_hard", "bounced_soft", "complained",
    "unsubscribed", "unsubscribe", "campaign_unsubscribe", "newsletter_unsubscribe",
    "unsubscribe_undone", "open", "deferred",
)  # fmt: skip
STATUSES = tuple(DeliveryStatus)


# --- the queries the pages ran before the counts (the definition of each number) ---------


def reference_overview(conn, now: datetime) -> dict[str, tuple[int, int, int]]:
    """campaign -> (enrolled, pending, sent since the start of the hour 7 days ago)."""
    enrolled = dict(
        conn.execute(
            select(enrollments.c.campaign, func.count()).group_by(enrollments.c.campaign)
        ).all()
    )
    by_campaign = (
        select(enrollments.c.campaign, func.count())
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .group_by(enrollments.c.campaign)
    )
    pending = dict(conn.execute(by_campaign.where(deliveries.c.status.in_(PENDING))).all())
    since = datetime.strptime(hour_key(now - RECENT), "%Y-%m-%d %H").replace(tzinfo=now.tzinfo)
    sent = dict(
        conn.execute(
            by_campaign.where(deliveries.c.status == "sent", deliveries.c.sent_at >= since)
        ).all()
    )
    names = conn.scalars(select(campaigns.c.name))
    return {n: (enrolled.get(n, 0), pending.get(n, 0), sent.get(n, 0)) for n in names}


def reference_next_sends(conn, now: datetime) -> dict[str, tuple[datetime, int]]:
    query = (
        select(
            enrollments.c.campaign,
            func.min(deliveries.c.due_at),
            func.count().filter(deliveries.c.due_at < now + timedelta(days=7)),
        )
        .select_from(deliveries)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(deliveries.c.status.in_(PENDING))
        .group_by(enrollments.c.campaign)
    )
    return {name: (first, int(soon)) for name, first, soon in conn.execute(query)}


def reference_alerts(conn) -> dict[str, list[str]]:
    by_campaign = (
        select(enrollments.c.campaign, func.count())
        .select_from(deliveries)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .group_by(enrollments.c.campaign)
    )
    by_event = (
        select(enrollments.c.campaign, func.count(func.distinct(events.c.delivery_id)))
        .select_from(events)
        .join(deliveries, deliveries.c.id == events.c.delivery_id)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .group_by(enrollments.c.campaign)
    )
    unknown = dict(conn.execute(by_campaign.where(deliveries.c.status == "unknown")).all())
    sent = dict(conn.execute(by_campaign.where(deliveries.c.status == "sent")).all())
    bounced = dict(
        conn.execute(by_event.where(events.c.type.in_(("bounced_hard", "bounced_soft")))).all()
    )
    complained = dict(conn.execute(by_event.where(events.c.type == "complained")).all())
    return alert_lines(unknown, sent, bounced, complained)


def reference_steps(conn, name: str) -> dict[str, dict[str, int]]:
    """step_key -> {column: deliveries} (sent, and each statistics column), non-zero only."""
    found: dict[str, dict[str, int]] = {}
    for key, count in conn.execute(
        select(deliveries.c.step_key, func.count())
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(enrollments.c.campaign == name, deliveries.c.status == "sent")
        .group_by(deliveries.c.step_key)
    ):
        found.setdefault(key, {})["sent"] = count
    for column, types in COLUMNS.items():
        for key, count in conn.execute(
            select(deliveries.c.step_key, func.count(events.c.delivery_id.distinct()))
            .join(deliveries, deliveries.c.id == events.c.delivery_id)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign == name, events.c.type.in_(types))
            .group_by(deliveries.c.step_key)
        ):
            found.setdefault(key, {})[column] = count
    return found


def reference_days(conn, name: str) -> dict[date, int]:
    rows = conn.execute(
        select(deliveries.c.sent_at)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(enrollments.c.campaign == name, deliveries.c.status == "sent")
    ).scalars()
    days: dict[date, int] = {}
    for when in rows:
        if when is not None:
            days[when.date()] = days.get(when.date(), 0) + 1
    return days


# --- both readings side by side ---------------------------------------------------------------


def counted_steps(store, name: str) -> dict[str, dict[str, int]]:
    stats = campaign_stats(store, name)
    found: dict[str, dict[str, int]] = {}
    for step in stats.steps:
        for column in ("sent", *COLUMNS):
            value = getattr(step.counts, column)
            if value:
                found.setdefault(step.key, {})[column] = value
    return found


def assert_counts_agree(store, now: datetime = NOW) -> None:
    overview = {
        row.name: (row.enrolled, row.pending, row.sent_recently)
        for row in campaign_overview(store, now=now)
    }
    with store.connect() as conn:
        assert overview == reference_overview(conn, now)
        assert _next_sends(store, now) == reference_next_sends(conn, now)
        assert _alerts(store) == reference_alerts(conn)
        for name in overview:
            assert counted_steps(store, name) == reference_steps(conn, name), name
            days = {day: n for day, n in sends_per_day(store, name) if n}
            assert days == reference_days(conn, name), name


def published(store, clinic_folder: Path, tmp_path: Path) -> dict[str, list[str]]:
    """The clinic campaign published under each of NAMES; name -> its step keys."""
    steps = {}
    for name in NAMES:
        folder = tmp_path / name
        shutil.copytree(clinic_folder, folder)
        yaml = folder / "campaign.yaml"
        yaml.write_text(yaml.read_text().replace("name: ketamine-and-sleep", f"name: {name}"))
        campaign = load_folder(folder)
        with store.begin() as conn:
            publish(conn, campaign, now=NOW)
        steps[name] = [step.key for step in campaign.steps]
    return steps


@pytest.mark.parametrize("seed", [1, 2])
def test_the_counts_equal_counting_the_rows_on_a_random_database(
    store, clinic_folder, tmp_path, seed
):
    rng = random.Random(seed)
    steps = published(store, clinic_folder, tmp_path)
    hours = [NOW + timedelta(minutes=rng.randrange(-20 * 24 * 60, 20 * 24 * 60)) for _ in range(60)]
    # The edges: exactly 7 days back and ahead, and within their hours.
    hours += [NOW - RECENT, NOW + timedelta(days=7), NOW + timedelta(days=7, minutes=-1)]
    hours += [NOW - RECENT - timedelta(minutes=40), NOW + timedelta(days=7, minutes=10)]
    with store.begin() as conn:
        conn.execute(
            insert(contacts),
            [
                {"id": i, "email": f"p{i}@example.com", "timezone": "UTC", "created_at": NOW}
                for i in range(1, 81)
            ],
        )
        conn.execute(
            insert(enrollments),
            [
                {"id": i, "contact_id": i, "campaign": rng.choice(NAMES[:2]),
                 "signed_up_at": NOW, "status": "active", "created_at": NOW}
                for i in range(1, 81)
            ],
        )  # fmt: skip
        rows = []
        for enrollment in range(1, 81):
            campaign = conn.scalar(
                select(enrollments.c.campaign).where(enrollments.c.id == enrollment)
            )
            for key in [*steps[campaign], "removed-step"]:
                if rng.random() < 0.3:
                    continue
                status = rng.choice(STATUSES)
                rows.append(
                    {"id": len(rows) + 1, "enrollment_id": enrollment, "step_key": key,
                     "position": 1, "due_at": rng.choice(hours), "status": status,
                     "attempts": 0,
                     "sent_at": rng.choice(hours) if status in ("sent", "unknown") else None}
                )  # fmt: skip
        conn.execute(insert(deliveries), rows)
        conn.execute(
            insert(events),
            [
                {"id": i, "provider": "sendgrid", "provider_event_id": f"e{i}",
                 "delivery_id": rng.choice([None, *range(1, len(rows) + 1)]),
                 "type": rng.choice(TYPES),
                 "created_at": NOW, "campaign": rng.choice(NAMES)}
                for i in range(1, 901)
            ],
        )  # fmt: skip
    assert_counts_agree(store)

    # Changes of many rows in one statement, and of one row at a time, of every kind.
    for round_ in range(6):
        with store.begin() as conn:
            some = rng.sample(range(1, len(rows) + 1), 60)
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(some[:30]))
                .values(status=rng.choice(STATUSES), sent_at=rng.choice(hours))
            )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(some[30:45]))
                .values(due_at=rng.choice(hours))
            )
            for delivery_id in some[45:]:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id)
                    .values(status=rng.choice(STATUSES), sent_at=rng.choice([None, *hours]))
                )
            conn.execute(
                update(events)
                .where(events.c.id.in_(rng.sample(range(1, 901), 40)))
                .values(type=rng.choice(TYPES))
            )
            conn.execute(
                update(events)
                .where(events.c.id.in_(rng.sample(range(1, 901), 10)))
                .values(delivery_id=rng.randrange(1, len(rows) + 1))
            )
            conn.execute(delete(events).where(events.c.id.in_(rng.sample(range(1, 901), 20))))
            conn.execute(
                insert(events),
                [
                    {"id": 10_000 + 100 * round_ + i, "provider": "sendgrid",
                     "provider_event_id": f"r{round_}-{i}",
                     "delivery_id": rng.randrange(1, len(rows) + 1), "type": rng.choice(TYPES),
                     "created_at": NOW}
                    for i in range(30)
                ],
            )  # fmt: skip
            # A new enrollment (gamma's first) with its deliveries, in two statements.
            conn.execute(
                insert(contacts).values(
                    id=100 + round_, email=f"n{round_}@example.com", timezone="UTC", created_at=NOW
                )
            )
            conn.execute(
                insert(enrollments).values(
                    id=100 + round_, contact_id=100 + round_, campaign="gamma",
                    signed_up_at=NOW, status="active", created_at=NOW,
                )
            )  # fmt: skip
            conn.execute(
                insert(deliveries),
                [
                    {"id": 10_000 + 10 * round_ + n, "enrollment_id": 100 + round_,
                     "step_key": key, "position": n,
                     "due_at": rng.choice(hours), "status": rng.choice(PENDING), "attempts": 0}
                    for n, key in enumerate(steps["gamma"], start=1)
                ],
            )  # fmt: skip
        assert_counts_agree(store)
        assert_counts_agree(store, NOW + timedelta(days=rng.randrange(-3, 4), minutes=17))
    with store.begin() as conn:  # deliveries and enrollments deleted (a script might)
        conn.execute(delete(events))
        conn.execute(delete(deliveries).where(deliveries.c.id > len(rows) // 2))
    assert_counts_agree(store)


PEOPLE = ("ana@example.com", "bo@example.com", "cy@example.com", "di@example.com")


def sendgrid(kind: str, delivery_id: int, n: int = 0, **extra) -> dict:
    return {
        "event": kind,
        "timestamp": 1772800000 + n,
        "sg_event_id": f"{kind}-{delivery_id}-{n}",
        "delivery_id": str(delivery_id),
        **extra,
    }


def test_the_counts_follow_sends_events_unsubscribes_pauses_and_erasure(store, clinic):
    for address in PEOPLE:
        enroll(
            store,
            clinic,
            Signup(address, None, "Europe/London", "2026-03-02T10:00", "form"),
            now=NOW,
        )
    assert_counts_agree(store)
    assert campaign_overview(store, now=NOW)[0].enrolled == 4
    first = clinic.steps[0].key
    with store.begin() as conn:  # the first emails go, as the dispatcher marks them
        conn.execute(
            update(deliveries)
            .where(deliveries.c.step_key == first)
            .values(status="sent", sent_at=NOW)
        )
        ids = list(conn.scalars(select(deliveries.c.id).where(deliveries.c.step_key == first)))
    assert_counts_agree(store)
    a, b, c, d = ids
    apply_sendgrid_events(
        store,
        [
            sendgrid("delivered", a), sendgrid("delivered", b), sendgrid("open", a),
            sendgrid("open", a, 1), sendgrid("click", b), sendgrid("bounce", d, email=PEOPLE[3]),
            sendgrid("spamreport", c, email=PEOPLE[2]),
        ],
        now=NOW,
    )  # fmt: skip
    assert_counts_agree(store)
    step = campaign_stats(store, clinic.name).steps[0].counts
    assert (step.sent, step.delivered, step.opened, step.clicked) == (4, 2, 1, 1)
    with store.connect() as conn:
        contact_id = conn.scalar(
            select(enrollments.c.contact_id).where(
                enrollments.c.id
                == select(deliveries.c.enrollment_id).where(deliveries.c.id == b).scalar_subquery()
            )
        )
    token = Signer(store.secret_key()).token(UnsubscribeClaim(contact_id, clinic.name, b))
    with TestClient(create_app(store, environ={})) as client:
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert_counts_agree(store)
    assert campaign_stats(store, clinic.name).steps[0].counts.unsubscribed == 1
    pause(store, clinic.name, now=NOW)
    assert_counts_agree(store)
    resume(store, clinic.name, now=NOW + timedelta(days=3))
    assert_counts_agree(store, NOW + timedelta(days=3))
    pending_before = campaign_overview(store, now=NOW)[0].pending
    forget_contact(store, PEOPLE[0], now=NOW + timedelta(days=3))
    assert_counts_agree(store, NOW + timedelta(days=3))
    assert campaign_overview(store, now=NOW)[0].pending < pending_before
