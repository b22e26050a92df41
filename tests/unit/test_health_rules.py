"""The automatic pause's and the alerts' rules, pure: counts in, a decision out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.authoring.error_rate import DEFAULT_MAX_ERROR_RATE, parse_error_rate
from campaigns.delivery.health_rules import (
    ALERT_EVERY,
    PauseKind,
    alert_due,
    error_verdict,
    events_verdict,
    last_outcomes,
    silent_for,
    unknown_piling,
)
from tests.helpers import utc

NOW = utc("2026-12-06T16:00")


def letters(sent: int = 0, failed: int = 0, unknown: int = 0) -> str:
    return "f" * failed + "u" * unknown + "s" * sent


# -- the error rate over the last 200 decided hand-offs -------------------------------------


def test_thirty_percent_failing_over_a_full_window_pauses_with_the_counts():
    why = error_verdict(letters(sent=140, failed=60), DEFAULT_MAX_ERROR_RATE)
    assert why is not None and why.kind is PauseKind.ERROR_RATE
    assert why.reason == (
        "60 failed of its last 200 emails handed to the sender (30%, above max_error_rate 10%)"
    )


def test_at_the_limit_it_goes_on_and_just_above_it_pauses():
    assert error_verdict(letters(sent=180, failed=20), 0.10) is None  # 10 %: not above
    assert error_verdict(letters(sent=179, failed=21), 0.10) is not None


def test_unknown_counts_as_an_error_with_failed():
    why = error_verdict(letters(sent=170, failed=10, unknown=20), 0.10)
    assert why is not None
    assert "10 failed and 20 unknown of its last 200" in why.reason


def test_a_small_sample_never_pauses():
    # Three failures out of the first ten sends is 30 %, but ten is no evidence.
    assert error_verdict(letters(sent=7, failed=3), 0.10) is None
    assert error_verdict(letters(sent=34, failed=15), 0.10) is None  # 49 decided
    assert error_verdict(letters(sent=35, failed=15), 0.10) is not None  # 50


def test_the_campaigns_own_limit_is_used():
    window = letters(sent=170, failed=30)  # 15 %
    assert error_verdict(window, 0.20) is None
    assert error_verdict(window, 0.10) is not None
    assert error_verdict(letters(failed=200), 1.0) is None  # 100 %: never pauses


def test_the_window_is_the_last_200_decided_newest_first_whatever_the_hand_off_size():
    # Newest hand-off first: 100 clean, then 100 clean, then an old one that failed badly.
    newest_first = [letters(sent=100), letters(sent=100), letters(failed=500)]
    window = last_outcomes(newest_first)
    assert window == "s" * 200
    assert error_verdict(window, 0.10) is None
    # One hand-off of 500 is cut to 200, failures first (the cautious side).
    assert last_outcomes([letters(sent=400, failed=100)]) == "f" * 100 + "s" * 100
    assert last_outcomes([None, "", "ss"]) == "ss"


# -- complaints and hard bounces -----------------------------------------------------------


def test_complaints_above_gmails_point_three_percent_pause():
    why = events_verdict(sent=2000, bounced=0, complained=7)  # 0.35 %
    assert why is not None and why.kind is PauseKind.COMPLAINT_RATE
    assert "7 spam complaints for 2000 emails" in why.reason and "0.3%" in why.reason
    assert events_verdict(sent=2000, bounced=0, complained=6) is None  # 0.30 %: not above


def test_one_complaint_out_of_three_sends_does_not_pause():
    assert events_verdict(sent=3, bounced=0, complained=1) is None
    assert events_verdict(sent=999, bounced=0, complained=10) is None  # below the sample


def test_hard_bounces_above_five_percent_pause_from_200_sent():
    why = events_verdict(sent=200, bounced=11, complained=0)
    assert why is not None and why.kind is PauseKind.BOUNCE_RATE
    assert "11 hard bounces for 200 emails" in why.reason
    assert events_verdict(sent=200, bounced=10, complained=0) is None  # 5 %: not above
    assert events_verdict(sent=199, bounced=50, complained=0) is None  # too few sent


def test_complaints_are_named_before_bounces_when_both_pass():
    why = events_verdict(sent=1000, bounced=100, complained=10)
    assert why is not None and why.kind is PauseKind.COMPLAINT_RATE


# -- alerts: unknown deliveries, silent workers, the hourly limit ---------------------------


def test_unknown_deliveries_pile_up_from_twenty():
    assert not unknown_piling(19)
    assert unknown_piling(20)


def test_a_worker_is_silent_five_minutes_past_its_interval():
    interval = timedelta(seconds=30)
    assert silent_for(NOW - timedelta(minutes=5), interval, NOW) is None
    quiet = silent_for(NOW - timedelta(minutes=7), interval, NOW)
    assert quiet == timedelta(minutes=7)
    # A worker ticking every 10 minutes is not silent 8 minutes after its last tick.
    assert silent_for(NOW - timedelta(minutes=8), timedelta(minutes=10), NOW) is None


def test_one_alert_per_kind_per_hour():
    assert alert_due(None, NOW)
    assert not alert_due(NOW, NOW)
    assert not alert_due(NOW - ALERT_EVERY + timedelta(seconds=1), NOW)
    assert alert_due(NOW - ALERT_EVERY, NOW)


# -- the campaign file's max_error_rate -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "rate"), [(0.1, 0.1), ("10%", 0.1), ("2.5 %", 0.025), (1, 1.0), ("0.2", 0.2)]
)
def test_max_error_rate_is_a_fraction_or_a_percentage(written, rate):
    assert parse_error_rate(written) == pytest.approx(rate)


@pytest.mark.parametrize("written", [0, -0.1, 1.5, "150%", "ten", True, None])
def test_max_error_rate_outside_zero_to_one_is_refused(written):
    with pytest.raises(ValueError):
        parse_error_rate(written)
