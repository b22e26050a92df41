"""The file sender's outbox after a crash: whole files only, settled by their existence,
an index that lists every file once."""

from __future__ import annotations

import csv
import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from senders.base import Message, Outcome
from senders.file import INDEX, FileSender

WHEN = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def message(delivery_id: str, to: str = "pat@example.com", subject: str = "Sleep") -> Message:
    return Message(
        delivery_id=delivery_id,
        from_name="Clinic",
        from_address="care@clinic.example",
        to_address=to,
        to_name="Pat",
        subject=subject,
        preheader=None,
        html="<p>Hello</p>",
        text="Hello",
        date=WHEN,
    )


def index_rows(outbox: Path) -> list[dict[str, str]]:
    with (outbox / INDEX).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_email_is_written_whole_and_indexed_once(tmp_path):
    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)

    results = sender.send([sender.build(message("1")), message("2")])

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert sorted(p.name for p in outbox.iterdir()) == [
        ".index.lock",
        "20260302T150000Z-d1.eml",
        "20260302T150000Z-d2.eml",
        INDEX,
    ]
    parsed = email.message_from_bytes(
        (outbox / "20260302T150000Z-d1.eml").read_bytes(), policy=email.policy.default
    )
    assert parsed["To"] == "Pat <pat@example.com>"
    assert [r["file"] for r in index_rows(outbox)] == [r.provider_id for r in results]


def test_a_message_that_cannot_be_built_fails_alone(tmp_path):
    outbox = tmp_path / "outbox"
    # Building it raises (the MIME writer meets no text): a stand-in for any message's
    # own data the writer cannot take.
    broken = replace(message("2"), html=None)

    results = FileSender(outbox).send([message("1"), broken, message("3")])

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[1].error.startswith("could not build it: ")
    assert sorted(p.name for p in outbox.glob("*.eml")) == [
        "20260302T150000Z-d1.eml",
        "20260302T150000Z-d3.eml",
    ]


def test_settle_says_sent_when_the_file_exists_and_goes_again_when_not(tmp_path):
    outbox = tmp_path / "outbox"
    FileSender(outbox).send([message("1")])
    # A run killed while writing delivery 2: only its temporary file is there.
    leftover = outbox / ".20260302T150000Z-d2.eml.4242-abcd.tmp"
    leftover.write_bytes(b"Subject: half")

    answers = FileSender(outbox).settle(["1", "2"])

    assert [(a.delivery_id, a.outcome, a.provider_id) for a in answers] == [
        ("1", Outcome.SENT, "20260302T150000Z-d1.eml"),
        ("2", Outcome.TRANSIENT, None),
    ]
    assert not leftover.exists()


def test_the_index_is_repaired_from_the_files_after_a_crash(tmp_path):
    outbox = tmp_path / "outbox"
    FileSender(outbox).send([message("1"), message("2", to="sam@example.com", subject="Rest")])
    index = outbox / INDEX
    lines = index.read_text(encoding="utf-8").splitlines(keepends=True)
    # Killed after the second file was renamed into place, halfway through its index line,
    # and the first row written twice by hand.
    index.write_text(lines[0] + lines[1] + lines[1] + lines[2][:20], encoding="utf-8")

    FileSender(outbox).send([message("3")])

    rows = index_rows(outbox)
    assert [r["file"] for r in rows] == [
        "20260302T150000Z-d1.eml",
        "20260302T150000Z-d2.eml",
        "20260302T150000Z-d3.eml",
    ]
    assert (rows[1]["to"], rows[1]["subject"], rows[1]["delivery_id"]) == (
        "sam@example.com",
        "Rest",
        "2",
    )
    assert index.read_text(encoding="utf-8").endswith("\n")
