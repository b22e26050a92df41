"""`dripmail doctor`: everything that would make sending fail or land in spam, one check a line.

The installation (database and migration, secret key, public URL and its `/healthz`),
then each campaign (published in the store, and any folders named): its sender and
credentials (campaigns/reporting/doctor_senders.py) and the one-click unsubscribe
headers of one of its emails rendered offline, then each From domain's DNS
(campaigns/reporting/doctor_dns.py). Every check returns a Check; none raises for what
it finds, so one broken part never hides the others.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.errors import DripmailError
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.personalise import SAMPLE
from campaigns.rendering.tokens import PLACEHOLDER_PUBLIC_URL, Signer, UnsubscribeClaim
from campaigns.reporting.doctor_dns import Dns, Sending, domain_checks
from campaigns.reporting.doctor_rules import Check
from campaigns.reporting.doctor_senders import check_sender
from campaigns.settings import PUBLIC_URL_ENV, SECRET_ENV, Settings
from campaigns.storage.publish import load_version, published_names
from campaigns.storage.store import Store
from campaigns.storage.tables import meta
from senders.addresses import AddressError, wire_address
from senders.mime import to_bytes

HEALTH_TIMEOUT = 5.0
# itsdangerous signs with HMAC-SHA1 over the key: shorter than this is guessable sooner.
SECRET_MIN_LENGTH = 32
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 3.1


@dataclass(frozen=True)
class Diagnosis:
    """Every check in the order they ran, and whether all passed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def diagnose(
    settings: Settings,
    *,
    database: str | None = None,
    resolver: tuple[str, int] | None = None,
    dkim_selectors: Sequence[str] = (),
    folders: Sequence[Path] = (),
    now: datetime,
) -> Diagnosis:
    """Run every check. `database` is `--db` (else DRIPMAIL_DATABASE_URL); `resolver` the
    DNS server's (address, port) (else the system's); `folders` campaign folders checked
    as well as (and over) the published campaigns of the same name."""
    checks: list[Check] = []
    store, published = _database(settings, database, checks)
    checks.append(check_secret(settings, store))
    checks += check_public_url(settings)
    campaigns = {c.name: c for c in published}
    for folder in folders:
        campaign = load_folder(folder)  # a broken folder: its one-line error, exit 2
        campaigns[campaign.name] = campaign
    if store is not None:
        store.engine.dispose()
    if not campaigns:
        checks.append(
            Check(
                "campaigns",
                False,
                "no published campaign and no folder named: nothing to check senders or DNS for",
                "name a campaign folder: dripmail doctor FOLDER",
            )
        )
    by_domain: dict[str, list[Sending]] = {}
    for campaign in campaigns.values():
        domain = _domain(campaign.spec.from_.address)
        sender = campaign.spec.sender
        checks.append(check_sender(campaign.name, sender, domain, settings))
        checks.append(check_unsubscribe(campaign, settings, now=now))
        # The envelope sender's domain, which SPF alignment compares with From: an SMTP
        # campaign's return_path; Mailgun's sending domain (its bounce+...@ address).
        return_path = getattr(sender, "return_path", None)
        if sender.type == "mailgun" and getattr(sender, "domain", None):
            return_path = f"bounce@{sender.domain}"
        by_domain.setdefault(domain, []).append(
            Sending(
                campaign.name,
                sender.type,
                smtp_host=(settings.smtp_host or getattr(sender, "host", None))
                if sender.type == "smtp"
                else None,
                return_path_domain=_domain(return_path) if return_path else None,
            )
        )
    if by_domain:
        dns_ = Dns(resolver)
        for domain, sendings in sorted(by_domain.items()):
            checks += domain_checks(dns_, domain, sendings, dkim_selectors)
    return Diagnosis(tuple(checks))


def _domain(address: str) -> str:
    """The address's domain as DNS and a zone file name it: lower case, an internationalised
    one as its A-label (xn--...), IDNA 2008 as senders.addresses puts it on the wire."""
    # A domain that cannot be encoded stays as it is: its lookups find nothing, and say so.
    with contextlib.suppress(AddressError):
        address = wire_address(address)[0]
    return address.rpartition("@")[2].lower()


def _database(
    settings: Settings, database: str | None, checks: list[Check]
) -> tuple[Store | None, list[Campaign]]:
    """The database line; the store and its published campaigns when it can be read."""
    name = "database"
    try:
        store = Store(database, migrate=False, settings=settings, existing=True)
    except DripmailError as exc:
        checks.append(Check(name, False, str(exc), "set DRIPMAIL_DATABASE_URL or --db"))
        return None, []
    try:
        state = store.schema_state()
    except (SQLAlchemyError, DripmailError) as exc:
        if isinstance(exc, DripmailError):
            said = str(exc).splitlines()[0]  # the store's own line names the database
        else:
            said = f"cannot reach {store.location}: {str(exc).splitlines()[0]}"
        checks.append(Check(name, False, said, "start the database, or fix its URL"))
        store.engine.dispose()
        return None, []
    if state.current is None:
        checks.append(
            Check(name, False, f"{store.location} holds no dripmail tables", "dripmail db upgrade")
        )
        return store, []
    if not state.is_current:
        newer = state.current > state.head
        checks.append(
            Check(
                name,
                False,
                f"{store.location} is at migration {state.current}; "
                f"this dripmail's is {state.head}",
                "install the dripmail that made it" if newer else "dripmail db upgrade",
            )
        )
        return store, []
    campaigns: list[Campaign] = []
    problems: list[str] = []
    with store.connect() as conn:
        for campaign_name in published_names(conn):
            try:
                campaigns.append(load_version(conn, campaign_name))
            except DripmailError as exc:
                problems.append(f"{campaign_name}: {str(exc).splitlines()[0]}")
    if problems:
        checks.append(
            Check(
                name,
                False,
                "published versions that no longer load: " + "; ".join(problems),
                "publish them again: dripmail plan FOLDER --apply",
            )
        )
    else:
        checks.append(
            Check(name, True, f"{store.location} reachable, at migration {state.current}")
        )
    return store, campaigns


def check_secret(settings: Settings, store: Store | None) -> Check:
    """DRIPMAIL_SECRET_KEY: long enough when set; when unset, the database's own key
    signs the links (kept in the store, shared by every worker on it)."""
    name = "secret key"
    if settings.secret_key is not None:
        length = len(settings.secret_key.get_secret_value())
        if length < SECRET_MIN_LENGTH:
            return Check(
                name,
                False,
                f"{SECRET_ENV} is {length} characters: too short to sign links safely",
                f"set {SECRET_ENV} to at least {SECRET_MIN_LENGTH} random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))'); links "
                "already sent stop working",
            )
        return Check(name, True, f"{SECRET_ENV} is set ({length} characters)")
    if store is None:
        return Check(
            name,
            True,
            f"{SECRET_ENV} unset: links are signed with the key kept in the database "
            "(not read: the database is not reachable)",
        )
    try:
        with store.connect() as conn:
            kept = conn.scalar(select(meta.c.value).where(meta.c.key == "secret_key"))
    except SQLAlchemyError:
        kept = None
    where = (
        "the key kept in the database"
        if kept
        else "a key generated on first use, kept in the database"
    )
    return Check(
        name,
        True,
        f"{SECRET_ENV} unset: links are signed with {where} (every worker on it shares it; "
        "keep backups of it)",
    )


def check_public_url(settings: Settings) -> list[Check]:
    """DRIPMAIL_PUBLIC_URL is https (RFC 8058 one-click needs it) and answers /healthz."""
    url = (settings.public_url or "").rstrip("/")
    if not url:
        fix = f"set {PUBLIC_URL_ENV} to the https address of dripmail serve"
        return [
            Check("public URL", False, f"{PUBLIC_URL_ENV} is not set", fix),
            Check("public URL /healthz", False, "no public URL to ask", fix),
        ]
    if url.lower().startswith("https://"):
        https = Check("public URL", True, f"{url} is https")
    else:
        https = Check(
            "public URL",
            False,
            f"{url} is not https: one-click unsubscribe (RFC 8058) needs an https link",
            "serve dripmail behind an https reverse proxy (Caddy, nginx) and set "
            f"{PUBLIC_URL_ENV} to its https address",
        )
    return [https, _health(url)]


def _health(url: str) -> Check:
    name = "public URL /healthz"
    target = f"{url}/healthz"
    fix = "start dripmail serve, and check the reverse proxy passes /healthz to it"
    # The system's trust store (SSL_CERT_FILE too): what patients' browsers go through.
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(target, timeout=HEALTH_TIMEOUT, context=context) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        return Check(name, False, f"{target} answered {exc.code}", fix)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return Check(
                name,
                False,
                f"{target}: the certificate is not trusted ({reason.verify_message})",
                "install a certificate browsers trust (Caddy does it by itself)",
            )
        return Check(name, False, f"{target} did not answer: {reason}", fix)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Check(name, False, f"{target} did not answer: {exc}", fix)
    return Check(name, True, f"{target} answered {status}")


def check_unsubscribe(campaign: Campaign, settings: Settings, *, now: datetime) -> Check:
    """One email of the campaign, rendered offline, carries List-Unsubscribe with an
    https link and List-Unsubscribe-Post (one-click, RFC 8058), as Gmail and Yahoo ask."""
    name = f"unsubscribe {campaign.name}"
    try:
        compiled = compile_campaign(campaign)
    except DripmailError as exc:
        return Check(name, False, f"the campaign does not render: {exc}", "dripmail check FOLDER")
    step = next(iter(compiled.steps))
    token = Signer("doctor: a sample key").token(UnsubscribeClaim(0, campaign.name, None))
    message = contact_message(
        compiled,
        step,
        SAMPLE,
        LinkBase.of(campaign, settings.public_url).signed(token),
        delivery_id="doctor",
        date=now,
    )
    try:
        # As SES, Mailgun and SMTP without SMTPUTF8 put it on the wire: ASCII headers.
        raw = to_bytes(message)
    except (ValueError, UnicodeError) as exc:  # AddressError, NeedsSmtpUtf8, encoding
        return Check(
            name,
            False,
            f"step {step}: the email cannot be written as ASCII headers ({exc})",
            "use an address with an ASCII part before the @ for From, reply_to and "
            "links.unsubscribe_mailto",
        )
    headers = message_from_bytes(raw, policy=email_policy.default)
    listed = " ".join(str(headers.get("List-Unsubscribe", "")).split())
    post = str(headers.get("List-Unsubscribe-Post", "")).strip()
    links = [part.strip(" <>") for part in listed.split(",") if part.strip()]
    web = [link for link in links if link.lower().startswith(("https://", "http://"))]
    problems = []
    if not web:
        problems.append("no List-Unsubscribe web link")
    elif web[0].startswith(PLACEHOLDER_PUBLIC_URL):
        problems.append(f"the link points at the placeholder {PLACEHOLDER_PUBLIC_URL}")
    elif not web[0].lower().startswith("https://"):
        problems.append("the List-Unsubscribe link is not https")
    if post != ONE_CLICK:
        problems.append(f"no List-Unsubscribe-Post: {ONE_CLICK}")
    if problems:
        return Check(
            name,
            False,
            f"step {step}: " + "; ".join(problems),
            f"set {PUBLIC_URL_ENV} (or links.public_url) to dripmail serve's https address",
        )
    shown = web[0].split("/u/")[0] + "/u/…"
    return Check(
        name,
        True,
        f"step {step}: List-Unsubscribe <{shown}> and mailto, List-Unsubscribe-Post: {ONE_CLICK}",
    )
