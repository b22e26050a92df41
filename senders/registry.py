"""Choosing a sender by name, from the campaign file or `--sender`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Sender, SenderConfigurationError
from .file import FileSender, NullSender

NAMES = ("file", "null")


def make_sender(name: str, settings: Mapping[str, Any] | None = None) -> Sender:
    """A ready sender; a misconfiguration raises SenderConfigurationError before any claim."""
    settings = dict(settings or {})
    if name == "file":
        return FileSender(settings.get("outbox") or "outbox")
    if name == "null":
        return NullSender()
    raise SenderConfigurationError(f"unknown sender {name!r} (choose one of: {', '.join(NAMES)})")
