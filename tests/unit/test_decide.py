"""The dispatcher's rules over plain data: no database, no sender, no clock."""

from __future__ import annotations

from datetime import time, timedelta

from campaigns.delivery.decide import (
    Decision,
    DueRow,
    Going,
    Openings,
    Rules,
    Sibling,
    admit,
    decide,
    postpone,
)
from campaigns.planning.schedule import Window
from campaigns.storage.statuses import DeliveryStatus as S
from tests.helpers import utc

WINDOW = Window(time(9), time(17))  # every day, 09:00-17:00 UTC
RULES = Rules(WINDOW, frozenset({"one", "two", "three", "four"}))
NOW = utc("2026-03-02T15:00")  # inside the opening of 2 March
OPENING = utc("2026-03-02T09:00")
NEXT = utc("2026-03-03T09:00")
ME, OTHER = "worker-me", "worker-other"
STEPS = ("one", "two", "three", "four")


def row(
    delivery_id: int,
    position: int,
    *,
    enrollment: int = 1,
    due: str = "2026-03-02T14:00",
    email: str | None = "pat@example.com",
    step: str | None = None,
) -> DueRow:
    """A claimed row of contact `enrollment` (one enrollment per contact here)."""
    return DueRow(
        id=delivery_id,
        enrollment_id=enrollment,
        step_key=step or STEPS[position - 1],
        position=position,
        due_at=utc(due),
        attempts=0,
        contact_id=enrollment,
        email=email,
        first_name="Pat",
        timezone="UTC",
        campaign="sleep",
    )


def sibling(
    of: DueRow | None = None,
    *,
    delivery_id: int | None = None,
    position: int | None = None,
    status: str = S.CLAIMED,
    due: str = "2026-03-02T14:00",
    sent: str | None = None,
    owner: str | None = ME,
    enrollment: int = 1,
) -> Sibling:
    """One of the contact's deliveries as read back: `of` a claimed row, or another."""
    if of is not None:
        return Sibling(of.enrollment_id, of.id, of.position, S.CLAIMED, of.due_at, None, ME)
    return Sibling(
        enrollment,
        delivery_id,
        position,
        status,
        utc(due),
        utc(sent) if sent else None,
        owner if status == S.CLAIMED else None,
    )


def decide_now(rows: list[DueRow], history: dict, **options) -> Decision:
    return decide(
        rows,
        history,
        {("sleep", "UTC"): Openings.at(NOW, WINDOW, "UTC")},
        {"sleep": RULES},
        now=NOW,
        **options,
    )


def going(claimed: DueRow) -> Going:
    return Going(claimed, OPENING, NEXT)


# -- one email per contact per window opening -----------------------------------------


def test_one_email_per_contact_per_opening():
    mine, theirs = row(10, 2, enrollment=1), row(20, 1, enrollment=2)
    earlier = sibling(delivery_id=9, position=1, status=S.SENT, sent="2026-03-02T10:00")
    history = {1: [earlier, sibling(mine)], 2: [sibling(theirs)]}

    decision = decide_now([mine, theirs], history)

    # Contact 1 had an email at 10:00 in this opening: theirs waits for the next one.
    assert decision.going == [going(theirs)]
    assert decision.moves == {10: NEXT}
    assert decision.skips == [] and decision.unsure == {}


def test_an_email_in_an_earlier_opening_does_not_hold_one_back():
    claimed = row(10, 2)
    yesterday = sibling(delivery_id=9, position=1, status=S.SENT, sent="2026-03-01T16:59")
    decision = decide_now([claimed], {1: [yesterday, sibling(claimed)]})
    assert decision.going == [going(claimed)] and decision.moves == {}


def test_outside_the_window_nothing_goes_and_everything_moves_to_the_next_opening():
    claimed = row(10, 1)
    evening = utc("2026-03-02T18:00")
    decision = decide(
        [claimed],
        {1: [sibling(claimed)]},
        {("sleep", "UTC"): Openings.at(evening, WINDOW, "UTC")},
        {"sleep": RULES},
        now=evening,
    )
    assert decision.going == [] and decision.moves == {10: NEXT}


def test_on_part_of_the_rows_a_contact_whose_steps_must_move_is_left_unsure():
    claimed, alone = row(10, 2, enrollment=1), row(20, 1, enrollment=2)
    earlier = sibling(delivery_id=9, position=1, status=S.SENT, sent="2026-03-02T10:00")
    history = {1: [earlier, sibling(claimed)], 2: [sibling(alone)]}

    decision = decide_now([claimed, alone], history, complete=False)

    assert decision.going == [going(alone)]
    assert decision.unsure == {1: [claimed]} and decision.moves == {}


# -- overdue steps: one per opening, in order -------------------------------------------


def test_overdue_steps_go_one_per_opening_in_order():
    first = row(11, 1, due="2026-02-27T10:00")
    second = row(12, 2, due="2026-02-28T10:00")
    third = row(13, 3, due="2026-03-01T10:00")
    fourth = sibling(delivery_id=14, position=4, status=S.SCHEDULED, due="2026-03-04T10:00")
    history = {1: [sibling(first), sibling(second), sibling(third), fourth]}

    decision = decide_now([third, first, second], history)  # claimed in any order

    assert decision.going == [going(first)]
    assert decision.moves == {
        12: NEXT,
        13: utc("2026-03-04T09:00"),
        14: utc("2026-03-05T09:00"),  # its 4 March opening is taken by step 3
    }


def test_a_later_step_already_in_place_is_left_alone():
    claimed = row(10, 1)
    later = sibling(delivery_id=11, position=2, status=S.SCHEDULED, due="2026-03-06T10:00")
    decision = decide_now([claimed], {1: [sibling(claimed), later]})
    assert decision.going == [going(claimed)] and decision.moves == {}


# -- rows that are not sent at all --------------------------------------------------------


def test_erased_suppressed_and_removed_steps_are_skipped_with_a_reason():
    erased = row(10, 1, enrollment=1, email=None)
    suppressed = row(20, 1, enrollment=2, email="gone@example.com")
    removed = row(30, 1, enrollment=3, step="retired")
    decision = decide_now(
        [erased, suppressed, removed], {}, suppressed=frozenset({"gone@example.com"})
    )
    assert decision.skips == [
        (erased, "the contact was erased"),
        (suppressed, "the address is suppressed"),
        (removed, "the step was removed from the campaign"),
    ]
    assert decision.going == [] and decision.moves == {}


# -- min_gap, across campaigns -------------------------------------------------------------


def test_min_gap_holds_across_campaigns():
    claimed = row(10, 2)
    # Contact 1's last email, in whatever campaign: three hours ago.
    last_sent = {1: utc("2026-03-02T12:00")}

    admission = admit([going(claimed)], {}, last_sent, owner=ME, min_gap=timedelta(days=1), now=NOW)

    assert admission.allowed == []
    assert admission.waiting == [(going(claimed), utc("2026-03-03T12:00"))]
    later = {1: [sibling(delivery_id=11, position=3, status=S.SCHEDULED, due="2026-03-04T10:00")]}
    gapped = Rules(WINDOW, RULES.steps, timedelta(days=1))
    assert postpone(admission.waiting, later, gapped) == {
        10: utc("2026-03-03T12:00"),  # a day after the other campaign's email
        11: utc("2026-03-04T12:00"),  # a day after that
    }


def test_past_the_gap_or_without_one_an_email_goes():
    claimed = row(10, 2)
    yesterday = {1: utc("2026-03-01T12:00")}
    for gap, last_sent in ((timedelta(days=1), yesterday), (timedelta(0), {1: NOW})):
        admission = admit([going(claimed)], {}, last_sent, owner=ME, min_gap=gap, now=NOW)
        assert admission.allowed == [going(claimed)] and admission.waiting == []


# -- a blocked email moves on ---------------------------------------------------------------


def test_a_blocked_email_moves_on_with_its_later_steps():
    claimed = row(10, 2)
    # Another worker handed off this contact's step 1 at 10:00, in this opening.
    gone = sibling(delivery_id=9, position=1, status=S.SENT, sent="2026-03-02T10:00")

    admission = admit([going(claimed)], {1: [gone]}, {}, owner=ME, min_gap=timedelta(0), now=NOW)

    assert admission.allowed == [] and admission.waiting == [(going(claimed), None)]
    later = {
        1: [
            sibling(delivery_id=11, position=3, status=S.SCHEDULED, due="2026-03-03T10:00"),
            sibling(delivery_id=12, position=4, status=S.SCHEDULED, due="2026-03-09T10:00"),
        ]
    }
    assert postpone(admission.waiting, later, RULES) == {
        10: NEXT,
        11: utc("2026-03-04T09:00"),  # its own opening went to step 2
        12: utc("2026-03-09T10:00"),  # unchanged: already later
    }


def test_what_blocks_an_email_at_hand_off():
    claimed = row(10, 3)
    blocking = [
        sibling(delivery_id=1, position=1, status=S.CLAIMED, owner=OTHER),
        sibling(delivery_id=2, position=2, status=S.SCHEDULED, due="2026-03-02T14:59"),
        sibling(delivery_id=4, position=4, status=S.UNKNOWN, sent="2026-03-02T09:00"),
    ]
    harmless = [
        sibling(delivery_id=1, position=1, status=S.CLAIMED, owner=ME),
        sibling(delivery_id=2, position=2, status=S.SCHEDULED, due="2026-03-02T15:01"),
        sibling(delivery_id=4, position=4, status=S.SENT, sent="2026-03-02T08:59"),
        sibling(delivery_id=5, position=2, status=S.FAILED),
        sibling(claimed),  # itself
    ]
    for other in blocking:
        admission = admit(
            [going(claimed)], {1: [other]}, {}, owner=ME, min_gap=timedelta(0), now=NOW
        )
        assert admission.waiting == [(going(claimed), None)], other
    admission = admit([going(claimed)], {1: harmless}, {}, owner=ME, min_gap=timedelta(0), now=NOW)
    assert admission.allowed == [going(claimed)]
