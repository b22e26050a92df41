"""The campaign file's `sender:`: which provider sends, and that provider's settings.

One model per provider, picked by `type`, so a key of another provider is an unknown
key. Secrets are never written here: the SMTP password, the SendGrid and Mailgun keys
and the Postmark server token come from the environment (campaigns/settings.py), whose
DRIPMAIL_SMTP_* variables, SENDGRID_API_HOST, MAILGUN_API_HOST and POSTMARK_API_HOST
also win over the values below; AWS credentials come from the standard AWS chain, which
boto3 resolves.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from campaigns.authoring.fields import EmailAddress, FileModel, Url
from campaigns.settings import (
    MAILGUN_KEY_ENV,
    OUTBOX_ENV,
    POSTMARK_TOKEN_ENV,
    SENDGRID_KEY_ENV,
    Settings,
)

# What pydantic said of a `sender:` that is no mapping when it was one model; kept word
# for word, as every campaign-file message is.
NOT_A_MAPPING = "Input should be a valid dictionary or instance of SenderConfig"

# Both network providers: the request timeout, parallel requests, and in-run retry bounds.
Timeout = Annotated[float, Field(default=10.0, gt=0, le=300)]
Concurrency = Annotated[int, Field(default=8, ge=1, le=64)]
MaxAttempts = Annotated[int, Field(default=3, ge=1, le=20)]
MaxWait = Annotated[float, Field(default=60.0, ge=0, le=3600)]
# A VERP return path adds `+<id>-<signature>` (up to 28 characters, rendering/verp.py) to
# the local part, which RFC 5321 caps at 64 octets.
RETURN_PATH_LOCAL_MAX = 64 - 28


class FileSenderSettings(FileModel):
    """The local default: one .eml per message in `outbox`, a folder under the working one.

    A campaign file may not send it elsewhere (`/var/...`, `../x`): whoever edits a
    campaign could otherwise write files anywhere the worker can. The operator chooses
    any folder with DRIPMAIL_OUTBOX or `dripmail run --outbox` (see `outbox` below).
    """

    type: Literal["file"] = "file"
    outbox: str = "outbox"

    @field_validator("outbox")
    @classmethod
    def _inside(cls, value: str) -> str:
        path = PurePath(value)
        if path.is_absolute() or ".." in path.parts or value.startswith("~"):
            raise ValueError(
                f"{value!r} leads outside the working folder: name a folder inside it, like "
                f"outbox (to write elsewhere, set {OUTBOX_ENV} or use dripmail run --outbox)"
            )
        return value


class NullSenderSettings(FileModel):
    """Builds every message in full and discards it: measures everything but the provider."""

    type: Literal["null"] = "null"


class SmtpSenderSettings(FileModel):
    """An SMTP relay; each value is overridden by its DRIPMAIL_SMTP_* variable."""

    type: Literal["smtp"] = "smtp"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] | None = None
    username: str | None = None
    timeout: Timeout
    concurrency: Concurrency  # accepted, unused: SMTP is one conversation at a time
    max_attempts: MaxAttempts
    max_wait: MaxWait
    # Where bounces go: each email's envelope sender becomes `local+<id>-<sig>@domain`
    # (VERP), read back by `dripmail mailbox read`. None: the From address, as before.
    return_path: EmailAddress | None = None

    @field_validator("return_path")
    @classmethod
    def _verp_ready(cls, value: str | None) -> str | None:
        if value is None:
            return value
        local = value.rpartition("@")[0]
        if "+" in local:
            raise ValueError(
                f"{value!r} already has a `+` tag: name the bare mailbox (like "
                "bounces@clinic.example); dripmail adds a tag per email"
            )
        if len(local.encode()) > RETURN_PATH_LOCAL_MAX:
            raise ValueError(
                f"{value!r}: the part before @ must be at most {RETURN_PATH_LOCAL_MAX} "
                "characters, since each email adds a tag of up to 28 to it"
            )
        return value


class SendGridSenderSettings(FileModel):
    """SendGrid's v3 Mail Send API; SENDGRID_API_HOST overrides `api_host`."""

    type: Literal["sendgrid"] = "sendgrid"
    api_key_env: str = Field(default=SENDGRID_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_host: Url | None = None
    sandbox_mode: bool = False
    track_opens: bool = False
    track_clicks: bool = False
    categories: bool = False
    asm_group_id: int | None = None
    batch: bool = True  # up to 1,000 emails of one step per request (personalizations)
    timeout: Timeout
    concurrency: Concurrency
    max_attempts: MaxAttempts
    max_wait: MaxWait


class SesSenderSettings(FileModel):
    """Amazon SES (API v2 SendEmail, raw MIME); credentials from the standard AWS chain.

    `region` defaults to the AWS chain's (AWS_DEFAULT_REGION, ~/.aws/config);
    DRIPMAIL_SES_ENDPOINT_URL points the client elsewhere (a VPC endpoint, a test server).
    """

    type: Literal["ses"] = "ses"
    # us-east-1, eu-west-2, us-gov-west-1, ap-southeast-4 ...
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+){1,2}-[0-9]{1,2}$")
    # SES: "The name can contain up to 64 characters ... letters, numbers, underscores, dashes"
    configuration_set: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    timeout: Timeout
    concurrency: Annotated[int, Field(default=4, ge=1, le=64)]
    max_attempts: MaxAttempts
    max_wait: MaxWait


# A DNS name of ASCII labels (an IDN as its A-label): it goes into the request's path.
DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")


class MailgunSenderSettings(FileModel):
    """Mailgun's messages.mime endpoint, in the region the sending domain lives in.

    `domain` is the Mailgun sending domain (default: the domain of each email's From
    address); MAILGUN_API_HOST overrides the region's host.
    """

    type: Literal["mailgun"] = "mailgun"
    domain: str | None = None
    region: Literal["us", "eu"] = "us"
    api_key_env: str = Field(default=MAILGUN_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    test_mode: bool = False  # o:testmode: Mailgun accepts and drops the email
    track_opens: bool = False
    track_clicks: bool = False
    timeout: Timeout
    concurrency: Concurrency
    max_attempts: MaxAttempts
    max_wait: MaxWait

    @field_validator("domain")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not DOMAIN.fullmatch(value)):
            raise ValueError(
                f"{value!r} is not a domain name: give the Mailgun sending domain, like "
                "mg.clinic.example"
            )
        return value


class PostmarkSenderSettings(FileModel):
    """Postmark's Email API, `/email/batch`; POSTMARK_API_HOST overrides `api_host`.

    `message_stream` is the Stream ID to send through. A drip series goes to many
    people on a schedule, not one person after an action of theirs, which Postmark
    keeps for Broadcast streams ("Broadcast Message Streams are for one-to-many sends",
    https://postmarkapp.com/support/article/how-to-create-and-send-through-message-streams);
    `broadcast` is the ID of the Default Broadcast Stream. `outbound` is the default
    Transactional stream.
    """

    type: Literal["postmark"] = "postmark"
    server_token_env: str = Field(default=POSTMARK_TOKEN_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_host: Url | None = None
    message_stream: str = Field(default="broadcast", pattern=r"^[A-Za-z0-9_-]{1,100}$")
    track_opens: bool = False
    track_clicks: bool = False
    batch: bool = True  # up to 500 emails per request (/email/batch)
    timeout: Timeout
    concurrency: Concurrency
    max_attempts: MaxAttempts
    max_wait: MaxWait


def _mapping(value: Any) -> Any:
    """`sender: smtp` is `{type: smtp}`; a mapping without `type` is the file sender's."""
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict):
        return value if "type" in value else {**value, "type": "file"}
    if isinstance(value, BaseModel):
        return value
    raise ValueError(NOT_A_MAPPING)


AnySenderSettings = (
    FileSenderSettings
    | NullSenderSettings
    | SmtpSenderSettings
    | SendGridSenderSettings
    | SesSenderSettings
    | MailgunSenderSettings
    | PostmarkSenderSettings
)
SenderSettings = Annotated[
    AnySenderSettings, Field(discriminator="type"), BeforeValidator(_mapping)
]
SETTINGS_BY_TYPE: dict[str, type[AnySenderSettings]] = {
    model.model_fields["type"].default: model for model in get_args(AnySenderSettings)
}
SENDER_TYPES = tuple(SETTINGS_BY_TYPE)  # file, null, smtp, sendgrid, ses, mailgun, postmark


def settings_for(name: str, config: AnySenderSettings | None = None) -> AnySenderSettings:
    """The settings the `name` sender runs with: the campaign's `config` when it is that
    provider's; else (`--sender` chose another) that provider's defaults, with the values
    of the keys both have (timeout, concurrency, max_attempts, max_wait)."""
    if config is not None and config.type == name:
        return config
    model = SETTINGS_BY_TYPE[name]
    if config is None:
        return model()
    shared = (model.model_fields.keys() & type(config).model_fields.keys()) - {"type"}
    return model(**{key: getattr(config, key) for key in shared})


def outbox(config: AnySenderSettings, settings: Settings | None = None) -> str:
    """The folder the file sender writes to: the operator's (`run --outbox`,
    DRIPMAIL_OUTBOX) when `settings` has one; else the campaign's, or the default when
    the campaign names another sender (`--sender file`) or an empty one."""
    if settings is not None and settings.outbox:
        return settings.outbox
    if isinstance(config, FileSenderSettings) and config.outbox:
        return config.outbox
    return FileSenderSettings().outbox
