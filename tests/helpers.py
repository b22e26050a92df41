"""Small helpers shared by tests."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def utc(text: str) -> datetime:
    """An ISO time; without an offset it is UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def spamassassin(eml: Path) -> tuple[float, str]:
    """SpamAssassin's score for one message, local rules only (`spamassassin -L -t`)."""
    result = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=eml.read_bytes(),
        capture_output=True,
        timeout=300,
        check=True,
    )
    report = result.stdout.decode("utf-8", "replace")
    score = re.search(r"^X-Spam-Status: \w+, score=(-?\d+\.\d+)", report, flags=re.M)
    assert score, report[:2000]
    return float(score.group(1)), report
