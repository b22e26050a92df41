"""What a sender's results mean for the rows, over plain data: no database, no sender."""

from __future__ import annotations

from datetime import time, timedelta

from campaigns.delivery.decide import DueRow
from campaigns.delivery.outcomes import Ended, Outcomes, classify
from campaigns.planning.schedule import Window
from senders.base import Outcome, SendResult
from tests.helpers import utc

WINDOW = Window(time(9), time(17))  # every day, 09:00-17:00 UTC
NOW = utc("2026-03-02T15:00")  # engine time
REAL_NOW = utc("2026-11-29T08:00")  # the machine's clock: a provider's retry time is on it


def row(delivery_id: int, attempts: int = 0) -> DueRow:
    """A row as claimed: `attempts` made before this hand-off."""
    return DueRow(
        delivery_id, 1, "one", 1, NOW, attempts, 1, "pat@example.com", "Pat", "UTC", "sleep"
    )


def classify_now(
    results: list[SendResult], rows: list[DueRow], *, now=NOW, max_attempts: int = 5
) -> Outcomes:
    return classify(
        results,
        {str(r.id): r for r in rows},
        window=WINDOW,
        max_attempts=max_attempts,
        now=now,
        real_now=REAL_NOW,
    )


def test_results_are_grouped_by_what_must_be_recorded():
    results = [
        SendResult("1", Outcome.SENT, provider_id="msg-1"),
        SendResult("2", Outcome.AMBIGUOUS, error="the connection dropped"),
        SendResult("3", Outcome.PERMANENT, error="550 no such mailbox"),
        SendResult("4", Outcome.TRANSIENT, error="421 try later"),
        SendResult("5", Outcome.SENT),
    ]
    outcomes = classify_now(results, [row(i) for i in range(1, 6)])
    assert outcomes == Outcomes(
        sent=[Ended(1, 0, provider_id="msg-1"), Ended(5, 0)],
        failed=[Ended(3, 0, error="550 no such mailbox")],
        unknown=[Ended(2, 0, error="the connection dropped")],
        retry=[Ended(4, 0, error="421 try later", due=NOW + timedelta(minutes=5))],
    )


def test_in_run_retries_count_as_attempts_beyond_the_one_sending_counted():
    outcomes = classify_now(
        [SendResult("1", Outcome.SENT, provider_id="x", attempts=3)], [row(1, attempts=2)]
    )
    assert outcomes.sent == [Ended(1, 2, provider_id="x")]


def test_a_transient_failure_backs_off_exponentially_until_the_attempts_run_out():
    results = [SendResult(str(i), Outcome.TRANSIENT, error="429") for i in range(1, 4)]
    outcomes = classify_now(results, [row(1, 0), row(2, 2), row(3, 4)])
    # Attempts after this one: 1 and 3 wait 5 and 20 minutes; the fifth fails for good.
    assert [(e.id, e.due) for e in outcomes.retry] == [
        (1, NOW + timedelta(minutes=5)),
        (2, NOW + timedelta(minutes=20)),
    ]
    assert outcomes.failed == [Ended(3, 0, error="429")]


def test_a_retry_waits_at_least_as_long_as_the_provider_asked_on_its_own_clock():
    asked = SendResult("1", Outcome.TRANSIENT, error="429", retry_at=REAL_NOW + timedelta(hours=1))
    sooner = SendResult("2", Outcome.TRANSIENT, error="429", retry_at=REAL_NOW)
    outcomes = classify_now([asked, sooner], [row(1), row(2)])
    assert [e.due for e in outcomes.retry] == [
        NOW + timedelta(hours=1),
        NOW + timedelta(minutes=5),  # the backoff, when longer
    ]


def test_a_retry_that_would_fall_outside_the_window_waits_for_the_next_opening():
    outcomes = classify_now(
        [SendResult("1", Outcome.TRANSIENT, error="421")], [row(1)], now=utc("2026-03-02T16:58")
    )
    assert outcomes.retry == [Ended(1, 0, error="421", due=utc("2026-03-03T09:00"))]


def test_the_answers_the_metrics_count_add_up_to_the_results_by_class():
    results = [
        SendResult("1", Outcome.SENT, provider_id="msg-1"),
        SendResult("2", Outcome.SENT, provider_id="msg-2"),
        SendResult("3", Outcome.AMBIGUOUS, error="the connection dropped"),
        SendResult("4", Outcome.PERMANENT, error="550 no such mailbox"),
        SendResult("5", Outcome.TRANSIENT, error="503 try later"),
        # A 429 that named its reset time: rate limited, goes again then.
        SendResult("6", Outcome.TRANSIENT, error="429", retry_at=REAL_NOW + timedelta(hours=1)),
        # Out of attempts: failed, whatever the provider said.
        SendResult("7", Outcome.TRANSIENT, error="429", retry_at=REAL_NOW),
    ]
    rows = [row(i) for i in range(1, 7)] + [row(7, attempts=4)]
    answers = classify_now(results, rows).answers()
    assert answers == {"sent": 2, "unknown": 1, "failed": 2, "retried": 1, "rate_limited": 1}
    assert sum(answers.values()) == len(results)
    assert classify_now([], []).answers() == {}
