"""The SES sender without a server: settings, credentials, messages, and how answers read.

boto3 makes a client without any network call; the calls here never reach one (a
credential error is raised before a request is made, or the answer is built by hand).
"""

from __future__ import annotations

import base64

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from campaigns.authoring.sender_settings import SesSenderSettings
from campaigns.authoring.spec import load_files
from campaigns.settings import Settings
from senders.addresses import NO_SMTPUTF8, NeedsSmtpUtf8
from senders.base import SenderConfigurationError
from senders.registry import make_sender
from senders.ses import DELIVERY_HEADER, SesSender, tag_value
from senders.ses_answers import call
from tests.ses_server import aws_environment
from tests.test_sendgrid import message
from tests.unit.test_settings import CAMPAIGN, campaign_error

FROM = "care@balancedketamine.example.com"


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    aws_environment(monkeypatch)


def test_the_campaign_file_takes_region_and_configuration_set():
    files = {
        "campaign.yaml": CAMPAIGN
        + "sender:\n  type: ses\n  region: eu-west-2\n  configuration_set: clinic-events\n",
        "01-welcome.md": "# Hi\n\nText.\n",
    }
    sender = load_files(files).spec.sender
    assert sender == SesSenderSettings(region="eu-west-2", configuration_set="clinic-events")
    assert sender.concurrency == 4


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ("sender:\n  type: ses\n  region: Ireland\n", "campaign.yaml:13: sender.region: "),
        ("sender:\n  type: ses\n  configuration_set: a b\n", "sender.configuration_set: "),
        ("sender:\n  type: ses\n  api_key_env: X\n", "unknown key 'api_key_env'"),
    ],
)
def test_bad_ses_settings_get_one_line_naming_the_key(block, words):
    assert words in campaign_error(block)


def test_no_credentials_stop_before_anything_is_sent(monkeypatch):
    aws_environment(monkeypatch, credentials=False)
    with pytest.raises(SenderConfigurationError, match="no AWS credentials") as raised:
        make_sender("ses", SesSenderSettings(region="eu-west-1"), Settings.from_env({}))
    assert "AWS_ACCESS_KEY_ID" in str(raised.value) and "\n" not in str(raised.value)


def test_no_region_stops_with_the_key_to_set(monkeypatch):
    aws_environment(monkeypatch, region=None)
    with pytest.raises(SenderConfigurationError, match=r"sender\.region"):
        make_sender("ses", SesSenderSettings(), Settings.from_env({}))


def test_the_region_comes_from_the_campaign_then_the_aws_chain():
    settings = Settings.from_env({})
    assert make_sender("ses", SesSenderSettings(region="us-east-2"), settings).region == "us-east-2"
    # AWS_DEFAULT_REGION, from the AWS chain:
    assert make_sender("ses", SesSenderSettings(), settings).region == "eu-west-1"


@pytest.mark.parametrize(
    "url",
    ["http://email.eu-west-1.amazonaws.com", "ftp://127.0.0.1", "https://", "https://a b.example"],
)
def test_an_endpoint_must_be_https_but_on_this_machine(url):
    with pytest.raises(SenderConfigurationError, match="DRIPMAIL_SES_ENDPOINT_URL"):
        make_sender(
            "ses",
            SesSenderSettings(region="eu-west-1"),
            Settings.from_env({"DRIPMAIL_SES_ENDPOINT_URL": url}),
        )


def test_the_request_carries_the_raw_mime_and_opaque_ids_only():
    sender = SesSender(region="eu-west-1", configuration_set="clinic")
    built = sender.build(message("12", categories=("c-0123456789", "s-9876543210")))
    params = sender.request(built)

    assert params["FromEmailAddress"] == FROM
    assert params["Destination"] == {"ToAddresses": ["patient12@example.com"]}
    assert params["ConfigurationSetName"] == "clinic"
    assert params["EmailTags"] == [
        {"Name": "delivery_id", "Value": "12"},
        {"Name": "campaign", "Value": "c-0123456789"},
        {"Name": "step", "Value": "s-9876543210"},
    ]
    raw = params["Content"]["Raw"]["Data"]
    assert raw == built.prepared and f"{DELIVERY_HEADER}: 12\r\n".encode() in raw
    assert raw.index(b"text/plain") < raw.index(b"text/html")
    sender.close()


def test_an_address_that_needs_smtputf8_fails_alone_when_built():
    sender = SesSender(region="eu-west-1")
    with pytest.raises(NeedsSmtpUtf8, match=NO_SMTPUTF8[:20]):
        sender.build(message("1", to_address="jöran@example.com"))
    # A Unicode domain goes as its A-label, in the envelope and the header.
    params = sender.request(sender.build(message("2", to_address="pat@bücher.example")))
    assert params["Destination"] == {"ToAddresses": ["pat@xn--bcher-kva.example"]}
    sender.close()


def test_tag_values_hold_only_what_ses_takes():
    assert tag_value("test-0a1b") == "test-0a1b"
    assert tag_value("a b/c@d") == "a-b-c-d"


def client_error(code: str, text: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": text}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendEmail",
    )


def raising(exc: Exception):
    def send():
        raise exc

    return send


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("TooManyRequestsException", "Too many requests", 429), "retry"),
        (client_error("ThrottlingException", "Maximum sending rate exceeded.", 400), "retry"),
        (client_error("InternalFailure", "", 500), "retry"),
        (client_error("ServiceUnavailable", "", 503), "retry"),
        (EndpointConnectionError(endpoint_url="https://email.eu-west-1.amazonaws.com"), "retry"),
        (ReadTimeoutError(endpoint_url="https://x"), "ambiguous"),
        (ConnectionClosedError(endpoint_url="https://x"), "ambiguous"),
        (client_error("MessageRejected", "Email address is not verified. The following "
                      f"identities failed the check in region EU-WEST-1: {FROM}", 400), "config"),
        (client_error("MessageRejected", "Email address is not verified. The following "
                      "identities failed the check in region EU-WEST-1: pat@example.com",
                      400), "permanent"),
        (client_error("MessageRejected", "Illegal address", 400), "permanent"),
        (client_error("BadRequestException", "Invalid email address <x@@y>", 400), "permanent"),
        (client_error("UnrecognizedClientException", "The security token is invalid.", 403),
         "config"),
        (client_error("AccessDeniedException", "not authorized to perform ses:SendEmail", 403),
         "config"),
        (client_error("SendingPausedException", "paused", 400), "config"),
        (client_error("AccountSuspendedException", "suspended", 400), "config"),
        (client_error("NotFoundException", "Configuration set <x> does not exist.", 404),
         "config"),
        (ValueError("anything else"), "ambiguous"),
    ],
)  # fmt: skip
def test_each_answer_reads_as_what_to_do_next(exc, kind):
    answer = call(raising(exc), from_address=FROM, hint="see the AWS chain")
    assert answer.kind == kind, answer
    assert "@" not in (answer.error or "")


def test_a_spent_daily_quota_is_not_retried_in_this_run():
    exc = client_error("ThrottlingException", "Daily message quota exceeded.", 400)
    answer = call(raising(exc), from_address=FROM, hint="")
    assert (answer.kind, answer.final) == ("retry", True)


def test_an_answer_names_no_access_key_id():
    exc = client_error("SignatureDoesNotMatch", "Credential=AKIAIOSFODNN7EXAMPLE/20260310", 403)
    answer = call(raising(exc), from_address=FROM, hint="")
    assert answer.kind == "config" and "AKIAIOSFODNN7EXAMPLE" not in answer.error


def test_a_sent_answer_keeps_the_ses_message_id():
    answer = call(lambda: {"MessageId": "0102018e-abc"}, from_address=FROM, hint="")
    assert (answer.kind, answer.provider_id) == ("sent", "0102018e-abc")


def test_the_raw_message_is_base64_on_the_wire():
    # botocore encodes a blob; the stand-in decodes it as SES does.
    assert base64.b64decode(base64.b64encode(b"From: a\r\n\r\nx")) == b"From: a\r\n\r\nx"
