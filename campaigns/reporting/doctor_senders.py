"""`dripmail doctor`'s sender lines: each campaign's sender configured, its credentials accepted.

Nothing is sent. Each provider is asked one read-only question its key must be good
for: SendGrid `GET /v3/scopes` (and that `mail.send` is among them), Mailgun
`GET /v4/domains/<domain>`, Postmark `GET /server`, SES `GetEmailIdentity` (and that the
From domain is verified for sending); an SMTP relay gets a session opened (EHLO,
STARTTLS, AUTH) and closed with QUIT.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import httpx

from campaigns.authoring.sender_settings import (
    AnySenderSettings,
    MailgunSenderSettings,
    PostmarkSenderSettings,
    SendGridSenderSettings,
    SesSenderSettings,
    SmtpSenderSettings,
)
from campaigns.reporting.doctor_rules import Check
from campaigns.settings import Settings
from senders.base import SenderConfigurationError, SenderError
from senders.registry import make_sender

PROBE_TIMEOUT = 10.0
SENDGRID_SCOPE = "mail.send"


def check_sender(
    campaign: str, config: AnySenderSettings, from_domain: str, settings: Settings
) -> Check:
    """One line: `campaign`'s sender is configured and its provider accepts the credentials."""
    name = f"sender {campaign} ({config.type})"
    if config.type in ("file", "null"):
        where = "writes .eml files" if config.type == "file" else "discards every email"
        return Check(
            name,
            False,
            f"the {config.type} sender {where}: nothing reaches a patient",
            "choose smtp, sendgrid, ses, mailgun or postmark in the campaign's sender:",
        )
    try:
        sender = make_sender(config.type, config, settings)
    except SenderConfigurationError as exc:
        return Check(name, False, str(exc), "fix the setting it names, then run again")
    try:
        detail = _probe(sender, config, from_domain, settings)
    except SenderConfigurationError as exc:
        return Check(name, False, str(exc), "fix the credentials it names, then run again")
    except SenderError as exc:
        return Check(name, False, str(exc), "check that the provider can be reached from here")
    finally:
        sender.close()
    return Check(name, True, detail)


def _probe(sender: Any, config: AnySenderSettings, from_domain: str, settings: Settings) -> str:
    if isinstance(config, SmtpSenderSettings):
        sender.check_login()
        login = f"logged in as {sender.username}" if sender.username else "no login set"
        return f"{sender.host}:{sender.port} ({sender.security}) answered EHLO; {login}"
    if isinstance(config, SendGridSenderSettings):
        key = _secret(settings, config.api_key_env)
        return _sendgrid(sender.host, key, config.api_key_env, config.timeout)
    if isinstance(config, MailgunSenderSettings):
        domain = config.domain or from_domain
        key = _secret(settings, config.api_key_env)
        return _mailgun(sender.host, domain, key, config.api_key_env, config.timeout)
    if isinstance(config, PostmarkSenderSettings):
        token = _secret(settings, config.server_token_env)
        return _postmark(sender.host, token, config.server_token_env, config.timeout)
    if isinstance(config, SesSenderSettings):
        return _ses(sender, from_domain)
    raise SenderConfigurationError(f"no read-only check for the {config.type} sender")


def _secret(settings: Settings, variable: str) -> str:
    secret = settings.secret(variable)
    return secret.get_secret_value().strip() if secret else ""


def _get(url: str, timeout: float, **kwargs: Any) -> httpx.Response:
    try:
        return httpx.get(url, timeout=min(timeout, PROBE_TIMEOUT), **kwargs)
    except httpx.HTTPError as exc:
        raise SenderError(f"could not reach {url}: {exc.__class__.__name__}") from None


def _refused(response: httpx.Response, provider: str, variable: str) -> None:
    if response.status_code in (401, 403):
        raise SenderConfigurationError(
            f"{provider} refused the key ({response.status_code}): check {variable}"
        )
    if response.status_code != 200:
        raise SenderError(f"{provider} answered {response.status_code} to a read-only request")


def _sendgrid(host: str, key: str, variable: str, timeout: float) -> str:
    # GET /v3/scopes: "Retrieve a list of scopes for which this user has access".
    response = _get(f"{host}/v3/scopes", timeout, headers={"Authorization": f"Bearer {key}"})
    _refused(response, "SendGrid", variable)
    scopes = (response.json() or {}).get("scopes") or []
    if SENDGRID_SCOPE not in scopes:
        raise SenderConfigurationError(
            f"the SendGrid key is accepted but lacks the {SENDGRID_SCOPE} scope: give it "
            "Mail Send access (Settings > API Keys)"
        )
    return f"{host} accepted the key; it has the {SENDGRID_SCOPE} scope"


def _mailgun(host: str, domain: str, key: str, variable: str, timeout: float) -> str:
    response = _get(f"{host}/v4/domains/{domain}", timeout, auth=("api", key))
    if response.status_code == 404:
        raise SenderConfigurationError(
            f"Mailgun has no sending domain {domain} in this account and region: add it, "
            "or set sender.domain and sender.region"
        )
    _refused(response, "Mailgun", variable)
    state = ((response.json() or {}).get("domain") or {}).get("state", "unknown")
    if state != "active":
        raise SenderConfigurationError(
            f"Mailgun's domain {domain} is {state}, not active: finish its DNS verification"
        )
    return f"{host} accepted the key; domain {domain} is active"


def _postmark(host: str, token: str, variable: str, timeout: float) -> str:
    headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}
    response = _get(f"{host}/server", timeout, headers=headers)
    _refused(response, "Postmark", variable)
    server = (response.json() or {}).get("Name", "?")
    return f"{host} accepted the server token (server {server})"


def _ses(sender: Any, domain: str) -> str:
    try:
        identity = sender.email_identity(domain)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code == "NotFoundException":
            raise SenderConfigurationError(
                f"SES has no identity {domain} in this account and region: verify the domain"
            ) from None
        raise SenderConfigurationError(f"SES refused the request ({code})") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SenderError(f"could not reach SES: {exc.__class__.__name__}") from None
    # VerificationStatus is the identity's DNS verification (PENDING, SUCCESS, FAILED,
    # TEMPORARY_FAILURE, NOT_STARTED); VerifiedForSendingStatus also needs the account to
    # be out of review. moto reports the first only, so either one is taken.
    status = identity.get("VerificationStatus", "?")
    if status != "SUCCESS" and not identity.get("VerifiedForSendingStatus"):
        raise SenderConfigurationError(
            f"SES identity {domain} is not verified for sending ({status}): publish the "
            "records SES shows for it"
        )
    return f"SES accepted the credentials; {domain} is verified for sending"
