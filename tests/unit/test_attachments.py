"""A message's attachments (the preference centre's "send me my data") in every writer:
the MIME of SMTP, SES, Mailgun and the file sender, SendGrid's and Postmark's JSON."""

from __future__ import annotations

import base64
import email
import email.policy
import json

from senders.base import Attachment, Message
from senders.mime import to_bytes
from senders.postmark_body import EntryWriter
from senders.sendgrid_body import PayloadWriter

DATA = json.dumps({"contact": {"email": "pat@example.com", "first_name": "Zoë"}}).encode()


def message() -> Message:
    return Message(
        delivery_id="export-1",
        from_name="Balanced Ketamine",
        from_address="care@balancedketamine.example.com",
        to_address="pat@example.com",
        to_name=None,
        subject="Your data from Balanced Ketamine",
        preheader=None,
        html="<p>Attached.</p>",
        text="Attached.\n",
        attachments=(Attachment("my-data.json", "application/json", DATA),),
    )


def test_mime_is_mixed_with_the_alternative_first_and_the_file_byte_for_byte():
    raw = to_bytes(message())
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends CRLF, as SMTP wants
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "multipart/alternative",
        "application/json",
    ]
    (attached,) = parsed.iter_attachments()
    assert attached.get_filename() == "my-data.json"
    assert attached.get_payload(decode=True) == DATA
    assert parsed.get_body(("plain",)).get_content().strip() == "Attached."


def test_a_message_without_attachments_is_written_as_before():
    raw = to_bytes(Message(**{**message().__dict__, "attachments": ()}))
    assert b"multipart/alternative" in raw and b"multipart/mixed" not in raw


def test_sendgrid_and_postmark_carry_the_file_base64():
    content = base64.b64encode(DATA).decode()
    body = PayloadWriter().payload(message())
    assert body["attachments"] == [
        {
            "content": content,
            "filename": "my-data.json",
            "type": "application/json",
            "disposition": "attachment",
        }
    ]
    entry = EntryWriter().entry(message())
    assert entry["Attachments"] == [
        {"Name": "my-data.json", "Content": content, "ContentType": "application/json"}
    ]
