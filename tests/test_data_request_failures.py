"""A "send me my data" whose sender raises anything, not only dripmail's own errors: the
patient sees a clear 503 and may ask again the same day; the log names no address
(review 1, finding 6)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.storage.tables import events
from campaigns.web.app import create_app
from senders.file import FileSender, NullSender
from tests.test_preference_centre import choose
from tests.test_unsubscribe import NOW, enroll_pat, token_for

ADDRESS = "zebulon.quill@example.org"


class Broken(NullSender):
    """A sender that breaks its contract, as a shared SMTP connection did (finding 5)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def send(self, messages):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ValueError(f"PyMemoryView_FromBuffer(): info->buf must not be NULL <{ADDRESS}>"),
        OSError(f"[Errno 104] Connection reset by peer while sending to {ADDRESS}"),
        KeyError(ADDRESS),
    ],
    ids=["ValueError", "OSError", "KeyError"],
)
def test_a_sender_that_raises_anything_leaves_the_patient_free_to_ask_again(
    store, clinic, tmp_path, caplog, error
):
    token, _claim = token_for(store, enroll_pat(store, clinic, ADDRESS))
    app = create_app(store, environ={}, clock=lambda: NOW, sender_for=lambda _c: Broken(error))
    with caplog.at_level(logging.DEBUG), TestClient(app, base_url="https://mail.clinic.test") as c:
        page = choose(c, token, "p", choice="data")

    assert page.status_code == 503
    assert "We could not send your data just now. Please try again later." in page.text
    with store.connect() as conn:
        assert conn.scalars(select(events.c.type)).all() == []  # not today's: may ask again
    assert type(error).__name__ in caplog.text
    assert ADDRESS not in caplog.text

    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)
    app = create_app(store, environ={}, clock=lambda: NOW, sender_for=lambda _c: sender)
    with TestClient(app, base_url="https://mail.clinic.test") as c:
        again = choose(c, token, "p", choice="data")
    assert again.status_code == 200
    assert "We have sent your data to your email address." in again.text
    assert len(list(outbox.glob("*.eml"))) == 1


def test_a_link_whose_campaign_is_gone_gets_a_page_not_an_error(store, clinic):
    token, _claim = token_for(store, enroll_pat(store, clinic), campaign="no-such-series")
    app = create_app(store, environ={}, clock=lambda: NOW, sender_for=lambda _c: NullSender())
    with TestClient(app, base_url="https://mail.clinic.test") as c:
        page = choose(c, token, "p", choice="data")

    assert page.status_code == 503
    assert "We could not send your data just now." in page.text
