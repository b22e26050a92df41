"""A patient's own pace (planning/pace.py) and how the dispatcher's rules honour it:
a pause until an instant, and "fewer emails". Plain data: no database, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

from campaigns.authoring.spec import Campaign
from campaigns.delivery.decide import Going, Openings, Rules, admit, decide, postpone
from campaigns.planning.pace import NO_PACE, Pace
from campaigns.planning.plans import plan
from tests.helpers import utc
from tests.unit import test_decide as d

WEEK = timedelta(days=7)
PAUSED_UNTIL = utc("2026-04-02T12:30")  # inside the 2 April opening (09:00-17:00 UTC)


def paced(row, *, paused_until=None, min_gap_days=None):
    return replace(row, paused_until=paused_until, min_gap_days=min_gap_days)


# -- the rule itself -----------------------------------------------------------------


def test_the_larger_gap_wins_the_campaigns_or_the_patients():
    assert Pace(min_gap_days=7).gap(timedelta(days=2)) == WEEK
    assert Pace(min_gap_days=1).gap(timedelta(days=3)) == timedelta(days=3)
    assert NO_PACE.gap(timedelta(hours=36)) == timedelta(hours=36)
    assert NO_PACE.gap() == timedelta(0) and not NO_PACE.chosen


def test_a_pause_holds_until_its_end_and_no_longer():
    pace = Pace(paused_until=PAUSED_UNTIL)
    assert pace.paused(PAUSED_UNTIL - timedelta(seconds=1))
    assert not pace.paused(PAUSED_UNTIL)
    assert pace.not_before(utc("2026-03-02T09:00")) == PAUSED_UNTIL
    assert pace.not_before(utc("2026-05-01T09:00")) == utc("2026-05-01T09:00")
    assert NO_PACE.not_before(None) is None


def test_the_notes_say_why_an_email_waits():
    pace = Pace(paused_until=PAUSED_UNTIL, min_gap_days=7)
    assert pace.notes(d.NOW) == [
        "paused by the patient until 2026-04-02 12:30 UTC",
        "fewer emails: 7 days between emails",
    ]
    # Over: only the gap is left to say.
    assert pace.notes(utc("2026-04-03T09:00")) == ["fewer emails: 7 days between emails"]
    assert Pace(min_gap_days=1).notes(d.NOW) == ["fewer emails: 1 day between emails"]


# -- decide: a paused contact gets nothing, their steps move past the pause ----------


def test_a_paused_contacts_steps_move_past_the_pause_one_per_opening():
    first = paced(d.row(10, 1), paused_until=PAUSED_UNTIL)
    second = d.sibling(delivery_id=11, position=2, status="scheduled", due="2026-03-03T10:00")
    other = d.row(20, 1, enrollment=2)  # not paused: goes as ever
    history = {1: [d.sibling(first), second], 2: [d.sibling(other)]}

    decision = d.decide_now([first, other], history)

    assert decision.going == [d.going(other)]
    # Step 1 at the pause's end (the window is open then), step 2 at the next opening.
    assert decision.moves == {10: PAUSED_UNTIL, 11: utc("2026-04-03T09:00")}


def test_on_part_of_the_rows_a_paused_contact_is_decided_again_with_all_of_them():
    first = paced(d.row(10, 1), paused_until=PAUSED_UNTIL)
    decision = d.decide_now([first], {1: [d.sibling(first)]}, complete=False)
    assert decision.going == [] and decision.unsure == {1: [first]}


def test_a_pause_that_ended_holds_nothing_back():
    claimed = paced(d.row(10, 1), paused_until=d.NOW - timedelta(minutes=1))
    decision = d.decide_now([claimed], {1: [d.sibling(claimed)]})
    assert decision.going == [d.going(claimed)] and decision.moves == {}


def test_a_pause_ending_at_night_moves_to_the_next_morning():
    claimed = paced(d.row(10, 1), paused_until=utc("2026-04-02T20:00"))
    decision = decide(
        [claimed],
        {1: [d.sibling(claimed)]},
        {("sleep", "UTC"): Openings.at(d.NOW, d.WINDOW, "UTC")},
        {"sleep": d.RULES},
        now=d.NOW,
    )
    assert decision.moves == {10: utc("2026-04-03T09:00")}


# -- admit: "fewer emails" across campaigns, one per opening after a pause ------------


def test_fewer_emails_holds_an_email_until_a_week_after_the_last_one():
    claimed = paced(d.row(10, 2), min_gap_days=7)
    last = {1: utc("2026-02-27T10:00")}  # three days ago, in another campaign
    admission = admit([d.going(claimed)], {}, last, owner=d.ME, min_gap=timedelta(0), now=d.NOW)
    assert admission.allowed == []
    assert admission.waiting == [(d.going(claimed), utc("2026-03-06T10:00"))]
    # Its later steps move on after it, a week apart.
    later = {1: [d.sibling(delivery_id=11, position=3, status="scheduled", due="2026-03-04T10:00")]}
    assert postpone(admission.waiting, later, d.RULES) == {
        10: utc("2026-03-06T10:00"),
        11: utc("2026-03-13T10:00"),
    }


def test_without_a_gap_of_their_own_the_contact_gets_the_campaigns_timing():
    claimed = d.row(10, 2)
    last = {1: utc("2026-02-27T10:00")}
    admission = admit([d.going(claimed)], {}, last, owner=d.ME, min_gap=timedelta(0), now=d.NOW)
    assert admission.allowed == [d.going(claimed)]


def test_the_campaigns_gap_wins_when_it_is_the_larger():
    claimed = paced(d.row(10, 2), min_gap_days=1)
    last = {1: utc("2026-03-01T10:00")}
    admission = admit(
        [d.going(claimed)], {}, last, owner=d.ME, min_gap=timedelta(days=3), now=d.NOW
    )
    assert admission.waiting == [(d.going(claimed), utc("2026-03-04T10:00"))]


def test_after_a_pause_one_email_per_opening_across_campaigns():
    back = paced(d.row(10, 1), paused_until=utc("2026-03-02T09:00"))
    earlier_today = {1: utc("2026-03-02T09:00")}  # another campaign's, in this opening
    admission = admit(
        [d.going(back)], {}, earlier_today, owner=d.ME, min_gap=timedelta(0), now=d.NOW
    )
    assert admission.waiting == [(d.going(back), None)]  # the next opening
    yesterday = {1: utc("2026-03-01T16:00")}
    admission = admit([d.going(back)], {}, yesterday, owner=d.ME, min_gap=timedelta(0), now=d.NOW)
    assert admission.allowed == [d.going(back)]


def test_within_one_chunk_the_gap_counts_the_email_just_allowed():
    first = paced(d.row(10, 1), min_gap_days=7)
    again = replace(first, id=30, enrollment_id=3)  # the same contact, another campaign
    chunk = [d.going(first), Going(again, d.OPENING, d.NEXT)]
    admission = admit(chunk, {}, {}, owner=d.ME, min_gap=timedelta(0), now=d.NOW)
    assert admission.allowed == [d.going(first)]
    assert admission.waiting == [(chunk[1], d.NOW + WEEK)]


# -- planning: new sign-ups of a paused or paced contact --------------------------------


def test_a_sign_up_while_paused_is_planned_from_the_end_of_the_pause(clinic: Campaign):
    signed_up = utc("2026-03-02T10:00")
    due = plan(clinic, signed_up, "UTC", pace=Pace(paused_until=PAUSED_UNTIL))
    assert due[0] >= PAUSED_UNTIL
    assert all(b - a >= timedelta(hours=1) for a, b in pairwise(due))
    openings = {(at.date()) for at in due}
    assert len(openings) == len(due)  # nothing flooded: one per opening


def test_a_sign_up_with_fewer_emails_is_planned_a_week_apart(clinic: Campaign):
    due = plan(clinic, utc("2026-03-02T10:00"), "UTC", pace=Pace(min_gap_days=7))
    assert all(b - a >= WEEK for a, b in pairwise(due))


def test_rules_of_a_campaign_are_unchanged_by_pace(clinic: Campaign):
    assert Rules.of(clinic).min_gap == clinic.min_gap
