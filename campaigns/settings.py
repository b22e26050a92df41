"""Every environment variable dripmail reads, resolved once into one Settings object.

The CLI builds it when a command starts and passes it down (the store, the senders,
the web app). A library caller that passes none gets one read from the environment at
that moment. Nothing else in dripmail reads os.environ.

Secrets are SecretStr: a repr, a log line or an error shows `**********`, and only
the code that hands a secret to its provider calls `get_secret_value()`. Values a
sender checks itself (the SMTP port, security) stay text here, so its error can name
the variable they came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_ENV = "DRIPMAIL_DATABASE_URL"
SECRET_ENV = "DRIPMAIL_SECRET_KEY"
PUBLIC_URL_ENV = "DRIPMAIL_PUBLIC_URL"
API_TOKEN_ENV = "DRIPMAIL_API_TOKEN"
LOG_LEVEL_ENV = "DRIPMAIL_LOG_LEVEL"
LOG_FORMAT_ENV = "DRIPMAIL_LOG_FORMAT"  # text (unset) or json: one object per line
SMTP_HOST_ENV = "DRIPMAIL_SMTP_HOST"
SMTP_PORT_ENV = "DRIPMAIL_SMTP_PORT"
SMTP_SECURITY_ENV = "DRIPMAIL_SMTP_SECURITY"
SMTP_USERNAME_ENV = "DRIPMAIL_SMTP_USERNAME"
SMTP_PASSWORD_ENV = "DRIPMAIL_SMTP_PASSWORD"  # the SMTP password is read from here and nowhere else
SENDGRID_KEY_ENV = "SENDGRID_API_KEY"  # the default; a campaign may name another (api_key_env)
SENDGRID_HOST_ENV = "SENDGRID_API_HOST"
WEBHOOK_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
MAILGUN_KEY_ENV = "MAILGUN_API_KEY"  # the default; a campaign may name another (api_key_env)
MAILGUN_HOST_ENV = "MAILGUN_API_HOST"  # over the region's host (a proxy, or a test's stand-in)
# Mailgun's HTTP webhook signing key; several, comma-separated, while one is being rotated.
MAILGUN_SIGNING_KEY_ENV = "MAILGUN_WEBHOOK_SIGNING_KEY"
IMAP_PASSWORD_ENV = "DRIPMAIL_IMAP_PASSWORD"  # `mailbox read --imap`: the mailbox's password
OUTBOX_ENV = "DRIPMAIL_OUTBOX"  # the file sender's folder, over the campaign file's `outbox`
# Amazon SES: another API address (tests, a VPC interface endpoint), and the SNS topics
# whose notifications /webhooks/ses accepts. AWS credentials and the default region are
# not read here: boto3 resolves them itself through the standard AWS chain
# (AWS_* variables, ~/.aws files, SSO, container and instance roles).
SES_ENDPOINT_ENV = "DRIPMAIL_SES_ENDPOINT_URL"
SES_TOPICS_ENV = "DRIPMAIL_SES_TOPIC_ARNS"  # comma-separated topic ARNs
POSTMARK_TOKEN_ENV = "POSTMARK_SERVER_TOKEN"  # the default; a campaign may name another
POSTMARK_HOST_ENV = "POSTMARK_API_HOST"  # over the campaign's api_host (tests: a local stand-in)
# "user:pass,user2:pass2": the HTTP basic credentials Postmark's webhooks must bring (a list,
# so a new pair can be set at Postmark before the old one is dropped here).
POSTMARK_WEBHOOK_ENV = "POSTMARK_WEBHOOK_CREDENTIALS"
# The marketing console (`dripmail console`): the address staff reach it at (set-up links
# printed by `users add` and `users reset` start with it), and whether TOTP is required of
# admins, editors and reviewers ("required", the default) or only offered ("optional").
CONSOLE_URL_ENV = "DRIPMAIL_CONSOLE_URL"
CONSOLE_2FA_ENV = "DRIPMAIL_CONSOLE_2FA"
WORKSPACE_ENV = "DRIPMAIL_WORKSPACE"  # the console's campaign folders (default ./campaigns)


class Settings(BaseSettings):
    """The installation's settings, one field per variable (an empty variable is unset)."""

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="ignore")

    database_url: str | None = Field(default=None, validation_alias=DATABASE_ENV)
    secret_key: SecretStr | None = Field(default=None, validation_alias=SECRET_ENV)
    public_url: str | None = Field(default=None, validation_alias=PUBLIC_URL_ENV)
    api_token: SecretStr | None = Field(default=None, validation_alias=API_TOKEN_ENV)
    log_level: str = Field(default="INFO", validation_alias=LOG_LEVEL_ENV)
    log_format: str | None = Field(default=None, validation_alias=LOG_FORMAT_ENV)
    smtp_host: str | None = Field(default=None, validation_alias=SMTP_HOST_ENV)
    smtp_port: str | None = Field(default=None, validation_alias=SMTP_PORT_ENV)
    smtp_security: str | None = Field(default=None, validation_alias=SMTP_SECURITY_ENV)
    smtp_username: str | None = Field(default=None, validation_alias=SMTP_USERNAME_ENV)
    smtp_password: SecretStr | None = Field(default=None, validation_alias=SMTP_PASSWORD_ENV)
    sendgrid_api_key: SecretStr | None = Field(default=None, validation_alias=SENDGRID_KEY_ENV)
    sendgrid_api_host: str | None = Field(default=None, validation_alias=SENDGRID_HOST_ENV)
    sendgrid_webhook_public_key: str | None = Field(default=None, validation_alias=WEBHOOK_KEY_ENV)
    outbox: str | None = Field(default=None, validation_alias=OUTBOX_ENV)
    ses_endpoint_url: str | None = Field(default=None, validation_alias=SES_ENDPOINT_ENV)
    ses_topic_arns: str | None = Field(default=None, validation_alias=SES_TOPICS_ENV)
    mailgun_api_key: SecretStr | None = Field(default=None, validation_alias=MAILGUN_KEY_ENV)
    mailgun_api_host: str | None = Field(default=None, validation_alias=MAILGUN_HOST_ENV)
    mailgun_webhook_signing_key: SecretStr | None = Field(
        default=None, validation_alias=MAILGUN_SIGNING_KEY_ENV
    )
    postmark_server_token: SecretStr | None = Field(
        default=None, validation_alias=POSTMARK_TOKEN_ENV
    )
    postmark_api_host: str | None = Field(default=None, validation_alias=POSTMARK_HOST_ENV)
    postmark_webhook_credentials: SecretStr | None = Field(
        default=None, validation_alias=POSTMARK_WEBHOOK_ENV
    )
    imap_password: SecretStr | None = Field(default=None, validation_alias=IMAP_PASSWORD_ENV)
    console_url: str | None = Field(default=None, validation_alias=CONSOLE_URL_ENV)
    console_2fa: str | None = Field(default=None, validation_alias=CONSOLE_2FA_ENV)
    workspace: str = Field(default="./campaigns", validation_alias=WORKSPACE_ENV)

    # The environment as it was read, for the variable only a campaign file names
    # (sender.api_key_env). Private: in no repr and no dump.
    _environ: Mapping[str, str] = PrivateAttr(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (a mapping standing in for it, in tests), else in this
        process's environment, read now."""
        if environ is None:
            return cls()
        # Every variable given, unset ones as None: init values win over the process
        # environment, so nothing leaks in from it.
        settings = cls(**{name: environ.get(name) for name in variables()})
        settings._environ = dict(environ)
        return settings

    @model_validator(mode="before")
    @classmethod
    def _unset_when_empty(cls, data: Any) -> Any:
        # `VAR=` is unset, as `os.environ.get(VAR) or default` always treated it.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value not in ("", None)}
        return data

    @property
    def ses_topics(self) -> frozenset[str]:
        """The SNS topic ARNs in DRIPMAIL_SES_TOPIC_ARNS (comma-separated), empty when unset."""
        return frozenset(filter(None, (t.strip() for t in (self.ses_topic_arns or "").split(","))))

    def secret(self, name: str) -> SecretStr | None:
        """The variable `name` as a secret (None when unset or empty): a campaign names
        its provider key's variable in `api_key_env` (Postmark: `server_token_env`)."""
        if name == SENDGRID_KEY_ENV:
            return self.sendgrid_api_key
        if name == MAILGUN_KEY_ENV:
            return self.mailgun_api_key
        if name == POSTMARK_TOKEN_ENV:
            return self.postmark_server_token
        value = self._environ.get(name)
        return SecretStr(value) if value else None


def variables() -> tuple[str, ...]:
    """The name of every variable Settings reads."""
    return tuple(str(field.validation_alias) for field in Settings.model_fields.values())
