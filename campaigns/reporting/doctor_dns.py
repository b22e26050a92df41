"""`dripmail doctor`'s DNS checks of a From domain: SPF, DKIM, DMARC, and MX or A.

Every lookup goes through dnspython to one resolver: the system's (/etc/resolv.conf)
or the one `--resolver host:port` names. The records are judged by the pure rules of
campaigns/reporting/doctor_rules.py; this module asks DNS and words the lines.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.resolver

from campaigns.errors import ConfigurationError, InputError
from campaigns.reporting.doctor_rules import (
    DKIM_SELECTORS,
    PROVIDER_INCLUDES,
    RELAY_INCLUDES,
    SPF_LOOKUP_LIMIT,
    Check,
    Dmarc,
    DmarcError,
    SpfError,
    aligned,
    dkim_key_problem,
    dmarc_candidates,
    network_of,
    one_dmarc_record,
    one_spf_record,
    parse_spf,
    spf_with,
)

DEFAULT_TIMEOUT = 3.0
# RFC 7208 4.6.4: at most 10 MX names per mx mechanism, 2 lookups that find nothing.
MX_NAMES_LIMIT = 10
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DnsTrouble(Exception):
    """The resolver gave no answer (a timeout, SERVFAIL): nothing can be said of the record."""


def resolver_address(text: str) -> tuple[str, int]:
    """`--resolver`'s value as (address, port): `127.0.0.1:5353`, `[::1]:5353`, `::1`,
    `192.0.2.53` (port 53). A name is refused: the resolver cannot be looked up."""
    text = text.strip()
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address
    match = _HOST_PORT.match(text)
    address = (match["v6"] or match["host"]) if match else ""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InputError(
            f"{text!r} is not a resolver address: give an IP address and port, like "
            "127.0.0.1:5353 or [::1]:5353",
            field="--resolver",
        ) from None
    port = int(match["port"]) if match and match["port"] else 53
    if not 1 <= port <= 65535:
        raise InputError(f"{port} is not a port number (1-65535)", field="--resolver")
    return address, port


class Dns:
    """Lookups through one resolver; an empty answer is [], a failed one DnsTrouble."""

    def __init__(self, nameserver: tuple[str, int] | None = None, *, timeout: float = 3.0) -> None:
        if nameserver is None:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ConfigurationError(
                    "no DNS resolver is configured on this machine: name one with --resolver"
                ) from None
        else:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [nameserver[0]]
            self.resolver.port = nameserver[1]
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout

    def _ask(self, name: str, rdtype: str) -> list[object]:
        try:
            answer = self.resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            said = f"DNS gave no answer for {rdtype} {name} ({exc.__class__.__name__})"
            raise DnsTrouble(said) from None
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong):
            return []
        return list(answer.rrset or [])

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each one's strings joined (RFC 7208 3.3)."""
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for rdata in self._ask(name, "TXT")
        ]

    def addresses(self, name: str) -> list[str]:
        return [rdata.to_text() for kind in ("A", "AAAA") for rdata in self._ask(name, kind)]

    def mx(self, name: str) -> list[str]:
        """The MX hosts of `name`, lowest preference first; "." is a null MX (RFC 7505)."""
        records = sorted(self._ask(name, "MX"), key=lambda r: r.preference)  # type: ignore[attr-defined]
        return [r.exchange.to_text(omit_final_dot=True) or "." for r in records]  # type: ignore[attr-defined]

    def cname(self, name: str) -> str | None:
        records = self._ask(name, "CNAME")
        return records[0].target.to_text(omit_final_dot=True) if records else None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Sending:
    """How one campaign sends from a From domain: what that asks of the domain's DNS."""

    campaign: str
    provider: str  # the sender's type: smtp, sendgrid, ses, mailgun, postmark, file, null
    smtp_host: str | None = None
    return_path_domain: str | None = None  # the envelope sender's domain, when set


@dataclass
class SpfWalk:
    """A domain's SPF record followed through its includes and redirect."""

    record: str | None = None
    includes: set[str] = field(default_factory=set)
    networks: list[Network] = field(default_factory=list)  # pass-qualified ip4/ip6/a/mx
    lookups: int = 0
    problems: list[str] = field(default_factory=list)

    def authorises(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip.version == n.version and ip in n for n in self.networks)


def walk_spf(dns_: Dns, domain: str) -> SpfWalk:
    """Follow `domain`'s SPF record within the 10-lookup limit (RFC 7208 4.6.4)."""
    walk = SpfWalk()
    chain: list[str] = []  # the records being read, to tell a loop from a shared include

    def visit(name: str, top: bool) -> None:
        if name in chain:
            walk.problems.append(f"{name} includes itself (a loop: permerror)")
            return
        chain.append(name)
        try:
            read(name, top)
        finally:
            chain.pop()

    def read(name: str, top: bool) -> None:
        try:
            record = one_spf_record(name, dns_.txt(name))
            parsed = parse_spf(record) if record else None
        except SpfError as exc:
            walk.problems.append(str(exc))
            return
        if top:
            walk.record = record
        if parsed is None:
            if not top:
                walk.problems.append(f"{name} (included) has no SPF record (permerror)")
            return
        walk.lookups += parsed.lookups
        if walk.lookups > SPF_LOOKUP_LIMIT:
            return
        for term in parsed.terms:
            passing = term.qualifier == "+"
            if term.mechanism == "include":
                walk.includes.add(term.value.lower())
                if "%" not in term.value:  # a macro needs the sender's address: not followed
                    visit(term.value.lower(), False)
            elif term.mechanism in ("ip4", "ip6") and passing:
                walk.networks.append(network_of(term))
            elif term.mechanism in ("a", "mx") and passing:
                # `a`, `a/24`, `a:host`, `a:host/24`: the domain is the record's own if absent.
                target = name + term.value if term.value.startswith("/") else term.value or name
                if term.mechanism == "a":
                    walk.networks += _host_networks(dns_, target)
                    continue
                host, slash, cidr = target.partition("/")
                for exchange in dns_.mx(host)[:MX_NAMES_LIMIT]:
                    walk.networks += _host_networks(dns_, exchange + slash + cidr)
        if parsed.redirect and parsed.all_qualifier is None:
            walk.includes.add(parsed.redirect.lower())
            visit(parsed.redirect.lower(), False)

    visit(domain.lower(), True)
    if walk.lookups > SPF_LOOKUP_LIMIT:
        walk.problems.append(
            f"it needs {walk.lookups} DNS lookups, over the limit of {SPF_LOOKUP_LIMIT} (permerror)"
        )
    return walk


def _host_networks(dns_: Dns, target: str) -> list[Network]:
    host, _, cidr = target.partition("/")
    networks = []
    for address in dns_.addresses(host):
        ip = ipaddress.ip_address(address)
        prefix = int(cidr) if cidr.isdigit() and ip.version == 4 else ip.max_prefixlen
        networks.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    return networks


def _needs(dns_: Dns, sendings: Sequence[Sending]) -> dict[str, str]:
    """What each sending asks of SPF: a label -> the include, or `ip:<address>`."""
    needs: dict[str, str] = {}
    for sending in sendings:
        if sending.provider in PROVIDER_INCLUDES:
            needs[sending.provider] = PROVIDER_INCLUDES[sending.provider]
        elif sending.provider == "smtp" and sending.smtp_host:
            host = sending.smtp_host.lower()
            if host in RELAY_INCLUDES:
                needs[f"smtp {host}"] = RELAY_INCLUDES[host]
                continue
            try:
                ipaddress.ip_address(host.strip("[]"))
                addresses = [host.strip("[]")]
            except ValueError:
                addresses = dns_.addresses(host)
            if not addresses:
                needs[f"smtp {host} (no address in DNS)"] = "ip:?"
            for address in addresses:
                needs[f"smtp {host}" + (f" ({address})" if address != host else "")] = (
                    f"ip:{address}"
                )
    return needs


def check_spf(dns_: Dns, domain: str, sendings: Sequence[Sending]) -> Check:
    """SPF: one valid record, within 10 lookups, authorising every provider that sends."""
    name = f"SPF {domain}"
    try:
        walk = walk_spf(dns_, domain)
        needs = _needs(dns_, sendings)
    except DnsTrouble as exc:
        return Check(name, False, str(exc), "check that the resolver answers, then run again")
    wanted = [f"ip{_version(v[3:])}:{v[3:]}" for v in needs.values() if v.startswith("ip:")]
    wanted += [f"include:{v}" for v in needs.values() if not v.startswith("ip:")]
    wanted = [w for w in wanted if w != "ip4:?"]
    if walk.record is None and not walk.problems:
        return Check(
            name,
            False,
            f"no SPF record (TXT v=spf1) at {domain}",
            f'publish TXT {domain} "{spf_with(None, wanted or ["mx"])}"',
        )
    missing = []
    for label, need in needs.items():
        if need.startswith("ip:"):
            address = need[3:]
            if address == "?" or not walk.authorises(address):
                missing.append(f"{label} is not authorised")
        elif need not in walk.includes:
            missing.append(f"include:{need} ({label}) is missing")
    if walk.problems:
        return Check(
            name,
            False,
            f"{walk.record or 'SPF'}: " + "; ".join(walk.problems + missing),
            f"publish one SPF record at {domain}, within 10 DNS lookups, that names every "
            f"sender of its mail ({' '.join(wanted) or 'your providers'})",
        )
    if missing:
        return Check(
            name,
            False,
            f"{walk.record}: " + "; ".join(missing),
            f'publish TXT {domain} "{spf_with(walk.record, wanted)}" in place of the record',
        )
    lookups = f"{walk.lookups} of 10 lookups"
    if not needs:
        return Check(name, True, f"{walk.record} ({lookups}; no provider of a campaign to name)")
    return Check(name, True, f"{walk.record} authorises {', '.join(needs)} ({lookups})")


def _version(address: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 4


def selectors_for(sendings: Sequence[Sending], chosen: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The DKIM selectors to look at per provider: its defaults, then `--dkim-selector`'s."""
    providers = sorted({s.provider for s in sendings if s.provider in DKIM_SELECTORS})
    return {p: tuple(dict.fromkeys((*DKIM_SELECTORS[p], *chosen))) for p in providers}


def check_dkim(dns_: Dns, domain: str, sendings: Sequence[Sending], chosen: Sequence[str]) -> Check:
    """DKIM: a key at a selector of each provider that sends from the domain."""
    name = f"DKIM {domain}"
    wanted = selectors_for(sendings, chosen)
    if not wanted:
        return Check(
            name,
            False,
            "no campaign sends from it through a provider that signs (file or null sender)",
            "choose a provider in the campaign's sender:, then run again",
        )
    found, missing = [], []
    try:
        for provider, selectors in wanted.items():
            if not selectors:
                missing.append(f"{provider}: its selector is per account")
                continue
            keys = [s for s in selectors if _dkim_found(dns_, f"{s}._domainkey.{domain}")]
            if keys:
                found.append(f"{provider}: " + ", ".join(f"{k}._domainkey" for k in keys))
            else:
                looked = ", ".join(f"{s}._domainkey.{domain}" for s in selectors)
                missing.append(f"{provider}: no key at {looked}")
    except DnsTrouble as exc:
        return Check(name, False, str(exc), "check that the resolver answers, then run again")
    if missing:
        return Check(
            name,
            False,
            "; ".join(missing + found),
            "publish the DKIM records your provider shows for this domain (SendGrid: Sender "
            "Authentication; Mailgun, Postmark, SES: the domain's DNS records), or name the "
            "selector you use with --dkim-selector",
        )
    return Check(name, True, "key found at " + "; ".join(found))


def _dkim_found(dns_: Dns, name: str) -> bool:
    # The resolver follows a CNAME (SendGrid's s1/s2 point at sendgrid.net) to the TXT.
    return dkim_key_problem(dns_.txt(name)) is None


@dataclass(frozen=True)
class DmarcFound:
    """The DMARC record that applies to a domain, and where it was found."""

    at: str  # the domain whose _dmarc name holds it: the organisational domain
    record: Dmarc


def find_dmarc(dns_: Dns, domain: str) -> DmarcFound | None:
    """The record a receiver applies to `domain`: its own, else its nearest parent's.

    A record that receivers would discard raises DmarcError naming where it is.
    """
    for candidate in dmarc_candidates(domain):
        where = f"_dmarc.{candidate}"
        try:
            record = one_dmarc_record(where, dns_.txt(where))
        except DmarcError as exc:
            raise DmarcError(f"{where}: {exc}") from None
        if record is not None:
            return DmarcFound(candidate, record)
    return None


def check_dmarc(dns_: Dns, domain: str, sendings: Sequence[Sending]) -> Check:
    """DMARC: a record with p= none at least that covers the From domain, and the return
    paths the campaigns set aligned with it."""
    name = f"DMARC {domain}"
    fix = (
        f'publish TXT _dmarc.{domain} "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}" '
        "(p=none first, quarantine once the reports show only your own mail)"
    )
    try:
        found = find_dmarc(dns_, domain)
    except DmarcError as exc:
        return Check(name, False, f"{exc}", fix)
    except DnsTrouble as exc:
        return Check(name, False, str(exc), "check that the resolver answers, then run again")
    if found is None:
        return Check(name, False, f"no DMARC record at _dmarc.{domain} or its parents", fix)
    policy = found.record.policy_for(subdomain=found.at != domain.lower())
    unaligned = [
        f"{s.campaign}'s return path @{s.return_path_domain}"
        for s in sendings
        if s.return_path_domain
        and not aligned(s.return_path_domain, domain, found.at, found.record.aspf)
    ]
    where = f"_dmarc.{found.at}" + ("" if found.at == domain.lower() else " (organisational)")
    if unaligned:
        mode = "strict" if found.record.aspf == "s" else "relaxed"
        return Check(
            name,
            False,
            f"{where} p={policy}; not aligned with From ({mode} SPF alignment): "
            + ", ".join(unaligned),
            f"use a return path under {found.at if mode == 'relaxed' else domain}",
        )
    return Check(name, True, f"{where} p={policy}, aligned with From @{domain}")


def check_mx(dns_: Dns, domain: str) -> Check:
    """MX or A: the domain can receive (replies, bounces), which receivers check."""
    name = f"MX {domain}"
    try:
        hosts = dns_.mx(domain)
        if hosts == ["."]:
            return Check(
                name,
                False,
                f"{domain} has a null MX (RFC 7505): it receives no mail, so replies bounce",
                f"publish the MX record of the mailbox that receives {domain}'s mail",
            )
        if hosts:
            return Check(name, True, "MX " + ", ".join(hosts))
        addresses = dns_.addresses(domain)
    except DnsTrouble as exc:
        return Check(name, False, str(exc), "check that the resolver answers, then run again")
    if addresses:
        return Check(name, True, "no MX; A/AAAA " + ", ".join(addresses))
    return Check(
        name,
        False,
        f"{domain} has neither MX nor A/AAAA: receivers refuse mail from a domain that cannot "
        "receive",
        f"publish the MX record of the mailbox that receives {domain}'s mail",
    )


def domain_checks(
    dns_: Dns, domain: str, sendings: Sequence[Sending], selectors: Iterable[str] = ()
) -> list[Check]:
    """Every DNS line for one From domain: SPF, DKIM, DMARC, MX or A."""
    return [
        check_spf(dns_, domain, sendings),
        check_dkim(dns_, domain, sendings, tuple(selectors)),
        check_dmarc(dns_, domain, sendings),
        check_mx(dns_, domain),
    ]
