"""Confirmation emails while something else happens during the send: a repeated
sign-up, an unsubscribe, the expiry, a refused send (SQLite file and PostgreSQL).

The campaign's own file sender does the sending; a thin wrapper runs the other event
while the provider's answer is pending, as a second request or process would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.delivery.confirm_sending import ConfirmationSender
from campaigns.delivery.sender_pool import SenderPool
from campaigns.errors import DripmailError
from campaigns.planning.confirm_requests import end_requests
from campaigns.planning.confirmations import expire
from campaigns.storage.tables import confirmations
from senders.base import Outcome, SendResult
from tests.test_double_optin import T0, double, emails, sign_up, tick  # noqa: F401 (fixture)


class Meanwhile:
    """The campaign's sender, running `during()` as it sends; `answer` (if given) stands
    for the provider's answer, else the real sender's is returned."""

    def __init__(self, sender, during: Callable[[], None], answer=None) -> None:
        self._sender, self._during, self._answer = sender, during, answer

    def build(self, message):
        return self._sender.build(message)

    def send(self, messages):
        self._during()
        if self._answer is None:
            return self._sender.send(messages)
        return self._answer(messages)


def send_with(store, during, answer=None, *, now):
    pool = SenderPool(None, store.settings)
    try:
        sender = ConfirmationSender(store, lambda c: Meanwhile(pool(c), during, answer))
        return sender.run(now=now)
    finally:
        pool.close()


def transient(messages):
    return [SendResult(m.delivery_id, Outcome.TRANSIENT, error="421 try later") for m in messages]


def request(store):
    with store.connect() as conn:
        return conn.execute(select(confirmations)).one()


def test_a_sign_up_repeated_while_the_resend_goes_owes_no_third_email(store, double):  # noqa: F811
    client, clock, _campaign, outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202
    tick(store, T0)
    clock.now = T0 + timedelta(days=2)
    assert sign_up(client, "pat@example.com").status_code == 202  # owed again
    # The form is posted again (a double click, another serve) while it is being sent.
    report = send_with(store, lambda: sign_up(client, "pat@example.com"), now=clock.now)
    assert report.sent == 1
    tick(store, clock.now + timedelta(seconds=30))
    tick(store, clock.now + timedelta(hours=23))
    assert len(emails(outbox)["pat@example.com"]) == 2
    assert request(store).resent_at == clock.now


@pytest.mark.parametrize("meanwhile", ["unsubscribed", "expired"])
def test_a_refused_send_is_not_owed_again_after_the_request_ended(
    store,
    double,  # noqa: F811
    meanwhile: str,
):
    client, clock, _campaign, outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202
    clock.now = T0 + timedelta(days=7) - timedelta(seconds=1)  # due, and a second to live
    contact_id = request(store).contact_id

    def during() -> None:
        with store.begin() as conn:
            if meanwhile == "unsubscribed":
                end_requests(conn, contact_id, "ketamine-and-sleep", now=clock.now)
            else:
                expire(conn, now=T0 + timedelta(days=7))

    report = send_with(store, during, transient, now=clock.now)
    assert report.failed == 1
    assert request(store).send_due_at is None
    tick(store, clock.now + timedelta(minutes=10))
    assert not outbox.exists() or "pat@example.com" not in emails(outbox)


def test_a_kept_back_campaign_logs_no_address(store, double, caplog):  # noqa: F811
    client, _clock, _campaign, _outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202

    def refuse(messages):
        raise DripmailError(f"the provider refused {messages[0].to_address}")

    with caplog.at_level(logging.WARNING, logger="dripmail.confirm"):
        report = send_with(store, lambda: None, refuse, now=T0)
    assert report.failed == 1
    (line,) = [r.getMessage() for r in caplog.records if "kept back" in r.getMessage()]
    assert "pat@example.com" not in caplog.text
    assert line == (
        f"confirmations {request(store).id} of campaign ketamine-and-sleep kept back: DripmailError"
    )
    assert request(store).send_due_at == T0 + timedelta(minutes=5)  # owed again
