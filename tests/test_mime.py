"""The fast MIME writer parses to the same message as the standard `email` package's."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from senders.base import Message
from senders.mime import build_mime, to_bytes

TOKEN = "x" * 120
HEADERS = {
    "Message-ID": "<dripmail.1.abc@clinic.example>",
    "List-Unsubscribe": f"<https://mail.clinic.example/u/{TOKEN}>, "
    f"<mailto:care@clinic.example?subject=unsubscribe%20{TOKEN}>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


def message(subject="Sleep", name="Pat", from_name="Clinic", body="Hello", html="<p>Hello</p>"):
    return Message(
        delivery_id="1",
        from_name=from_name,
        from_address="care@clinic.example",
        to_address="pat@example.com",
        to_name=name,
        subject=subject,
        preheader=None,
        html=html,
        text=body,
        reply_to="care@clinic.example",
        headers=HEADERS,
        date=datetime(2026, 3, 9, 14, 0, tzinfo=UTC),
    )


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def same_message(msg: Message) -> None:
    fast = parsed(to_bytes(msg))
    reference = parsed(build_mime(msg).as_bytes())
    for name in ("Reply-To", "Subject", "Date", *HEADERS):
        assert str(fast[name]) == str(reference[name]), name
    for name in ("From", "To"):
        (ours,), (theirs,) = fast[name].addresses, reference[name].addresses
        assert ours.addr_spec == theirs.addr_spec
        # The stdlib parser keeps the folding space between two encoded words of a
        # display name (RFC 2047 6.2 says to drop it), wherever each builder folded.
        assert "".join(ours.display_name.split()) == "".join(theirs.display_name.split()), name
    assert fast.get_content_type() == "multipart/alternative"
    fast_parts = [(p.get_content_type(), p.get_content()) for p in fast.iter_parts()]
    reference_parts = [(p.get_content_type(), p.get_content()) for p in reference.iter_parts()]
    assert fast_parts == reference_parts
    assert fast.defects == [] and all(p.defects == [] for p in fast.iter_parts())


@settings(max_examples=150, deadline=None)
@given(subject=text, name=text, from_name=text.filter(str.strip), body=text, html=text)
def test_fast_writer_parses_like_the_standard_package(subject, name, from_name, body, html):
    same_message(message(subject, name or None, from_name, body, html))


def test_hostile_names_and_subjects_never_add_a_header():
    msg = message(
        subject="Hi\r\nBcc: victim@example.com",
        name="Pat;\r\nX-Evil: 1",
        from_name="Clinic, Inc; Care\nTeam",
    )
    raw = to_bytes(msg)
    result = parsed(raw)
    assert result["Bcc"] is None and result["X-Evil"] is None
    assert str(result["Subject"]) == "Hi Bcc: victim@example.com"
    assert result["To"].addresses[0].display_name == "Pat; X-Evil: 1"
    assert result["From"].addresses[0].display_name == "Clinic, Inc; Care Team"


def test_long_lines_are_folded_and_list_unsubscribe_is_never_encoded():
    raw = to_bytes(message(subject="A long subject line " * 8, html="<p>" + "word " * 400))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert all(len(line) <= 78 for line in head.split("\r\n") if "unsubscribe" not in line.lower())
    assert "=?" not in head.split("List-Unsubscribe:")[1]
    body_lines = raw.split(b"\r\n")
    assert max(len(line) for line in body_lines if not line.startswith(b"List-")) <= 998
