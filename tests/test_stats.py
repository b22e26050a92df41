"""`dripmail stats`: per-step counts and rates from deliveries, provider events and unsubscribes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.sendgrid_events import apply_sendgrid_events
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.store import utcnow
from campaigns.storage.tables import deliveries, enrollments
from campaigns.web.app import create_app
from cli import app as cli_app
from tests.helpers import utc

NOW = utc("2026-03-02T12:00")
PEOPLE = ("ana@example.com", "bo@example.com", "cy@example.com", "di@example.com")


@pytest.fixture
def sent(store, clinic):
    """Four contacts; the first two steps sent to all of them. Returns step -> delivery ids."""
    by_step: dict[str, list[int]] = {}
    for address in PEOPLE:
        signup = Signup(address, None, "Europe/London", "2026-03-02T10:00", "clinic form")
        enroll(store, clinic, signup, now=NOW)
    first, second = clinic.steps[0].key, clinic.steps[1].key
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.step_key.in_([first, second]))
            .values(status="sent", sent_at=NOW)
        )
        for key, delivery_id in conn.execute(
            select(deliveries.c.step_key, deliveries.c.id).order_by(deliveries.c.id)
        ):
            by_step.setdefault(key, []).append(delivery_id)
    return by_step


def sendgrid(kind: str, delivery_id: int | None, n: int = 0, **extra) -> dict:
    item = {"event": kind, "timestamp": 1772800000 + n, "sg_event_id": f"{kind}-{delivery_id}-{n}"}
    if delivery_id is not None:
        item["delivery_id"] = str(delivery_id)
    return {**item, **extra}


def unsubscribe_one_click(store, delivery_id: int) -> None:
    with store.connect() as conn:
        row = conn.execute(
            select(deliveries.c.enrollment_id).where(deliveries.c.id == delivery_id)
        ).first()
        contact_id = conn.scalar(
            select(enrollments.c.contact_id).where(enrollments.c.id == row.enrollment_id)
        )
    token = Signer(store.secret_key()).token(
        UnsubscribeClaim(contact_id, "ketamine-and-sleep", delivery_id)
    )
    with TestClient(create_app(store, environ={})) as client:
        answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200


def test_per_step_counts_and_rates(store, clinic, sent):
    a, b, c, d = sent[clinic.steps[0].key]
    apply_sendgrid_events(
        store,
        [
            sendgrid("delivered", a),
            sendgrid("delivered", b),
            sendgrid("delivered", c),
            sendgrid("bounce", d, email="di@example.com"),
            sendgrid("open", a, 1),
            sendgrid("open", a, 2),  # one email opened twice is one open
            sendgrid("open", b),
            sendgrid("click", a),
            sendgrid("spamreport", c, email="cy@example.com"),
        ],
        now=utcnow(),
    )
    unsubscribe_one_click(store, b)

    result = campaign_stats(store, "ketamine-and-sleep")

    first = result.steps[0]
    assert first.key == clinic.steps[0].key
    assert (first.counts.sent, first.counts.delivered, first.counts.bounced) == (4, 3, 1)
    assert (first.counts.opened, first.counts.clicked) == (2, 1)
    assert (first.counts.unsubscribed, first.counts.complaints) == (1, 1)
    assert first.counts.basis == "delivered"
    rates = first.counts.rates()
    assert rates["opened"] == pytest.approx(2 / 3)
    assert rates["clicked"] == pytest.approx(1 / 3)
    assert rates["unsubscribed"] == pytest.approx(1 / 3)
    assert rates["complaints"] == pytest.approx(1 / 3)
    assert rates["bounced"] == pytest.approx(1 / 4)  # a bounce was never delivered: over sent
    # The second step reached nobody's webhook: its rates are over sent.
    assert result.steps[1].counts.sent == 4
    assert result.steps[1].counts.basis == "sent"
    assert [s.key for s in result.steps] == [s.key for s in clinic.steps]
    assert result.total.sent == 8


def test_unsubscribes_count_against_the_step_they_came_from(store, clinic, sent):
    second = sent[clinic.steps[1].key]
    unsubscribe_one_click(store, second[0])
    unsubscribe_one_click(store, second[0])  # the same link again: still one
    result = campaign_stats(store, "ketamine-and-sleep")
    assert [s.counts.unsubscribed for s in result.steps[:2]] == [0, 1]
    assert result.steps[1].counts.rates()["unsubscribed"] == pytest.approx(1 / 4)


def test_events_naming_no_delivery_count_at_campaign_level(store, clinic, sent):
    from campaigns.rendering.categories import campaign_category

    category = campaign_category("ketamine-and-sleep")
    apply_sendgrid_events(store, [sendgrid("open", None, category=[category, "s-x"])], now=utcnow())
    result = campaign_stats(store, "ketamine-and-sleep")
    assert result.campaign_level["opened"] == 1
    assert sum(s.counts.opened for s in result.steps) == 0
    assert result.total.opened == 1


def test_stats_command_prints_a_table_and_json(tmp_path, clinic_folder):
    db = str(tmp_path / "stats.db")
    runner = CliRunner()
    env = {"COLUMNS": "220"}
    enrolled = runner.invoke(
        cli_app,
        ["enroll", str(clinic_folder), "--email", "ana@example.com", "--db", db],
        env=env,
    )
    assert enrolled.exit_code == 0, enrolled.output
    table = runner.invoke(cli_app, ["stats", "ketamine-and-sleep", "--db", db], env=env)
    assert table.exit_code == 0, table.output
    assert "welcome" in table.stdout
    assert "campaign total" in table.stdout
    as_json = runner.invoke(cli_app, ["stats", "ketamine-and-sleep", "--json", "--db", db], env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["campaign"] == "ketamine-and-sleep"
    assert data["steps"][0]["step"] == "welcome"
    assert set(data["steps"][0]) >= {
        "sent",
        "delivered",
        "bounced",
        "opened",
        "clicked",
        "unsubscribed",
        "complaints",
        "rates",
        "basis",
    }
    unknown = runner.invoke(cli_app, ["stats", "no-such-campaign", "--db", db], env=env)
    assert unknown.exit_code == 2
    assert "no-such-campaign" in unknown.stderr


def step_column(table: str) -> str:
    """The `step` cells of a printed table, joined: what a reader sees once wrapping is undone."""
    return "".join(
        line.split("│")[2].strip() for line in table.splitlines() if line.startswith("│")
    )


def test_opens_and_clicks_a_sender_cannot_see_are_not_tracked_never_zero(store, clinic, sent):
    """The clinic campaign sends with the file sender: nobody could count an open, so the
    table and the JSON say "not tracked" instead of 0.0%; long step keys wrap whole."""
    runner = CliRunner()
    table = runner.invoke(
        cli_app, ["stats", "ketamine-and-sleep", "--db", store.url], env={"COLUMNS": "100"}
    )
    assert table.exit_code == 0, table.output
    assert "not tracked" in table.stdout
    assert "…" not in table.stdout
    for step in clinic.steps:
        assert step.key in step_column(table.stdout)
    as_json = runner.invoke(cli_app, ["stats", "ketamine-and-sleep", "--json", "--db", store.url])
    data = json.loads(as_json.stdout)
    first = data["steps"][0]
    assert first["sent"] == 4
    assert (first["opened"], first["clicked"]) == (None, None)
    assert (first["rates"]["opened"], first["rates"]["clicked"]) == (None, None)
    assert data["total"]["rates"]["opened"] is None
    assert data["not_tracked"] == ["opened", "clicked"]


def test_sendgrid_tracking_opens_shows_a_real_zero(store, clinic_folder, tmp_path):
    """With SendGrid tracking opens and its webhook reporting deliveries, no opens is 0%."""
    spec = clinic_folder / "campaign.yaml"
    text = spec.read_text(encoding="utf-8")
    file_sender = "sender:\n  type: file\n  outbox: outbox\n"
    assert file_sender in text
    spec.write_text(
        text.replace(file_sender, "sender:\n  type: sendgrid\n  track_opens: true\n"),
        encoding="utf-8",
    )
    enroll(store, load_folder(clinic_folder), Signup("ana@example.com", None, "Europe/London",
           "2026-03-02T10:00", "clinic form"), now=NOW)  # fmt: skip
    with store.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.position == 1).values(status="sent"))
        first = conn.scalar(select(deliveries.c.id).where(deliveries.c.position == 1))
    apply_sendgrid_events(store, [sendgrid("delivered", first)], now=utcnow())
    result = campaign_stats(store, "ketamine-and-sleep")
    assert result.untracked == ("clicked",)
    assert result.steps[0].counts.rates(result.untracked)["opened"] == 0.0
