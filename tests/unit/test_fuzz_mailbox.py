"""Fuzz: any mail that comes back to the clinic's mailbox (bounces, complaints, replies,
spam) is read as what it says or left for a person, never an exception of another kind.

Real shapes, spliced: the bundled DSN, ARF, JMRP, unsubscribe and reply fixtures with any
bytes cut out or put in, and mail made of nothing but random bytes.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from campaigns.compliance.inbound import Keys, read_mail
from tests.unit.fuzz import fuzz_settings, outcome

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mailbox"
MAILS = sorted(p.read_bytes() for p in FIXTURES.glob("*.eml"))
KEYS = Keys.of("fuzz-installation-secret")
PIECES = st.binary(max_size=60) | st.sampled_from(
    [
        b"\r\n\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
        b"--x\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        b"Feedback-Type: abuse\r\n",
        b"Subject: unsubscribe \r\n",
        b"=?utf-8?b?////?=",
        b"\xff\xfe\x00",
    ]
)


def read(raw: bytes):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return outcome(lambda: read_mail(message, raw, KEYS))


@fuzz_settings(max_examples=120)
@given(which=st.integers(0, 100), start=st.integers(0, 6_000), cut=st.integers(0, 80), put=PIECES)
def test_a_returned_mail_spliced_anyhow_is_read_or_left_for_a_person(which, start, cut, put):
    raw = MAILS[which % len(MAILS)]
    start = min(start, len(raw))
    read(raw[:start] + put + raw[start + cut :])  # a Reading or dripmail's own error


@fuzz_settings(max_examples=60)
@given(raw=st.binary(max_size=2_000))
def test_random_bytes_in_the_mailbox_are_read_or_left_for_a_person(raw):
    read(raw)
