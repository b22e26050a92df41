"""Alerts to staff: always logged, emailed to DRIPMAIL_ALERT_TO at most once per kind an hour.

Kinds: a campaign paused by itself, `unknown` deliveries piling up, a worker gone
silent, a provider refusing its key. The hourly limit is per kind, as the issue asks
(a second campaign pausing within the hour is logged and shown by `dripmail status`,
not emailed again); it is a conditional update of the kind's row in the `alerts`
table, so it holds across workers, processes and restarts. An alert email carries no
patient data: counts, a campaign name, what to do.

How it goes: through DRIPMAIL_ALERT_SMTP_URL when set (`smtp://user:password@host:587`
with STARTTLS when the server offers it, `smtps://host:465` for implicit TLS; From is
DRIPMAIL_ALERT_FROM, else `dripmail@<this host>`); otherwise through the campaign's own
sender (from its From address), or any active campaign's for an alert about no campaign.
Sending an alert never stops sending: every failure is logged, never raised.
"""

from __future__ import annotations

import enum
import html
import logging
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from campaigns.authoring.spec import Campaign
from campaigns.delivery.health_rules import PauseReason, alert_due
from campaigns.delivery.sender_pool import SenderPool
from campaigns.settings import Settings
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import CampaignStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import alerts, campaigns
from senders.base import Message, Outcome

log = logging.getLogger("dripmail.alerts")

SUBJECT_PREFIX = "[dripmail] "


class AlertKind(enum.StrEnum):
    """What an alert is about (the `alerts.kind` key of its hourly limit)."""

    AUTO_PAUSE = "auto_pause"
    UNKNOWN_PILING = "unknown_piling"
    WORKER_SILENT = "worker_silent"
    PROVIDER_REFUSED = "provider_refused"


@dataclass(frozen=True)
class Alert:
    """One alert: its kind, a subject line, and a body with counts and what to do."""

    kind: AlertKind
    subject: str
    body: str
    campaign: str | None = None  # the campaign it is about (its sender may carry it)


def paused_alert(campaign: str, why: PauseReason, at: datetime) -> Alert:
    """The alert for a campaign the engine paused by itself."""
    return Alert(
        AlertKind.AUTO_PAUSE,
        f"campaign {campaign} paused itself: {why.kind.value.replace('_', ' ')} too high",
        f"dripmail paused campaign {campaign} by itself at {at:%Y-%m-%d %H:%M} UTC.\n\n"
        f"Why: {why.reason}.\n\n"
        "Its pending emails wait: nothing more of this campaign is sent until a person\n"
        "resumes it. Other campaigns keep sending.\n\n"
        "What to do:\n"
        f"1. Look: dripmail status {campaign}, dripmail stats {campaign}, and the\n"
        "   provider's activity log (why it refused, bounced or was marked as spam).\n"
        "2. Fix the cause: the sender's settings, the list, or the content.\n"
        f"3. Resume: dripmail resume {campaign}",
        campaign,
    )


def refused_alert(campaign: str | None, problem: str) -> Alert:
    """The alert for a provider refusing its key (or a sender that cannot work at all)."""
    which = f"campaign {campaign}" if campaign else "every campaign"
    return Alert(
        AlertKind.PROVIDER_REFUSED,
        f"the sender of {which} cannot send",
        f"The sender of {which} refused to work: {problem}\n\n"
        "Nothing was marked sent or failed: its due emails wait.\n\n"
        "What to do: check the key or password in the environment file of the service\n"
        "(and that the provider has not revoked it), then restart the worker;\n"
        "dripmail doctor checks each campaign's sender.",
        campaign,
    )


class Alerter:
    """Raises alerts for one process: logs each, emails it when its kind's hour is free.

    `clock` is the real clock (tests pass a fixed one, or `now=` to `raise_`).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings or store.settings
        self.clock = clock

    def raise_(self, alert: Alert, *, now: datetime | None = None) -> bool:
        """Log the alert, and email it unless one of its kind went within the hour.

        True when it was emailed. Never raises: a failure is logged.
        """
        now = now or self.clock()
        log.warning("alert %s: %s", alert.kind.value, alert.subject)
        try:
            with self.store.begin() as conn:
                free, held_back = claim(conn, alert, now=now)
        except Exception as exc:  # an alert never stops sending
            log.error("alert %s: could not be recorded (%s)", alert.kind.value, _short(exc))
            return False
        if not free:
            log.info("alert %s: one was emailed within the hour; logged only", alert.kind.value)
            return False
        recipients = self.settings.alert_recipients
        if not recipients:
            log.warning("alert %s: not emailed: DRIPMAIL_ALERT_TO is not set", alert.kind.value)
            return False
        body = alert.body
        if held_back:
            more = "alert" if held_back == 1 else "alerts"
            body += (
                f"\n\n{held_back} more {more} of this kind were raised in the last hour "
                "and only logged: see dripmail status and the log."
            )
        body += "\n\n-- \nAt most one alert of each kind is emailed per hour.\n"
        try:
            self._deliver(alert, body, recipients, now=now)
        except Exception as exc:
            log.error("alert %s: could not be emailed (%s)", alert.kind.value, _short(exc))
            return False
        log.info("alert %s: emailed (%d addresses)", alert.kind.value, len(recipients))
        return True

    def _deliver(
        self, alert: Alert, body: str, recipients: tuple[str, ...], *, now: datetime
    ) -> None:
        subject = SUBJECT_PREFIX + alert.subject
        if self.settings.alert_smtp_url is not None:
            send_smtp(
                self.settings.alert_smtp_url.get_secret_value(),
                self.settings.alert_from or f"dripmail@{socket.getfqdn()}",
                recipients,
                subject,
                body,
                now=now,
            )
            return
        with self.store.connect() as conn:
            campaign = _campaign_for(conn, alert.campaign)
        if campaign is None:
            raise RuntimeError("no DRIPMAIL_ALERT_SMTP_URL and no campaign whose sender to use")
        pool = SenderPool(None, self.settings)
        try:
            sender = pool(campaign)
            spec = campaign.spec
            messages = [
                Message(
                    delivery_id=f"alert-{secrets.token_hex(6)}",
                    from_name=f"dripmail ({spec.from_.name})",
                    from_address=spec.from_.address,
                    to_address=address,
                    to_name=None,
                    subject=subject,
                    preheader=None,
                    html=f"<pre>{html.escape(body)}</pre>",
                    text=body,
                    date=now,
                )
                for address in recipients
            ]
            for result in sender.send(messages):
                if result.outcome is not Outcome.SENT:
                    raise RuntimeError(f"the {sender.name} sender answered {result.outcome}")
        finally:
            pool.close()


def claim(conn: Connection, alert: Alert, *, now: datetime) -> tuple[bool, int]:
    """Take the kind's hourly slot: (True, alerts held back since the last email) when it
    is free, else (False, 0) with this one counted as held back.

    A conditional update (or the first insert) is the lock: of two workers raising one
    kind at once, exactly one wins.
    """
    row = conn.execute(select(alerts).where(alerts.c.kind == alert.kind.value)).first()
    if row is None:
        if _insert_new(conn, alert, now):
            return True, 0
        row = conn.execute(select(alerts).where(alerts.c.kind == alert.kind.value)).one()
    if alert_due(row.sent_at, now):
        won = conn.execute(
            update(alerts)
            .where(alerts.c.kind == alert.kind.value, alerts.c.sent_at == row.sent_at)
            .values(sent_at=now, raised_at=now, held_back=0, subject=alert.subject)
        ).rowcount
        if won:
            return True, row.held_back
    conn.execute(
        update(alerts)
        .where(alerts.c.kind == alert.kind.value)
        .values(raised_at=now, held_back=alerts.c.held_back + 1)
    )
    return False, 0


def _insert_new(conn: Connection, alert: Alert, now: datetime) -> bool:
    values = {
        "kind": alert.kind.value,
        "sent_at": now,
        "raised_at": now,
        "held_back": 0,
        "subject": alert.subject,
    }
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        statement = module.insert(alerts).values(**values).on_conflict_do_nothing()
        return conn.execute(statement.returning(alerts.c.kind)).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(alerts).values(**values))
    except IntegrityError:
        return False
    return True


def _campaign_for(conn: Connection, name: str | None) -> Campaign | None:
    """The campaign whose sender carries an alert: its own, else the first active one."""
    if name is None:
        name = conn.scalar(
            select(campaigns.c.name)
            .where(campaigns.c.status == CampaignStatus.ACTIVE)
            .order_by(campaigns.c.name)
            .limit(1)
        )
    return load_version(conn, name) if name else None


def send_smtp(
    url: str,
    from_address: str,
    recipients: tuple[str, ...],
    subject: str,
    body: str,
    *,
    now: datetime,
) -> None:
    """One plain-text email through the server `url` names (smtp:// or smtps://)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("DRIPMAIL_ALERT_SMTP_URL must look like smtp://host:587 or smtps://host")
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(now.timestamp(), usegmt=True)
    message["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    # Plain 7-bit when it can be (readable as it is in any mail store).
    message.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            parts.hostname, parts.port or 465, timeout=30, context=context
        )
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 587, timeout=30)
    with client:
        client.ehlo()
        if parts.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def _short(exc: Exception) -> str:
    """An exception for the log: its type and first line, cut (never a secret: the URL
    is not in smtplib's messages)."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
