"""`dripmail doctor`'s pure rules: SPF, DMARC and DKIM records as DNS gives them, judged."""

from __future__ import annotations

import ipaddress

import pytest

from campaigns.errors import InputError
from campaigns.reporting.doctor_dns import resolver_address
from campaigns.reporting.doctor_rules import (
    Dmarc,
    DmarcError,
    SpfError,
    SpfTerm,
    aligned,
    dkim_key_problem,
    dmarc_candidates,
    network_of,
    one_dmarc_record,
    one_spf_record,
    parse_dmarc,
    parse_spf,
    spf_records,
    spf_with,
)

# -- SPF ----------------------------------------------------------------------------------


def test_spf_records_are_told_from_other_txt_records():
    texts = [
        "google-site-verification=abc",
        "v=spf1 include:sendgrid.net -all",
        "v=spf10 not one",  # v=spf1 must be followed by a space or the end
        "V=SPF1 mx",  # the version is case-insensitive (RFC 7208 4.5)
        "v=spf1",
    ]
    assert spf_records(texts) == ["v=spf1 include:sendgrid.net -all", "V=SPF1 mx", "v=spf1"]


def test_two_spf_records_are_a_permerror():
    with pytest.raises(SpfError, match=r"clinic\.example has 2 SPF records"):
        one_spf_record("clinic.example", ["v=spf1 mx -all", "v=spf1 include:sendgrid.net ~all"])
    assert one_spf_record("clinic.example", ["not spf"]) is None


def test_a_record_is_read_into_its_terms():
    record = parse_spf(
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.clinic.example/28 "
        "include:sendgrid.net ?exists:%{i}.x.example ~all"
    )
    assert record.terms[0] == SpfTerm("+", "ip4", "192.0.2.0/24")
    assert record.terms[2] == SpfTerm("+", "a", "")
    assert record.terms[3] == SpfTerm("+", "mx", "mail.clinic.example/28")
    assert record.includes == ("sendgrid.net",)
    assert record.all_qualifier == "~"
    assert record.lookups == 4  # a, mx, include, exists
    assert network_of(record.terms[1]) == ipaddress.ip_network("2001:db8::/32")


def test_redirect_counts_as_a_lookup():
    record = parse_spf("v=spf1 redirect=_spf.clinic.example")
    assert record.redirect == "_spf.clinic.example" and record.lookups == 1
    assert record.all_qualifier is None


@pytest.mark.parametrize(
    ("record", "said"),
    [
        ("v=spf1 include -all", "needs a value"),
        ("v=spf1 ip4:300.1.1.1 -all", "is not an address"),
        ("v=spf1 ip4:2001:db8::1 -all", "other IP version"),
        ("v=spf1 inclde:sendgrid.net -all", "is not an SPF mechanism"),
        ("v=spf1 redirect=a.example redirect=b.example", "two redirect"),
    ],
)
def test_records_receivers_answer_permerror_for(record: str, said: str):
    with pytest.raises(SpfError, match=said):
        parse_spf(record)


def test_the_record_to_publish_keeps_what_is_there():
    assert spf_with("v=spf1 include:_spf.google.com ~all", ["include:sendgrid.net"]) == (
        "v=spf1 include:sendgrid.net include:_spf.google.com ~all"
    )
    assert spf_with("v=spf1 include:sendgrid.net -all", ["include:sendgrid.net"]) == (
        "v=spf1 include:sendgrid.net -all"
    )
    assert spf_with(None, ["ip4:192.0.2.1"]) == "v=spf1 ip4:192.0.2.1 ~all"


# -- DMARC --------------------------------------------------------------------------------


def test_a_dmarc_record_is_read():
    record = parse_dmarc("v=DMARC1; p=reject; sp=none; adkim=s; rua=mailto:d@clinic.example;")
    assert record == Dmarc("reject", "none", "s", "r", "mailto:d@clinic.example")
    assert record.policy_for(subdomain=True) == "none"
    assert record.policy_for(subdomain=False) == "reject"
    assert parse_dmarc("v=DMARC1;p=none").policy_for(subdomain=True) == "none"


@pytest.mark.parametrize(
    ("record", "said"),
    [
        ("v=DMARC1; p=monitor", "p=monitor is not a policy"),
        ("v=DMARC1; rua=mailto:d@x.example", "no p= tag"),
        ("v=DMARC1; p=none; sp=strict", "sp=strict is not a policy"),
        ("v=DMARC1; p=none; aspf=x", "aspf=x is neither"),
        ("v=DMARC1; p=none; garbage", "not a tag=value pair"),
    ],
)
def test_dmarc_records_receivers_discard(record: str, said: str):
    with pytest.raises(DmarcError, match=said):
        parse_dmarc(record)


def test_several_dmarc_records_are_discarded_and_other_txt_ignored():
    name = "_dmarc.clinic.example"
    with pytest.raises(DmarcError, match="2 DMARC records"):
        one_dmarc_record(name, ["v=DMARC1; p=none", "v=DMARC1; p=reject"])
    assert one_dmarc_record(name, ["some other text"]) is None
    assert one_dmarc_record(name, ["v=DMARC1; p=None"]).policy == "none"  # type: ignore[union-attr]


def test_the_dmarc_tree_walk_stops_above_the_tld():
    assert dmarc_candidates("news.mail.clinic.example") == [
        "news.mail.clinic.example",
        "mail.clinic.example",
        "clinic.example",
    ]
    assert dmarc_candidates("Clinic.Example.") == ["clinic.example"]
    long = ".".join(f"l{n}" for n in range(10)) + ".example"  # 11 labels: cut to 7 first
    walk = dmarc_candidates(long)
    assert walk[1] == "l4.l5.l6.l7.l8.l9.example" and walk[-1] == "l9.example"


def test_alignment_relaxed_and_strict():
    assert aligned("bounces.clinic.example", "clinic.example", "clinic.example", "r")
    assert aligned("bounces.clinic.example", "news.clinic.example", "clinic.example", "r")
    assert not aligned("bounces.clinic.example", "clinic.example", "clinic.example", "s")
    assert not aligned("sendgrid.net", "clinic.example", "clinic.example", "r")
    assert not aligned("evilclinic.example", "clinic.example", "clinic.example", "r")


# -- DKIM ---------------------------------------------------------------------------------


def test_dkim_keys():
    assert dkim_key_problem(["v=DKIM1; k=rsa; p=MIGfMA0GCSq GSIb3DQ"]) is None
    assert dkim_key_problem(["k=rsa; p=MIGf"]) is None  # v= is optional
    assert dkim_key_problem([]) == "no DKIM record"
    assert "revoked" in (dkim_key_problem(["v=DKIM1; p="]) or "")
    assert "no DKIM key" in (dkim_key_problem(["v=spf1 -all"]) or "")


# -- --resolver ---------------------------------------------------------------------------


def test_resolver_addresses():
    assert resolver_address("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert resolver_address("192.0.2.53") == ("192.0.2.53", 53)
    assert resolver_address("[::1]:5353") == ("::1", 5353)
    assert resolver_address("::1") == ("::1", 53)
    for bad in ("dns.example:53", "127.0.0.1:99999", "[::1", ""):
        with pytest.raises(InputError):
            resolver_address(bad)
