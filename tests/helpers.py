"""Small helpers shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(text: str) -> datetime:
    """An ISO time; without an offset it is UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
