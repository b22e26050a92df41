"""The SendGrid sender's settings: what make_sender refuses before any request is made."""

from __future__ import annotations

import pytest

from campaigns.authoring.sender_settings import SendGridSenderSettings
from campaigns.settings import Settings
from senders.base import SenderConfigurationError
from senders.registry import make_sender

KEY = "SG.clinic-test-key.3f9a1c7e5b"


def test_a_missing_api_key_variable_is_named():
    settings = SendGridSenderSettings(api_key_env="CLINIC_SENDGRID_KEY")
    for environ in ({}, {"CLINIC_SENDGRID_KEY": "  "}, {"SENDGRID_API_KEY": KEY}):
        with pytest.raises(SenderConfigurationError, match="CLINIC_SENDGRID_KEY") as raised:
            make_sender("sendgrid", settings, Settings.from_env(environ))
        assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    "host",
    [
        "api.sendgrid.com",
        "ftp://api.sendgrid.com",
        "https://",
        "https://api.sendgrid.com:port",
        "https://api send grid.com",
    ],
)
def test_a_malformed_host_is_a_configuration_error(host):
    settings = SendGridSenderSettings()
    environ = {"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": host}
    with pytest.raises(SenderConfigurationError, match="not an API address") as raised:
        make_sender("sendgrid", settings, Settings.from_env(environ))
    assert KEY not in str(raised.value)
