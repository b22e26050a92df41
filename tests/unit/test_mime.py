"""The fast MIME writer parses to the same message as the standard `email` package's."""

from __future__ import annotations

import email
import email.policy
import quopri
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from senders import mime
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
    for name in ("Reply-To", "Date", *HEADERS):
        assert str(fast[name]) == str(reference[name]), name
    # The standard package's own folding sometimes loses a space between encoded
    # words (test_subject_keeps_its_spaces...); ours must give back the subject exactly.
    assert str(fast["Subject"]) == mime._safe(msg.subject)
    assert "".join(str(fast["Subject"]).split()) == "".join(str(reference["Subject"]).split())
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


def test_subject_keeps_its_spaces_where_the_standard_package_loses_one():
    same_message(message(subject="000000000000 0" + "\u00a1" * 7 + "\U00010000" * 4 + " \u00a1"))


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


def test_a_header_name_with_cr_lf_is_left_out_not_written(caplog):
    split = replace(message(), headers={"X-Split\r\nBcc": "thief@x.example", "X-Ok": "1"})
    for raw in (to_bytes(split), build_mime(split).as_bytes()):
        lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert not any(line.lower().startswith(b"bcc") for line in lines)
        assert b"X-Ok: 1" in lines
    assert "header name 'X-Split\\r\\nBcc' is not valid; left out" in caplog.text


def test_long_lines_are_folded_and_list_unsubscribe_is_never_encoded():
    raw = to_bytes(message(subject="A long subject line " * 8, html="<p>" + "word " * 400))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert all(len(line) <= 78 for line in head.split("\r\n") if "unsubscribe" not in line.lower())
    assert "=?" not in head.split("List-Unsubscribe:")[1]
    body_lines = raw.split(b"\r\n")
    assert max(len(line) for line in body_lines if not line.startswith(b"List-")) <= 998


def test_headers_of_any_length_keep_lines_within_998():
    raw = to_bytes(message(subject="x" * 1200, name="Pat " + "y" * 1200, from_name="Clinic " * 300))
    head = raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    result = parsed(raw)
    assert str(result["Subject"]) == "x" * 1200
    # As above, the stdlib parser keeps the folding space between encoded words.
    assert "".join(result["To"].addresses[0].display_name.split()) == "Pat" + "y" * 1200
    assert " ".join(result["From"].addresses[0].display_name.split()) == ("Clinic " * 300).strip()


QP_LINES = [
    "a=b == c",
    "trailing space ",
    "trailing tab\t",
    "word " * 40,
    "x" * 200,
    "=" * 100,
    "caf\u00e9 \u2019quoted\u2019 " * 12,
    "\u00e9" * 80,
    "bell\x07 and \x7f delete",
    "",
]


def test_cached_quoted_printable_lines_are_the_fresh_encoding():
    mime._QP_LINES.clear()
    for line in QP_LINES:
        fresh = mime._qp_line(line)
        assert mime._QP_LINES[line] == fresh
        assert line in mime._QP_LINES and mime._QP_LINES[line] == fresh  # the kept copy
        assert all(len(part) <= 76 for part in fresh.split(b"\n"))
        assert fresh[-1:] not in (b" ", b"\t")
        assert quopri.decodestring(fresh).decode("utf-8") == line
    text = "\n".join(QP_LINES)
    fresh_text = b"\n".join(map(mime._qp_line, QP_LINES)).replace(b"\n", b"\r\n")
    assert mime._quoted_printable(text, b"\r\n") == fresh_text


def test_line_cache_stays_bounded():
    mime._QP_LINES.clear()
    for number in range(3000):
        mime._QP_LINES[f"Hi Pat{number},"]
    mime._QP_LINES["x" * 5000]  # too long to keep
    assert 0 < len(mime._QP_LINES) <= 1024
    assert "x" * 5000 not in mime._QP_LINES


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(QP_LINES) | text.map(lambda s: s.replace("\r", "")), max_size=8))
def test_quoted_printable_text_decodes_to_the_text(lines):
    body = "\n".join(lines)
    raw = to_bytes(message(body=body + "\u2019"))
    (plain, _) = parsed(raw).iter_parts()
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content().replace("\r\n", "\n") == body + "\u2019\n"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1200), min_size=1, max_size=12))
def test_line_length_check_matches_splitting(lengths):
    content = "\n".join("a" * n for n in lengths)
    assert mime._lines_within(content, 998) == (max(lengths) <= 998)


def test_html_goes_as_7bit_only_when_ascii_with_short_lines():
    for html, encoding in [
        ("<p>Hi</p>\r\n<p>there</p>", "7bit"),
        ("<p>" + "a" * 998 + "</p>", "quoted-printable"),
        ("<p>" + "a" * 991 + "</p>\n<p>b</p>", "7bit"),  # 998 characters: allowed
        ("<p>caf\u00e9</p>", "quoted-printable"),
        ("<p>nul\0</p>", "quoted-printable"),
    ]:
        raw = to_bytes(message(html=html))
        (_, part) = parsed(raw).iter_parts()
        assert part["Content-Transfer-Encoding"] == encoding, html
        assert part.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n") + "\n"
        assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_unix_line_ends_for_files():
    raw = to_bytes(message(body="one\r\ntwo\rthree", html="<p>a</p>\r\n<p>b</p>"), linesep="\n")
    assert b"\r" not in raw
    result = email.message_from_bytes(raw, policy=email.policy.default)
    plain, html = result.iter_parts()
    assert plain.get_content() == "one\ntwo\nthree\n"
    assert html.get_content() == "<p>a</p>\n<p>b</p>\n"


def test_cached_header_lines_follow_the_message():
    first = parsed(to_bytes(message(subject="One", name="Ann")))
    second = parsed(to_bytes(message(subject="Two", name="Bob")))
    assert (str(first["Subject"]), str(second["Subject"])) == ("One", "Two")
    assert first["To"].addresses[0].display_name == "Ann"
    assert second["To"].addresses[0].display_name == "Bob"
    crlf = to_bytes(message(subject="word " * 30))
    lf = to_bytes(message(subject="word " * 30), linesep="\n")
    assert b"\r" not in lf.split(b"\n\n")[0]
    assert crlf.split(b"\r\n\r\n")[0].count(b"\r\n") == lf.split(b"\n\n")[0].count(b"\n")


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))) | st.sampled_from([" a", "a ", "a  b"]))
def test_safe_values_match_the_full_clean_up(value):
    assert mime._safe(value) == " ".join(mime._CONTROL.sub(" ", value).split())


def test_date_lines_keep_their_zone():
    utc = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == paris
    dates = [parsed(to_bytes(replace(message(), date=d)))["Date"] for d in (utc, paris)]
    assert [str(d) for d in dates] == [format_datetime(utc), format_datetime(paris)]
