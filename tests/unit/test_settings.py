"""Settings and the campaign file's sender settings: read once, typed, secrets out of sight.

No database, no network: these run in milliseconds.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr, TypeAdapter

from campaigns.authoring.sender_settings import (
    FileSenderSettings,
    MailgunSenderSettings,
    NullSenderSettings,
    SenderSettings,
    SendGridSenderSettings,
    SmtpSenderSettings,
    outbox,
    settings_for,
)
from campaigns.authoring.spec import load_files
from campaigns.errors import DripmailError, InputError
from campaigns.settings import Settings, variables
from senders.base import SenderConfigurationError, SenderError
from senders.registry import make_sender

# variable -> (field, a value)
VARIABLES = {
    "DRIPMAIL_DATABASE_URL": ("database_url", "postgresql+psycopg://dripmail@db/dripmail"),
    "DRIPMAIL_CONSOLE_URL": ("console_url", "https://console.clinic.example"),
    "DRIPMAIL_CONSOLE_2FA": ("console_2fa", "optional"),
    "DRIPMAIL_WORKSPACE": ("workspace", "/srv/clinic/campaigns"),
    "DRIPMAIL_SECRET_KEY": ("secret_key", "s3cret-signing-key"),
    "DRIPMAIL_PUBLIC_URL": ("public_url", "https://mail.clinic.example"),
    "DRIPMAIL_API_TOKEN": ("api_token", "bearer-token-value"),
    "DRIPMAIL_LOG_LEVEL": ("log_level", "DEBUG"),
    "DRIPMAIL_LOG_FORMAT": ("log_format", "json"),
    "DRIPMAIL_SMTP_HOST": ("smtp_host", "smtp.clinic.example"),
    "DRIPMAIL_SMTP_PORT": ("smtp_port", "2525"),
    "DRIPMAIL_SMTP_SECURITY": ("smtp_security", "ssl"),
    "DRIPMAIL_SMTP_USERNAME": ("smtp_username", "clinic"),
    "DRIPMAIL_SMTP_PASSWORD": ("smtp_password", "correct-horse-battery"),
    "SENDGRID_API_KEY": ("sendgrid_api_key", "SG.do-not-print-me"),
    "SENDGRID_API_HOST": ("sendgrid_api_host", "https://api.eu.sendgrid.com"),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": ("sendgrid_webhook_public_key", "MFkwEwYHKoZIzj0CAQYI"),
    "DRIPMAIL_OUTBOX": ("outbox", "/var/spool/dripmail/outbox"),
    "DRIPMAIL_SES_ENDPOINT_URL": (
        "ses_endpoint_url",
        "https://vpce-0a1b.email.eu-west-1.vpce.amazonaws.com",
    ),
    "DRIPMAIL_SES_TOPIC_ARNS": ("ses_topic_arns", "arn:aws:sns:eu-west-1:123456789012:ses"),
    "MAILGUN_API_KEY": ("mailgun_api_key", "key-do-not-print-me"),
    "MAILGUN_API_HOST": ("mailgun_api_host", "https://api.eu.mailgun.net"),
    "MAILGUN_WEBHOOK_SIGNING_KEY": ("mailgun_webhook_signing_key", "whsk-do-not-print-me"),
    "POSTMARK_SERVER_TOKEN": ("postmark_server_token", "pm-do-not-print-me"),
    "POSTMARK_API_HOST": ("postmark_api_host", "https://api.postmarkapp.com"),
    "POSTMARK_WEBHOOK_CREDENTIALS": ("postmark_webhook_credentials", "hook:pass-do-not-print"),
    "DRIPMAIL_IMAP_PASSWORD": ("imap_password", "imap-mailbox-secret"),
}
SECRETS = (
    "DRIPMAIL_SECRET_KEY",
    "DRIPMAIL_API_TOKEN",
    "DRIPMAIL_SMTP_PASSWORD",
    "SENDGRID_API_KEY",
    "MAILGUN_API_KEY",
    "MAILGUN_WEBHOOK_SIGNING_KEY",
    "POSTMARK_SERVER_TOKEN",
    "POSTMARK_WEBHOOK_CREDENTIALS",
    "DRIPMAIL_IMAP_PASSWORD",
)

CAMPAIGN = """\
name: sleep
from:
  name: Clinic Care Team
  address: care@clinic.example.com
brand:
  organisation: Clinic
  postal_address: 1 Main St, Springfield
steps:
  - file: 01-welcome.md
    delay: 0d
"""


def plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def campaign_error(sender_block: str) -> str:
    files = {"campaign.yaml": CAMPAIGN + sender_block, "01-welcome.md": "# Hi\n\nText.\n"}
    with pytest.raises(InputError) as caught:
        load_files(files)
    return str(caught.value)


# -- Settings ---------------------------------------------------------------------------


def test_every_variable_the_code_reads_is_a_setting():
    assert set(variables()) == set(VARIABLES)


@pytest.mark.parametrize(("variable", "field", "value"), [(k, *v) for k, v in VARIABLES.items()])
def test_each_variable_resolves_to_its_field(variable, field, value):
    resolved = getattr(Settings.from_env({variable: value}), field)
    assert plain(resolved) == value
    assert isinstance(resolved, SecretStr) == (variable in SECRETS)


def test_unset_and_empty_variables_take_the_defaults():
    for environ in ({}, dict.fromkeys(VARIABLES, "")):
        settings = Settings.from_env(environ)
        assert settings.log_level == "INFO"
        assert settings.workspace == "./campaigns"
        assert all(
            getattr(settings, field) is None
            for field, _ in VARIABLES.values()
            if field not in ("log_level", "workspace")
        )


def test_without_a_mapping_the_process_environment_is_read_then(monkeypatch):
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "https://mail.clinic.example")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-the-environment")
    settings = Settings.from_env()
    assert settings.public_url == "https://mail.clinic.example"
    assert plain(settings.secret("SENDGRID_API_KEY")) == "SG.from-the-environment"
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "https://changed.example")
    assert settings.public_url == "https://mail.clinic.example"  # read once


def test_a_mapping_keeps_the_process_environment_out(monkeypatch):
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "https://mail.clinic.example")
    monkeypatch.setenv("CLINIC_SENDGRID_KEY", "SG.from-the-environment")
    settings = Settings.from_env({})
    assert settings.public_url is None and settings.secret("CLINIC_SENDGRID_KEY") is None


def test_a_campaign_may_name_its_own_sendgrid_key_variable():
    settings = Settings.from_env({"CLINIC_SENDGRID_KEY": "SG.clinic", "SENDGRID_API_KEY": "SG.x"})
    assert plain(settings.secret("CLINIC_SENDGRID_KEY")) == "SG.clinic"
    assert plain(settings.secret("SENDGRID_API_KEY")) == "SG.x"
    assert settings.secret("NOT_SET") is None
    assert "SG.clinic" not in repr(settings)


def test_secrets_never_appear_in_repr_str_or_a_dump():
    settings = Settings.from_env({name: value for name, (_, value) in VARIABLES.items()})
    shown = (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump()))
    for name in SECRETS:
        secret = VARIABLES[name][1]
        assert all(secret not in text for text in shown), name
    assert "https://mail.clinic.example" in repr(settings)  # the rest is shown as it is


# -- sender settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "model"),
    [
        ({}, FileSenderSettings),
        ({"outbox": "mail"}, FileSenderSettings),
        ("file", FileSenderSettings),
        ("null", NullSenderSettings),
        ({"type": "smtp", "host": "smtp.clinic.example"}, SmtpSenderSettings),
        ("smtp", SmtpSenderSettings),
        ({"type": "sendgrid", "sandbox_mode": True}, SendGridSenderSettings),
        ({"type": "mailgun", "region": "eu", "domain": "mg.clinic.example"}, MailgunSenderSettings),
    ],
)
def test_the_type_picks_the_providers_settings(value, model):
    assert type(TypeAdapter(SenderSettings).validate_python(value)) is model


def test_the_campaign_file_holds_the_providers_settings():
    files = {
        "campaign.yaml": CAMPAIGN + "sender:\n  type: sendgrid\n  batch: false\n",
        "01-welcome.md": "# Hi\n\nText.\n",
    }
    sender = load_files(files).spec.sender
    assert sender == SendGridSenderSettings(batch=False)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "sender:\n  type: smtp\n  outbox: mail\n",
            "campaign.yaml:13: sender.outbox: unknown key 'outbox' (expected one of: type, host, "
            "port, security, username, timeout, concurrency, max_attempts, max_wait, "
            "return_path)",
        ),
        (
            "sender:\n  type: file\n  api_host: https://api.sendgrid.com\n",
            "campaign.yaml:13: sender.api_host: unknown key 'api_host' (expected one of: type, "
            "outbox)",
        ),
        (
            "sender:\n  type: pigeon\n",
            "campaign.yaml:12: sender.type: Input should be "
            "'file', 'null', 'smtp', 'sendgrid', 'ses', 'mailgun' or 'postmark'",
        ),
        (
            "sender: pigeon\n",
            "campaign.yaml:11: sender.type: Input should be "
            "'file', 'null', 'smtp', 'sendgrid', 'ses', 'mailgun' or 'postmark'",
        ),
        (
            "sender: 5\n",
            "campaign.yaml:11: sender: Input should be a valid dictionary or instance of "
            "SenderConfig",
        ),
        (
            "sender:\n  type: smtp\n  port: 0\n",
            "campaign.yaml:13: sender.port: Input should be greater than or equal to 1",
        ),
        (
            "sender:\n  type: sendgrid\n  api_host: http//api\n",
            "campaign.yaml:13: sender.api_host: 'http//api' is not a web address "
            "(start it with https://)",
        ),
    ],
)
def test_a_bad_sender_gets_one_line_naming_the_key(block, expected):
    assert campaign_error(block) == expected


def test_an_overriding_sender_keeps_the_keys_both_providers_have():
    sendgrid = SendGridSenderSettings(timeout=5, sandbox_mode=True)
    assert settings_for("sendgrid", sendgrid) is sendgrid
    smtp = settings_for("smtp", sendgrid)
    assert smtp == SmtpSenderSettings(timeout=5)
    assert settings_for("file", smtp) == FileSenderSettings()
    assert settings_for("null") == NullSenderSettings()
    assert outbox(FileSenderSettings(outbox="mail")) == "mail"
    assert outbox(smtp) == "outbox"


def test_environment_variables_win_over_the_campaign_file():
    config = SmtpSenderSettings(host="smtp.campaign-file.example", port=2525, max_attempts=5)
    settings = Settings.from_env(
        {"DRIPMAIL_SMTP_HOST": "smtp.environment.example", "DRIPMAIL_SMTP_PASSWORD": "pw 1"}
    )
    sender = make_sender("smtp", config, settings)
    assert (sender.host, sender.port, sender.max_attempts) == (
        "smtp.environment.example",
        2525,
        5,
    )
    assert "pw 1" not in repr(sender)


def test_sender_errors_are_dripmail_errors():
    assert issubclass(SenderConfigurationError, SenderError)
    assert issubclass(SenderError, DripmailError)
    assert SenderConfigurationError("x").exit_code == 2
    with pytest.raises(DripmailError, match="unknown sender 'pigeon'"):
        make_sender("pigeon", settings=Settings.from_env({}))
