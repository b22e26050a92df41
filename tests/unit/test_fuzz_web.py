"""Fuzz: the sign-up API's JSON and the providers' webhook events never make a 500.

The parsers alone (any bytes: the answer is a 4xx, never an exception of another kind),
then through the app on a SQLite file, as a client and SendGrid would send them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.compliance.event_model import ProviderEvent
from campaigns.compliance.mailgun_events import parse_mailgun_payload
from campaigns.compliance.postmark_events import parse_postmark_event
from campaigns.compliance.ses_events import parse_ses_event
from campaigns.errors import DripmailError
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.store import Store
from campaigns.web import signup_api, webhooks
from campaigns.web.app import create_app
from tests.conftest import write_clinic_campaign
from tests.test_webhooks import PUBLIC, signed
from tests.unit.fuzz import fuzz_settings, outcome

TOKEN = "fuzz-token"
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
CLOCK = datetime(2026, 3, 10, 15, tzinfo=UTC)  # the real clock the app sees (webhook ages)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Nesting as deep as a hostile sender likes: far past the recursion limit.
DEEP = st.builds(
    lambda depth, opener, closed: opener * depth + (b"]" * depth if closed else b""),
    st.integers(1, 200_000),
    st.sampled_from([b"[", b'{"a":', b'[{"a":']),
    st.booleans(),
)
BODIES = st.binary(max_size=120) | JSON.map(lambda value: json.dumps(value).encode()) | DEEP


@fuzz_settings(max_examples=150)
@given(raw=BODIES)
def test_the_sign_up_parser_answers_a_body_or_a_4xx(raw):
    try:
        assert isinstance(signup_api._parse(raw), signup_api.SignupIn)
    except signup_api.ApiError as exc:
        assert 400 <= exc.status < 500


@fuzz_settings(max_examples=150)
@given(raw=BODIES)
def test_the_webhook_parser_answers_a_list_or_a_4xx(raw):
    try:
        assert isinstance(webhooks._parse(raw), list)
    except webhooks.WebhookRejected as exc:
        assert 400 <= exc.status < 500


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    store = Store(f"sqlite:///{folder / 'dripmail.db'}")
    campaign = load_folder(write_clinic_campaign(folder / "clinic"))
    # Publishes the campaign (the API enrolls only into published ones) and makes deliveries
    # 1-6 for the events to name.
    enroll(store, campaign, Signup("pat@example.com", "Pat", None, None, "staff"), now=NOW)
    environ = {"DRIPMAIL_API_TOKEN": TOKEN, "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC}
    with TestClient(create_app(store, clock=lambda: CLOCK, environ=environ)) as test_client:
        yield test_client
    store.close()


VALID = {
    "email": "kim@example.com",
    "first_name": "Kim",
    "timezone": "Asia/Kolkata",
    "campaign": "ketamine-and-sleep",
    "signed_up_at": "2026-03-02T16:45",
    "consent": {"source": "clinic website form", "text": "Yes, email me"},
}
SIGNUP_VALUES = JSON | st.sampled_from(
    ["ketamine-and-sleep", "Europe/London", "EST", "2026-03-02T16:45", "pat@example.com", ""]
)


@st.composite
def signups(draw) -> dict:
    """A valid body with a few fields changed, dropped or added: most answers are not 422."""
    body = {**VALID, "email": draw(st.emails() | st.just("pat@example.com"))}
    for key in draw(st.lists(st.sampled_from([*VALID, "extra"]), max_size=2)):
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(SIGNUP_VALUES)
    return body


@fuzz_settings(max_examples=60)
@given(body=signups())
def test_a_sign_up_of_any_shape_is_answered_without_a_500(client, body):
    answer = client.post(
        "/api/v1/enrollments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code in {200, 201, 409, 422}, answer.text


EVENT_VALUES = JSON | st.sampled_from(
    ["bounce", "dropped", "delivered", "open", "click", "spamreport", "unsubscribe",
     "group_unsubscribe", "deferred", "blocked", "1", "2", "6", "test-1", "pat@example.com"]
) | st.integers(-(2**70), 2**70)  # fmt: skip
EVENTS = st.lists(
    st.dictionaries(
        st.sampled_from(["event", "delivery_id", "email", "timestamp", "sg_event_id",
                         "sg_message_id", "category", "type", "reason"]),
        EVENT_VALUES,
        max_size=6,
    ) | JSON,
    max_size=4,
)  # fmt: skip


@fuzz_settings(max_examples=80)
@given(items=EVENTS)
def test_signed_events_of_any_shape_are_stored_or_ignored_without_a_500(client, items):
    body = json.dumps(items).encode()
    answer = client.post("/webhooks/sendgrid", content=body, headers=signed(body, at=CLOCK))
    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert counts["stored"] + counts["duplicates"] + counts["ignored"] == len(items)


# Event-shaped documents: the providers' own keys, with any values, nested a little.
PROVIDER_KEYS = st.sampled_from(
    [
        "event", "event-data", "severity", "reason", "user-variables", "delivery_id",
        "timestamp", "id", "message", "headers", "recipient", "RecordType", "Type",
        "Metadata", "MessageID", "ID", "BouncedAt", "DeliveredAt", "Email", "Recipient",
        "SuppressSending", "SuppressionReason", "eventType", "notificationType", "mail",
        "bounce", "bounceType", "bouncedRecipients", "complaint", "delivery", "tags",
        "messageId", "emailAddress", "commonHeaders", "reject",
    ]
)  # fmt: skip
EVENT_LIKE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PROVIDER_KEYS, inner, max_size=5),
    max_leaves=12,
)


@fuzz_settings(max_examples=150)
@given(payload=EVENT_LIKE | JSON)
# Found by this test: a type field holding a list was looked up in a dict (TypeError).
@example(payload={"eventType": [None]})
@example(payload={"RecordType": []})
def test_each_providers_event_parser_gives_events_or_its_own_error(payload):
    for parse in (
        parse_mailgun_payload,
        parse_postmark_event,
        lambda record: parse_ses_event(record, key="fuzz"),
    ):
        result = outcome(lambda parse=parse: parse(payload))
        assert isinstance(result, list | DripmailError)
        if isinstance(result, list):
            assert all(isinstance(event, ProviderEvent) for event in result)
