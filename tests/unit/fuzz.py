"""What the fuzz tests (tests/unit/test_fuzz_*.py) share: their settings and the one outcome rule.

Every fuzz test runs a bounded number of small examples with a per-example deadline, so
the suite stays well under a minute; `.ci/run` exports CI=true, which Hypothesis reads to
run derandomised (the same examples on every run, no example database).

"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings

from campaigns.errors import DripmailError


def fuzz_settings(max_examples: int, deadline_ms: int = 2000) -> settings:
    """Explicit example count and deadline: the CI profile would leave the deadline off."""
    return settings(
        max_examples=max_examples,
        deadline=timedelta(milliseconds=deadline_ms),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or the project's own error; any other exception fails the test."""
    try:
        return call()
    except DripmailError as exc:
        return exc
