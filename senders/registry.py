"""Choosing a sender by name, from the campaign file or `--sender`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .base import Sender, SenderConfigurationError
from .file import FileSender, NullSender

NAMES = ("file", "null", "smtp", "sendgrid")
NEEDS_PUBLIC_URL = ("smtp", "sendgrid")


def make_sender(
    name: str, settings: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Sender:
    """A ready sender; a misconfiguration raises SenderConfigurationError before any claim."""
    settings = dict(settings or {})
    environ = os.environ if environ is None else environ
    if name == "file":
        return FileSender(settings.get("outbox") or "outbox")
    if name == "null":
        return NullSender()
    if name == "smtp":
        from .smtp import SmtpSender

        return SmtpSender.from_settings(settings, environ)
    if name == "sendgrid":
        from .sendgrid import SendGridSender

        return SendGridSender.from_settings(settings, environ)
    raise SenderConfigurationError(f"unknown sender {name!r} (choose one of: {', '.join(NAMES)})")
