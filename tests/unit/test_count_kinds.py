"""Migration 0024's map of event types to counted kinds is the statistics' columns."""

from __future__ import annotations

import importlib.util

from campaigns.reporting.stats import COLUMNS
from campaigns.storage.store import MIGRATIONS


def test_the_counted_kinds_are_the_statistics_columns_and_the_bounce_alert():
    path = next((MIGRATIONS / "versions").glob("*_console_counts.py"))
    spec = importlib.util.spec_from_file_location("console_counts", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    kinds: dict[str, set[str]] = {}
    for type_, kind in migration.KINDS:
        kinds.setdefault(kind, set()).add(type_)
    assert kinds == {
        **{column: set(types) for column, types in COLUMNS.items()},
        "bounced_any": {"bounced_hard", "bounced_soft"},  # the dashboard's bounce alert
    }
