"""Choosing a sender by name, from the campaign file or `--sender`."""

from __future__ import annotations

from campaigns.authoring.sender_settings import (
    SENDER_TYPES,
    AnySenderSettings,
    FileSenderSettings,
    MailgunSenderSettings,
    NullSenderSettings,
    PostmarkSenderSettings,
    SesSenderSettings,
    SmtpSenderSettings,
    outbox,
    settings_for,
)
from campaigns.settings import Settings
from senders.base import Sender, SenderConfigurationError
from senders.file import FileSender, NullSender

NAMES = SENDER_TYPES
NEEDS_PUBLIC_URL = ("smtp", "sendgrid", "ses", "mailgun", "postmark")


def make_sender(
    name: str, config: AnySenderSettings | None = None, settings: Settings | None = None
) -> Sender:
    """A ready `name` sender; a misconfiguration raises SenderConfigurationError before any claim.

    It runs with the campaign's `config` when that is `name`'s (see `settings_for`) and the
    installation's `settings` (default: the environment's, read now), whose outbox
    (DRIPMAIL_OUTBOX, `run --outbox`) wins over the campaign's.
    """
    if name not in NAMES:
        raise SenderConfigurationError(
            f"unknown sender {name!r} (choose one of: {', '.join(NAMES)})"
        )
    config = settings_for(name, config)
    if isinstance(config, NullSenderSettings):
        return NullSender()
    settings = Settings.from_env() if settings is None else settings
    if isinstance(config, FileSenderSettings):
        return FileSender(outbox(config, settings))
    # Imported here, not at the top: the provider clients (the `sendgrid` package above
    # all) would otherwise load for every command, most of which never send.
    if isinstance(config, SmtpSenderSettings):
        from senders.smtp import SmtpSender

        return SmtpSender.from_settings(config, settings)
    if isinstance(config, SesSenderSettings):
        from senders.ses import SesSender

        return SesSender.from_settings(config, settings)
    if isinstance(config, MailgunSenderSettings):
        from senders.mailgun import MailgunSender

        return MailgunSender.from_settings(config, settings)
    if isinstance(config, PostmarkSenderSettings):
        from senders.postmark import PostmarkSender

        return PostmarkSender.from_settings(config, settings)
    from senders.sendgrid import SendGridSender

    return SendGridSender.from_settings(config, settings)
