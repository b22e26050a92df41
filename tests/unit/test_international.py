"""International addresses and control characters at the boundaries (issue 16, points 1 and 3).

One stored form per mailbox (the domain as IDNA A-label), IDN domains sent as A-labels,
a non-ASCII local part only where UTF-8 headers can go, and no control character in a
name, consent text or address.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml

from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from campaigns.planning.contacts import address_hash, display_address, normalise_email
from campaigns.planning.signups import Signup, read_signups, validate
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.personalise import SAMPLE
from senders.addresses import NeedsSmtpUtf8
from senders.base import Message, Outcome
from senders.file import FileSender
from senders.mime import build_mime, to_bytes
from senders.sendgrid_body import PayloadWriter, unsendable

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def message(to: str, delivery_id: str = "1", **changes: object) -> Message:
    base = Message(
        delivery_id=delivery_id,
        from_name="Clinic",
        from_address="care@clinic.example",
        to_address=to,
        to_name="Pat",
        subject="Sleep",
        preheader=None,
        html="<p>Hello</p>",
        text="Hello",
        headers={"Message-ID": f"<dripmail.{delivery_id}.v@clinic.example>"},
        date=NOW,
    )
    return replace(base, **changes)


def parsed(raw: bytes) -> email.message.EmailMessage:
    # Read as text: the bytes parser takes UTF-8 headers (RFC 6532) for undecodable bytes.
    text = raw.decode("utf-8")
    return email.message_from_string(text, policy=email.policy.default)  # type: ignore[return-value]


# -- one stored form per mailbox --------------------------------------------------------


@pytest.mark.parametrize(
    "given", ["pat@bücher.de", "Pat@Bücher.DE", "pat@xn--bcher-kva.de", " PAT@XN--BCHER-KVA.DE "]
)
def test_both_spellings_of_an_idn_domain_are_one_stored_address(given):
    assert normalise_email(given) == "pat@xn--bcher-kva.de"


def test_the_hash_is_of_the_stored_form_whichever_spelling_it_is_given():
    assert address_hash("k", "pat@bücher.de") == address_hash("k", "pat@xn--bcher-kva.de")


def test_idna_2008_keeps_sharp_s_a_letter_of_its_own():
    # IDNA 2003 (Python's "idna" codec) maps ß to "ss": faß.de would become fass.de.
    assert normalise_email("x@faß.de") == "x@xn--fa-hia.de"


def test_a_non_ascii_local_part_is_kept_in_lower_case():
    assert normalise_email("Üser@Example.com") == "üser@example.com"


@pytest.mark.parametrize(
    ("local", "octets"), [("a" * 65, 65), ("ü" * 33, 66), ("b" * 40 + "é" * 13, 66)]
)
def test_a_local_part_over_64_octets_is_refused(local, octets):
    with pytest.raises(ValueError, match=f"{octets} octets long, and mail servers take at most 64"):
        normalise_email(f"{local}@example.com")


def test_a_local_part_of_64_octets_is_taken():
    assert normalise_email("ü" * 32 + "@example.com") == "ü" * 32 + "@example.com"
    assert normalise_email("a" * 64 + "@example.com") == "a" * 64 + "@example.com"


def test_a_malformed_a_label_is_refused():
    with pytest.raises(ValueError, match="not valid IDNA"):
        normalise_email("pat@xn--zz.de")


# -- control characters ------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\0", "\x01", "\x1b", "\x7f", "\x85", "\ud800"])
@pytest.mark.parametrize("field", ["first_name", "consent", "email"])
def test_control_characters_are_refused_naming_the_field(clinic, char, field):
    values = {"email": "pat@example.com", "first_name": "Pat", "consent": "web form"}
    values[field] = values[field][:2] + char + values[field][2:]
    with pytest.raises(InputError) as caught:
        validate(Signup(**values), clinic, now=NOW)
    assert caught.value.field == field
    assert f"U+{ord(char):04X}" in str(caught.value)


def test_line_breaks_in_a_consent_text_are_white_space_as_before(clinic):
    contact = validate(
        Signup("pat@example.com", "Pat\tAnn", consent="front desk\r\nsigned form"),
        clinic,
        now=NOW,
    )
    assert (contact.first_name, contact.consent) == ("Pat Ann", "front desk signed form")


def test_a_csv_row_with_a_nul_is_reported_by_its_line_and_the_rest_read(tmp_path, clinic):
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"email,first_name,consent,phone\n"
        b"ok1@example.com,Ana,form,1\n"
        b"bo@example.com,B\x00o,form,2\n"
        b"cy@example.com,Cy,fo\x01rm,3\n"
        b"di@example.com,Di,form,4\x00\n"
        b"ok2@example.com,Ed,form,5\n"
    )
    read = read_signups(path, clinic, now=NOW)
    assert [contact.email for _, contact in read.valid] == ["ok1@example.com", "ok2@example.com"]
    assert [(line, reason.split(":")[0]) for line, reason in read.rejected] == [
        (3, "first_name"),
        (4, "consent"),
        (5, "phone"),
    ]
    assert all("control character U+00" in reason for _, reason in read.rejected)


def test_a_file_with_a_nul_in_its_header_is_still_refused_as_binary(tmp_path, clinic):
    path = tmp_path / "contacts.xlsx.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00email\nok@example.com\n")
    with pytest.raises(InputError, match="binary content"):
        read_signups(path, clinic, now=NOW)


# -- the MIME writer -----------------------------------------------------------------------


def test_an_idn_domain_goes_as_its_a_label_in_to():
    raw = to_bytes(message("pat@bücher.de"))
    assert b"To: Pat <pat@xn--bcher-kva.de>\r\n" in raw
    assert raw.isascii()
    assert parsed(raw)["To"].addresses[0].addr_spec == "pat@xn--bcher-kva.de"
    reference = parsed(build_mime(message("pat@bücher.de")).as_bytes())
    assert reference["To"].addresses[0].addr_spec == "pat@xn--bcher-kva.de"


def test_a_non_ascii_local_part_needs_utf8_headers():
    with pytest.raises(NeedsSmtpUtf8, match="needs SMTPUTF8"):
        to_bytes(message("üser@example.com"))
    raw = to_bytes(message("üser@bücher.de"), utf8=True)
    # RFC 6532: the address goes as UTF-8, never as an encoded word.
    assert "To: Pat <üser@xn--bcher-kva.de>\r\n".encode() in raw
    assert parsed(raw)["To"].addresses[0].addr_spec == "üser@xn--bcher-kva.de"
    reference = parsed(build_mime(message("üser@bücher.de"), utf8=True).as_bytes())
    assert reference["To"].addresses[0].addr_spec == "üser@xn--bcher-kva.de"


def test_an_ascii_message_is_the_same_with_or_without_utf8():
    plain = message("pat@example.com")
    first, second = to_bytes(plain), to_bytes(plain, utf8=True)
    boundary = parsed(first).get_boundary()
    assert first == second.replace(parsed(second).get_boundary().encode(), boundary.encode())


# -- the file sender ---------------------------------------------------------------------------


def test_the_file_sender_writes_every_message_of_a_batch(tmp_path):
    batch = [
        message("ok1@example.com", "1"),
        message("pat@bücher.de", "2"),
        message("üser@example.com", "3"),
        message("bad@bü\x00cher.de", "4"),
        message("ok2@example.com", "5"),
    ]
    results = FileSender(tmp_path).send(batch)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3 + [Outcome.PERMANENT, Outcome.SENT]
    assert "cannot be encoded" in (results[3].error or "")
    files = {r.delivery_id: parsed((tmp_path / r.provider_id).read_bytes()) for r in results[:3]}
    assert files["2"]["To"].addresses[0].addr_spec == "pat@xn--bcher-kva.de"
    assert files["3"]["To"].addresses[0].addr_spec == "üser@example.com"


# -- SendGrid -----------------------------------------------------------------------------------


def test_sendgrid_gets_the_a_label_and_refuses_a_non_ascii_local_part():
    body = PayloadWriter().payload(message("pat@bücher.de"))
    assert body["personalizations"][0]["to"][0]["email"] == "pat@xn--bcher-kva.de"
    assert unsendable(message("pat@bücher.de")) is None
    reason = unsendable(message("üser@example.com"))
    assert reason is not None and "SMTPUTF8" in reason and "SendGrid" in reason


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("pat@xn--bcher-kva.de", "pat@bücher.de"),
        ("ana@example.com", "ana@example.com"),
        ("ümit@example.com", "ümit@example.com"),
        ("pat@xn--zzz-.de", "pat@xn--zzz-.de"),  # not a valid A-label: shown as stored
    ],
)
def test_a_stored_address_is_shown_with_its_domain_as_a_person_reads_it(stored, shown):
    assert display_address(stored) == shown


def test_an_idn_from_domain_goes_as_its_a_label_in_message_id_and_list_unsubscribe(
    clinic_folder,
):
    # Found by `dripmail doctor` on a campaign from team@praxis-müller.example: the
    # Message-ID and the unsubscribe mailto kept the U-label, and the ASCII headers SES,
    # Mailgun and SMTP without SMTPUTF8 take could not be written.
    spec_file = clinic_folder / "campaign.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec["from"]["address"] = spec["reply_to"] = "team@praxis-müller.example"
    spec_file.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    campaign = load_folder(clinic_folder)
    compiled = compile_campaign(campaign)
    built = contact_message(
        compiled,
        campaign.steps[0].key,
        SAMPLE,
        LinkBase.of(campaign, "https://mail.clinic.example").signed("TOKEN"),
        delivery_id="7",
        date=NOW,
    )
    headers = email.message_from_bytes(to_bytes(built), policy=email.policy.default)
    a_label = "xn--praxis-mller-klb.example"
    assert str(headers["Message-ID"]).endswith(f"@{a_label}>")
    assert f"<mailto:team@{a_label}?subject=unsubscribe%20TOKEN>" in str(
        headers["List-Unsubscribe"]
    )
