"""Helpers for tests whose processes loop on the real clock (`dripmail run` without
`--once`): the campaign's window open all day and a zone away from midnight, so the
result never depends on the hour or the day the suite runs (CI runs at any hour)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from tests.conftest import write_clinic_campaign


def open_zone() -> str:
    """A zone where it is not near midnight now, so a 00:00-23:59 window is open."""
    for name in ("UTC", "Asia/Tokyo", "America/New_York"):
        hour = datetime.now(UTC).astimezone(ZoneInfo(name)).hour
        if 1 <= hour <= 21:
            return name
    raise AssertionError("no zone away from midnight")


def always_open_campaign(folder: Path) -> Path:
    """The clinic campaign, its window open all day every day."""
    write_clinic_campaign(folder)
    spec_file = folder / "campaign.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec["send_window"] = {"start": "00:00", "end": "23:59"}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder
