"""No message strands its batch: one that cannot be built or handed over fails alone,
and rows a stopped run left open are settled by a sender that can tell (the outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update

from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.tables import contacts, deliveries, enrollments
from senders.base import Message, SendResult
from senders.file import FileSender
from tests.helpers import utc

CONSENT = "clinic sign-up form"
SIGNED_UP = utc("2026-03-02T12:00")
NOW = utc("2026-03-02T15:00")  # 10:00 in New York: every first step is due


def enroll_all(store, campaign, addresses: Sequence[str]) -> None:
    for address in addresses:
        signup = Signup(address, "Pat", "America/New_York", "2026-03-02T10:00", CONSENT)
        enroll(store, campaign, signup, now=SIGNED_UP)


def first_steps(store) -> dict[str, tuple[str, str | None, str | None]]:
    """Each contact's first delivery: (status, provider id, error), by address."""
    with store.connect() as conn:
        found = conn.execute(
            select(
                contacts.c.email,
                deliveries.c.status,
                deliveries.c.provider_message_id,
                deliveries.c.error,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(deliveries.c.position == 1)
        ).all()
    return {email: (status, pid, error) for email, status, pid, error in found}


def test_an_email_that_cannot_be_built_does_not_strand_its_batch(store, clinic, tmp_path):
    # On the day this was filed the MIME writer raised UnicodeEncodeError for this address:
    # the run ended in a traceback with all three rows `sending`, later `unknown`.
    enroll_all(store, clinic, ["ok1@example.com", "üser@example.com", "ok2@example.com"])
    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)

    report = Dispatcher(store, lambda _c: sender).run(now=NOW)

    steps = first_steps(store)
    assert steps["ok1@example.com"][0] == steps["ok2@example.com"][0] == "sent"
    status, _, error = steps["üser@example.com"]
    # Sent (once international addresses go) or failed alone with its reason; never stuck.
    assert status == "sent" or (status == "failed" and error.startswith("could not build it"))
    assert report.sent + report.failed == 3 and report.unknown == 0
    assert len(list(outbox.glob("*.eml"))) == report.sent


class BreaksAfter(FileSender):
    """A file sender that raises (a bug, not a configuration problem) after `writes` files."""

    def __init__(self, outbox, writes: int) -> None:
        super().__init__(outbox)
        self.left = writes

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        results = []
        for message in messages:
            if self.left == 0:
                raise RuntimeError("the disk controller said no")
            self.left -= 1
            results += super().send([message])
        return results


def test_a_sender_that_raises_mid_hand_off_has_its_rows_settled(store, clinic, tmp_path):
    addresses = [f"p{i}@example.com" for i in range(4)]
    enroll_all(store, clinic, addresses)
    outbox = tmp_path / "outbox"

    report = Dispatcher(store, lambda _c: BreaksAfter(outbox, writes=2)).run(now=NOW)

    # The two written are sent; the two it never wrote go again later, in a later
    # opening's back-off, never `unknown`: the outbox says they did not go.
    steps = first_steps(store)
    written = {path.name for path in outbox.glob("*.eml")}
    assert len(written) == 2
    assert {pid for status, pid, _ in steps.values() if status == "sent"} == written
    assert sorted(status for status, _, _ in steps.values()) == [
        "scheduled",
        "scheduled",
        "sent",
        "sent",
    ]
    assert (report.sent, report.retrying, report.unknown) == (2, 2, 0)


def test_rows_a_killed_run_left_open_are_settled_by_the_outbox(store, clinic, tmp_path):
    enroll_all(store, clinic, ["kept@example.com", "lost@example.com", "fine@example.com"])
    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)
    Dispatcher(store, lambda _c: sender).run(now=NOW)
    files = {pid: outbox / pid for _, pid, _ in first_steps(store).values()}
    assert len(files) == 3
    # As a run killed mid hand-off leaves them: `kept` written but not recorded (`sending`,
    # its lease run out), `lost` marked `sending` and killed before its file was written,
    # `fine` recovered as `unknown` by a dripmail that could not tell.
    steps = first_steps(store)
    kept, lost, fine = (
        steps[a][1] for a in ("kept@example.com", "lost@example.com", "fine@example.com")
    )
    files[lost].unlink()
    expired = utc("2026-01-01T00:00")
    with store.begin() as conn:
        for pid, status in ((kept, "sending"), (lost, "sending"), (fine, "unknown")):
            conn.execute(
                update(deliveries)
                .where(deliveries.c.provider_message_id == pid)
                .values(
                    status=status,
                    provider_message_id=None,
                    lease_owner="killed",
                    lease_expires_at=expired if status == "sending" else None,
                )
            )

    report = Dispatcher(store, lambda _c: FileSender(outbox), lease=timedelta(minutes=5)).run(
        now=NOW
    )

    steps = first_steps(store)
    assert {status for status, _, _ in steps.values()} == {"sent"}
    assert steps["kept@example.com"][1] == kept and steps["fine@example.com"][1] == fine
    assert (outbox / steps["lost@example.com"][1]).exists()
    assert report.recovered == 3 and report.sent == 1
    assert sorted(p.name for p in outbox.glob("*.eml")) == sorted(
        pid for _, pid, _ in steps.values()
    )
