"""A small authoritative DNS server for tests: dnspython messages over a real UDP socket.

It listens on a loopback address (127.0.0.1 or ::1) on a port the OS picks and answers
from the records it was given, as an authoritative server would: the records of the
asked type; a CNAME (and what it points at, when served here) for any other type;
NOERROR with no answer for a name that exists with other types (or only has names
under it); NXDOMAIN for a name that does not exist. Answers are flagged authoritative.
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL = 300


def quoted(text: str) -> str:
    """A TXT value in zone-file form: strings of at most 255 characters, each quoted."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


class DnsTestServer:
    """`with DnsTestServer() as server: server.txt(...); resolver at server.address`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.records: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.queries: list[tuple[str, str]] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.bind((host, 0))
        self._socket.settimeout(0.1)
        self.host = host
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        """The `--resolver` value that names this server."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # -- records --------------------------------------------------------------------

    def add(self, name: str, rdtype: str, value: str) -> DnsTestServer:
        self.records[_key(name)][rdtype.upper()].append(value)
        return self

    def txt(self, name: str, text: str) -> DnsTestServer:
        return self.add(name, "TXT", quoted(text))

    def cname(self, name: str, target: str) -> DnsTestServer:
        return self.add(name, "CNAME", target.rstrip(".") + ".")

    def mx(self, name: str, host: str, preference: int = 10) -> DnsTestServer:
        return self.add(name, "MX", f"{preference} {host.rstrip('.')}.")

    def a(self, name: str, address: str) -> DnsTestServer:
        return self.add(name, "AAAA" if ":" in address else "A", address)

    # -- serving --------------------------------------------------------------------

    def __enter__(self) -> DnsTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:  # a test server ignores what is not DNS
                continue
            self._socket.sendto(self._answer(query).to_wire(), client)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        for _ in range(8):  # follow CNAMEs served here, as far as a resolver would ask
            key = _key(name)
            served = self.records.get(key, {})
            if rdtype in served:
                response.answer.append(_rrset(name, rdtype, served[rdtype]))
                return response
            if "CNAME" in served and rdtype != "CNAME":
                response.answer.append(_rrset(name, "CNAME", served["CNAME"]))
                name = served["CNAME"][0].rstrip(".")
                continue
            if not served and not self._has_below(key) and not response.answer:
                response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        return response

    def _has_below(self, key: str) -> bool:
        return any(other.endswith("." + key) for other in self.records)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _rrset(name: str, rdtype: str, values: list[str]) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name.rstrip(".") + ".", TTL, "IN", rdtype, values)
