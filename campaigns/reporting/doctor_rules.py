"""`dripmail doctor`'s pure rules: SPF, DKIM and DMARC records read and judged, no I/O.

What Gmail's and Yahoo's bulk-sender rules (February 2024) ask of a From domain: SPF
that authorises the provider, a DKIM key, and a DMARC record (`p=none` at least) that
the From domain falls under. The DNS lookups are campaigns/reporting/doctor_dns.py's;
these functions only read the text DNS gave back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# The SPF include each provider asks its senders to publish (their set-up pages).
PROVIDER_INCLUDES: dict[str, str] = {
    "sendgrid": "sendgrid.net",
    "ses": "amazonses.com",
    "mailgun": "mailgun.org",
    "postmark": "spf.mtasv.net",
}
# SMTP relays whose sending addresses differ from the relay's own name: their include.
RELAY_INCLUDES: dict[str, str] = {
    "smtp.gmail.com": "_spf.google.com",
    "smtp-relay.gmail.com": "_spf.google.com",
    "smtp.office365.com": "spf.protection.outlook.com",
    "smtp.sendgrid.net": "sendgrid.net",
    "smtp.mailgun.org": "mailgun.org",
    "smtp.postmarkapp.com": "spf.mtasv.net",
}
# DKIM selectors a provider publishes by default. SendGrid's domain authentication makes
# s1 and s2; Mailgun's are pdk1/pdk2 (automatic sender security) or smtp/mailo (older
# domains). Postmark's (a date, like 20240101120000pm) and SES's Easy DKIM tokens are
# per account: they must be named (--dkim-selector). For SMTP, the names mail systems
# commonly use (Google Workspace, Microsoft 365, cPanel and others).
DKIM_SELECTORS: dict[str, tuple[str, ...]] = {
    "sendgrid": ("s1", "s2"),
    "mailgun": ("pdk1", "pdk2", "smtp", "mailo"),
    "postmark": (),
    "ses": (),
    "smtp": ("default", "google", "selector1", "selector2", "mail", "dkim"),
}
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: include, a, mx, ptr, exists and redirect count
DMARC_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class Check:
    """One line of `dripmail doctor`: what was checked, whether it passed, and what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""  # what to do when it failed; empty when it passed

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


_SPF_START = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)
_DMARC_START = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)
_MECHANISM = re.compile(
    r"^(?P<qualifier>[+?~-]?)(?P<name>all|include|a|mx|ptr|ip4|ip6|exists)"
    r"(?P<value>[:/].*)?$",
    re.IGNORECASE,
)
_MODIFIER = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9._-]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class SpfTerm:
    """One mechanism of an SPF record: `-all`, `include:x`, `ip4:192.0.2.0/24`, `a`."""

    qualifier: str  # + pass, - fail, ~ softfail, ? neutral
    mechanism: str  # lower case
    value: str  # the domain or network after `:`, `/cidr` kept; "" when none


@dataclass(frozen=True)
class SpfRecord:
    """A parsed SPF record: its mechanisms in order and its redirect, if any."""

    terms: tuple[SpfTerm, ...]
    redirect: str | None = None

    @property
    def lookups(self) -> int:
        """The DNS lookups this record itself costs (its includes' own are extra)."""
        counted = sum(t.mechanism in ("include", "a", "mx", "ptr", "exists") for t in self.terms)
        return counted + (self.redirect is not None)

    @property
    def includes(self) -> tuple[str, ...]:
        return tuple(t.value for t in self.terms if t.mechanism == "include")

    @property
    def all_qualifier(self) -> str | None:
        """The qualifier of `all`, None when the record has none."""
        return next((t.qualifier for t in self.terms if t.mechanism == "all"), None)


class SpfError(ValueError):
    """An SPF record that a receiver would answer permerror for (RFC 7208 4.6)."""


def spf_records(texts: list[str]) -> list[str]:
    """The TXT strings of a name that are SPF records (`v=spf1` then a space or the end)."""
    return [text.strip() for text in texts if _SPF_START.match(text.strip())]


def one_spf_record(domain: str, texts: list[str]) -> str | None:
    """The one SPF record among a name's TXT strings; None if it has none.

    Two or more is a permerror (RFC 7208 3.2): receivers then ignore SPF altogether.
    """
    records = spf_records(texts)
    if len(records) > 1:
        raise SpfError(
            f"{domain} has {len(records)} SPF records (permerror: receivers ignore them all)"
        )
    return records[0] if records else None


def spf_with(record: str | None, mechanisms: list[str]) -> str:
    """`record` with `mechanisms` added after `v=spf1` (those it lacks), or a new record
    ending in `~all` when there is none: the record to publish instead."""
    if record is None:
        return " ".join(["v=spf1", *mechanisms, "~all"])
    words = record.split()
    present = {word.lower().lstrip("+") for word in words}
    added = [m for m in mechanisms if m.lower() not in present]
    return " ".join([words[0], *added, *words[1:]])


def parse_spf(record: str) -> SpfRecord:
    """The terms of an SPF record, or SpfError naming the first one that is not SPF."""
    if not _SPF_START.match(record):
        raise SpfError(f"not an SPF record: {record[:60]!r}")
    terms: list[SpfTerm] = []
    redirect: str | None = None
    for word in record.split()[1:]:
        if match := _MECHANISM.match(word):
            value = (match["value"] or "").removeprefix(":")
            mechanism = match["name"].lower()
            if mechanism in ("include", "exists", "ip4", "ip6") and not value:
                raise SpfError(f"{word!r} needs a value (permerror)")
            if mechanism in ("ip4", "ip6"):
                _network(mechanism, value, word)
            terms.append(SpfTerm(match["qualifier"] or "+", mechanism, value))
        elif match := _MODIFIER.match(word):
            if match["name"].lower() == "redirect":
                if redirect is not None:
                    raise SpfError("two redirect= modifiers (permerror)")
                redirect = match["value"]
        else:
            raise SpfError(f"{word!r} is not an SPF mechanism (permerror)")
    return SpfRecord(tuple(terms), redirect)


def _network(
    mechanism: str, value: str, word: str
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise SpfError(f"{word!r} is not an address or network (permerror)") from None
    if network.version != (4 if mechanism == "ip4" else 6):
        raise SpfError(f"{word!r} holds an address of the other IP version (permerror)")
    return network


def network_of(term: SpfTerm) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an ip4/ip6 term (parse_spf has checked it)."""
    return _network(term.mechanism, term.value, term.value)


@dataclass(frozen=True)
class Dmarc:
    """A DMARC record's tags that doctor judges (RFC 7489 6.3)."""

    policy: str  # p=
    subdomain_policy: str | None = None  # sp=
    adkim: str = "r"  # r relaxed, s strict
    aspf: str = "r"
    rua: str | None = None
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    def policy_for(self, subdomain: bool) -> str:
        """The policy a From domain gets: sp= for a subdomain of where the record is."""
        return (self.subdomain_policy or self.policy) if subdomain else self.policy


class DmarcError(ValueError):
    """A DMARC record receivers would discard (RFC 7489 6.6.3)."""


def dmarc_records(texts: list[str]) -> list[str]:
    """The TXT strings at a `_dmarc` name that are DMARC records."""
    return [text.strip() for text in texts if _DMARC_START.match(text.strip())]


def parse_dmarc(record: str) -> Dmarc:
    """The tags of a DMARC record, or DmarcError saying why a receiver would ignore it."""
    if not _DMARC_START.match(record):
        raise DmarcError(f"does not start with v=DMARC1: {record[:60]!r}")
    tags: dict[str, str] = {}
    for part in record.split(";")[1:]:
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise DmarcError(f"{part.strip()!r} is not a tag=value pair")
        tags[name.strip().lower()] = value.strip()
    if "p" not in tags:
        raise DmarcError("it has no p= tag (the policy); receivers ignore it")
    policy = tags["p"].lower()
    if policy not in DMARC_POLICIES:
        raise DmarcError(f"p={tags['p']} is not a policy (none, quarantine or reject)")
    subdomain = tags.get("sp", "").lower() or None
    if subdomain is not None and subdomain not in DMARC_POLICIES:
        raise DmarcError(f"sp={tags['sp']} is not a policy (none, quarantine or reject)")
    modes = {}
    for key in ("adkim", "aspf"):
        mode = tags.get(key, "r").lower()
        if mode not in ("r", "s"):
            raise DmarcError(f"{key}={tags[key]} is neither r (relaxed) nor s (strict)")
        modes[key] = mode
    return Dmarc(policy, subdomain, modes["adkim"], modes["aspf"], tags.get("rua"), tags)


def one_dmarc_record(name: str, texts: list[str]) -> Dmarc | None:
    """The DMARC record at `name` (a `_dmarc.` name); None if there is none.

    Several records, like a record with no valid policy, are discarded by receivers
    (RFC 7489 6.6.3): that raises DmarcError.
    """
    records = dmarc_records(texts)
    if len(records) > 1:
        raise DmarcError(f"{name} has {len(records)} DMARC records: receivers ignore them all")
    return parse_dmarc(records[0]) if records else None


def dmarc_candidates(domain: str) -> list[str]:
    """Where a receiver looks for the DMARC record of `domain`, in order (DMARCbis tree
    walk): the domain itself, then each parent down to two labels, never a TLD alone.

    A long name is cut to its last seven labels first, as the walk asks.
    """
    labels = domain.rstrip(".").lower().split(".")
    names = [".".join(labels)]
    if len(labels) > 8:
        labels = labels[-7:]
        names.append(".".join(labels))
    while len(labels) > 2:
        labels = labels[1:]
        names.append(".".join(labels))
    return list(dict.fromkeys(names))


def aligned(domain: str, from_domain: str, organisational: str, mode: str) -> bool:
    """Whether `domain` (a return path's, a DKIM d=) aligns with the From domain: equal
    under strict mode, within the same organisational domain under relaxed (RFC 7489 3.1)."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return domain == from_domain
    return _within(domain, organisational) and _within(from_domain, organisational)


def _within(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def dkim_key_problem(texts: list[str]) -> str | None:
    """Why the TXT strings at a `<selector>._domainkey` name hold no usable DKIM key
    (RFC 6376 3.6.1), None when one does."""
    if not texts:
        return "no DKIM record"
    for text in texts:
        tags = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (part.partition("=") for part in text.split(";"))
            if name.strip()
        )
        if tags.get("v", "DKIM1") != "DKIM1" or "p" not in tags:
            continue
        if not re.sub(r"\s", "", tags["p"]):
            return "the DKIM key is empty (p=): a revoked key"
        return None
    return "no DKIM key (a TXT record with p=)"
