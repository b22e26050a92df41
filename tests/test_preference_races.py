"""Two presses of one preference-centre button at once (a double click, or two `serve`
processes): the choice is made once, on SQLite and PostgreSQL (review 1, finding 3)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.compliance import preferences
from campaigns.storage.tables import events
from tests.test_preference_centre import pending
from tests.test_unsubscribe import NOW, enroll_pat, token_for


def at_once(action: Callable[[], preferences.Change], times: int = 2) -> list[bool]:
    """`action` run by `times` threads released together; whether each changed anything."""
    barrier = threading.Barrier(times)
    changed: list[bool] = []
    errors: list[BaseException] = []

    def press() -> None:
        barrier.wait()
        try:
            changed.append(action().changed)
        except BaseException as error:  # reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=press) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return sorted(changed)


def kinds(store) -> list[str]:
    with store.connect() as conn:
        return list(conn.scalars(select(events.c.type).order_by(events.c.id)))


@pytest.mark.parametrize("attempt", range(3))
def test_a_double_click_on_pause_a_month_pauses_once(store, clinic, attempt):
    _token, claim = token_for(store, enroll_pat(store, clinic))
    before = pending(store, claim.contact_id)

    changed = at_once(lambda: preferences.pause(store, claim, "1m", now=NOW))

    assert changed == [False, True]
    after = pending(store, claim.contact_id)
    assert {after[i] - due for i, due in before.items()} == {timedelta(weeks=4)}
    assert kinds(store) == ["pref_paused"]


@pytest.mark.parametrize(
    "choose, kind",
    [
        (
            lambda store, claim: preferences.discreet(store, claim, True, now=NOW),
            "pref_discreet_on",
        ),
        (lambda store, claim: preferences.fewer(store, claim, True, now=NOW), "pref_fewer_on"),
    ],
    ids=["discreet", "fewer"],
)
def test_a_double_click_on_a_switch_records_one_change(store, clinic, choose, kind):
    _token, claim = token_for(store, enroll_pat(store, clinic))

    changed = at_once(lambda: choose(store, claim))

    assert changed == [False, True]
    assert kinds(store) == [kind]


def test_a_double_click_on_resume_now_brings_the_emails_back_once(store, clinic):
    _token, claim = token_for(store, enroll_pat(store, clinic))
    before = pending(store, claim.contact_id)
    preferences.pause(store, claim, "1m", now=NOW)
    later = NOW + timedelta(days=1)

    changed = at_once(lambda: preferences.resume(store, claim, now=later))

    assert changed == [False, True]
    after = pending(store, claim.contact_id)
    assert {after[i] - due for i, due in before.items()} == {timedelta(days=1)}
    assert kinds(store) == ["pref_paused", "pref_resumed"]
