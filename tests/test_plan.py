"""Live edits of a campaign with 1,000 enrolled contacts: plan's counts, then --apply."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from campaigns.authoring.spec import load_folder
from campaigns.planning import schedule
from campaigns.planning.edits import apply_edit, plan_edit
from campaigns.storage.publish import load_version
from campaigns.storage.tables import campaigns
from tests.helpers import utc
from tests.schedule_helpers import (
    GONE,
    bulk_signups,
    deliveries_by_contact,
    email_times,
    min_gap_of,
    tick,
    with_window,
)
from tests.unit.test_plan import insert_step, remove_step

NAME = "ketamine-and-sleep"
GAP = timedelta(hours=20)
START = utc("2026-03-01T00:00")
EDIT = utc("2026-03-11T00:00")  # the engine's now when the edits are planned and applied
PASSED = ("sending", "sent", "unknown", "failed", "skipped")
WINDOW = 'send_window:\n  start: "09:00"\n  end: "17:00"\n  min_gap: 20h\n'


def published_version(store) -> str:
    with store.connect() as conn:
        return conn.scalar(select(campaigns.c.version).where(campaigns.c.name == NAME))


def test_editing_a_live_campaign_of_1000_contacts(store, clinic_folder, tmp_path):
    campaign = with_window(clinic_folder, WINDOW)
    bulk_signups(store, campaign, tmp_path, 1000, START, timedelta(minutes=17), now=START)
    tick(store, START, EDIT, step=timedelta(hours=4))
    keys = [s.key for s in campaign.steps]
    before = deliveries_by_contact(store, NAME)
    assert sum(r.status == "sent" for rows in before.values() for r in rows) > 500

    # 1. Copy change of step 3: every pending step-3 email will use the new copy.
    third = clinic_folder / campaign.steps[2].file
    third.write_text(third.read_text() + "\nA new closing line.\n")
    expected = sum(
        r.step_key == keys[2] and r.status in ("scheduled", "claimed")
        for rows in before.values()
        for r in rows
    )
    assert 0 < expected < 1000
    version = published_version(store)
    planned = plan_edit(store, clinic_folder, now=EDIT)
    assert planned.copy == {keys[2]: expected} and planned.added == planned.removed == {}
    assert published_version(store) == version  # plan alone changes nothing
    applied = apply_edit(store, clinic_folder, now=EDIT)
    assert applied.applied and applied.copy == {keys[2]: expected}
    assert published_version(store) == load_folder(clinic_folder).version
    assert deliveries_by_contact(store, NAME) == before  # no row moved

    # 2. A step inserted in the middle (after step 3, 5 days after sign-up).
    insert_step(clinic_folder, campaign.steps[2].file, "03b-extra.md", "5d")
    later = set(keys[3:])  # steps at or after the new position
    passed = {
        contact
        for contact, rows in before.items()
        if any(r.step_key in later and r.status in PASSED for r in rows)
    }
    assert 0 < len(passed) < 1000
    planned = plan_edit(store, clinic_folder, now=EDIT)
    assert planned.added == {"extra": 1000 - len(passed)}
    assert planned.passed == {"extra": len(passed)}
    applied = apply_edit(store, clinic_folder, now=EDIT)
    assert applied.added == {"extra": 1000 - len(passed)}
    after = deliveries_by_contact(store, NAME)
    window = load_folder(clinic_folder).window
    first_opening = {}
    for contact, rows in after.items():
        extra = [r for r in rows if r.step_key == "extra"]
        assert bool(extra) == (contact not in passed), "a contact got a step they had passed"
        if not extra:
            continue
        (row,) = extra
        tz = schedule.zone(row.timezone)
        first_opening.setdefault(row.timezone, schedule.next_opening(EDIT, window, tz))
        assert row.position == 4 and row.status == "scheduled"
        assert row.due_at >= schedule.add_delay(row.signed_up_at, schedule.parse_delay("5d"), tz)
        assert row.due_at >= first_opening[row.timezone]  # never "now", in a burst
        assert schedule.opening_containing(row.due_at, window, tz) is not None
        pending = [r for r in rows if r.status == "scheduled"]
        assert [r.due_at for r in pending] == sorted(r.due_at for r in pending)  # step order
        assert min_gap_of(email_times(rows)) is None or min_gap_of(email_times(rows)) >= GAP

    # 3. A step removed: its pending emails are cancelled, nothing else.
    removed = keys[4]
    expected = sum(
        r.step_key == removed and r.status == "scheduled" for rows in after.values() for r in rows
    )
    assert expected > 0
    remove_step(clinic_folder, campaign.steps[4].file)
    planned = plan_edit(store, clinic_folder, now=EDIT)
    assert planned.removed == {removed: expected} and planned.added == {}
    apply_edit(store, clinic_folder, now=EDIT)
    final = deliveries_by_contact(store, NAME)
    assert (
        sum(
            r.step_key == removed and r.status == "cancelled"
            for rows in final.values()
            for r in rows
        )
        == expected
    )
    with store.connect() as conn:
        assert [s.key for s in load_version(conn, NAME).steps] == [
            keys[0],
            keys[1],
            keys[2],
            "extra",
            keys[3],
            keys[5],
        ]

    # Then the rest of the sequence goes out: nobody gets a passed or removed step,
    # and no two emails to one contact come closer than min_gap.
    tick(store, EDIT, EDIT + timedelta(days=24), step=timedelta(hours=6))
    done = deliveries_by_contact(store, NAME)
    for contact, rows in done.items():
        statuses = {r.step_key: r.status for r in rows}
        assert statuses.get(removed) in (None, "sent", "cancelled", "unknown", "failed", "skipped")
        if contact in passed:
            assert "extra" not in statuses
        sent = sorted(r.sent_at for r in rows if r.status in GONE)
        gap = min_gap_of(sent)
        assert gap is None or gap >= GAP, (contact, sent)
        assert all(r.status != "scheduled" for r in rows)
        # Every step of the contact went in order of position.
        by_time = [
            r.position
            for r in sorted((r for r in rows if r.status in GONE), key=lambda r: r.sent_at)
        ]
        assert by_time == sorted(by_time)


def test_a_delay_change_replans_pending_never_into_the_past(store, clinic_folder, tmp_path):
    campaign = with_window(clinic_folder, WINDOW)
    bulk_signups(store, campaign, tmp_path, 40, START, timedelta(hours=7), now=START)
    tick(store, START, EDIT, step=timedelta(hours=4))
    key = campaign.steps[5].key
    pending = sum(
        r.step_key == key and r.status == "scheduled"
        for rows in deliveries_by_contact(store, NAME).values()
        for r in rows
    )
    path = clinic_folder / "campaign.yaml"
    path.write_text(path.read_text().replace("delay: 14d", "delay: 3d"))
    planned = plan_edit(store, clinic_folder, now=EDIT)
    assert planned.replanned == {key: pending} and pending > 0
    apply_edit(store, clinic_folder, now=EDIT)
    for rows in deliveries_by_contact(store, NAME).values():
        for r in rows:
            if r.status == "scheduled":
                assert r.due_at >= EDIT
        assert min_gap_of(email_times(rows)) is None or min_gap_of(email_times(rows)) >= GAP


def test_plan_cli_prints_counts_and_changes_nothing_without_apply(store, clinic_folder, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    campaign = with_window(clinic_folder, WINDOW)
    bulk_signups(store, campaign, tmp_path, 10, START, timedelta(hours=1), now=START)
    remove_step(clinic_folder, campaign.steps[5].file)
    version = published_version(store)
    result = CliRunner().invoke(
        app, ["plan", str(clinic_folder), "--db", store.url, "--now", "2026-03-02T00:00"]
    )
    assert result.exit_code == 0, result.output
    assert f"step removed   {campaign.steps[5].key}: 10 pending emails cancelled" in result.output
    assert "not applied yet: run again with --apply" in result.output
    assert published_version(store) == version
    result = CliRunner().invoke(
        app, ["plan", str(clinic_folder), "--apply", "--db", store.url, "--now", "2026-03-02T00:00"]
    )
    assert result.exit_code == 0 and "applied" in result.output
    assert published_version(store) != version
    bad = CliRunner().invoke(app, ["plan", str(tmp_path / "nowhere"), "--db", store.url])
    assert bad.exit_code == 2 and "no such campaign folder" in bad.output
