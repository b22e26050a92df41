"""`dripmail doctor` against real parts: a DNS server on a loopback port (tests/dns_server.py)
serving a good and a broken domain, the SendGrid stand-in's GET /v3/scopes, aiosmtpd with
STARTTLS and AUTH, `serve`'s app under uvicorn with TLS for the public URL, a SQLite store
with the campaigns published in it; Postmark's GET /server, Mailgun's GET /v4/domains/<name>
and SES's GetEmailIdentity (moto) through their stand-ins.

Certificates are a test CA trusted through SSL_CERT_FILE, the way an operator trusts a
private CA: the https and STARTTLS checks verify for real.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from typer.testing import CliRunner

from campaigns.authoring.sender_settings import (
    FileSenderSettings,
    MailgunSenderSettings,
    PostmarkSenderSettings,
    SesSenderSettings,
)
from campaigns.authoring.spec import load_folder
from campaigns.reporting.doctor_dns import (
    Dns,
    Sending,
    check_dkim,
    check_dmarc,
    check_mx,
    check_spf,
    resolver_address,
)
from campaigns.reporting.doctor_senders import check_sender
from campaigns.settings import Settings
from campaigns.storage.publish import publish
from campaigns.storage.store import Store, head_revision
from campaigns.web.app import create_app, server_config
from campaigns.web.listen import listening_socket
from cli import app as cli_app
from tests.conftest import write_clinic_campaign
from tests.dns_server import DnsTestServer
from tests.mailgun_server import MailgunServer
from tests.postmark_server import TOKEN as POSTMARK_TOKEN
from tests.postmark_server import PostmarkServer
from tests.sendgrid_server import SendGridServer
from tests.ses_server import REGION as SES_REGION
from tests.ses_server import SesServer, aws_environment
from tests.smtp_server import Certificate, SmtpTestServer, make_certificate

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
KEY = "SG.doctor-test-key"
SMTP_LOGIN = ("clinic-relay", "relay password 7")
SECRET = "k" * 43
DKIM_KEY = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7"
    "/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuK"
    "hitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"
)


def serve_good(dns: DnsTestServer) -> None:
    """good.example sends through SendGrid; news.relay.example through an SMTP relay."""
    dns.txt("good.example", "v=spf1 include:sendgrid.net -all")
    dns.txt("good.example", "google-site-verification=abc123")  # other TXT beside SPF
    dns.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ip4:149.72.0.0/16 ~all")
    for selector in ("s1", "s2"):
        target = f"{selector}.domainkey.u4821.wl.sendgrid.net"
        dns.cname(f"{selector}._domainkey.good.example", target)
        dns.txt(target, DKIM_KEY)
    dns.txt("_dmarc.good.example", "v=DMARC1; p=quarantine; rua=mailto:dmarc@good.example")
    dns.mx("good.example", "mx1.good.example")
    dns.a("mx1.good.example", "192.0.2.10")
    # The relay: From a subdomain whose DMARC record is the organisational domain's.
    dns.txt("news.relay.example", "v=spf1 a:mail.relay.example -all")
    dns.a("mail.relay.example", "127.0.0.1")
    dns.txt("mail._domainkey.news.relay.example", DKIM_KEY)
    dns.txt("_dmarc.relay.example", "v=DMARC1; p=none; sp=quarantine; rua=mailto:d@relay.example")
    dns.a("news.relay.example", "192.0.2.20")


def serve_broken(dns: DnsTestServer) -> None:
    """broken.example: SPF without SendGrid, no DKIM key, no DMARC record."""
    dns.txt("broken.example", "v=spf1 include:_spf.google.com ~all")
    dns.txt("_spf.google.com", "v=spf1 ip4:35.190.247.0/24 ~all")
    dns.mx("broken.example", "mx.broken.example")
    dns.a("mx.broken.example", "192.0.2.30")


def campaign_folder(root: Path, name: str, address: str, sender: dict[str, Any]) -> Path:
    folder = write_clinic_campaign(root / name)
    spec_file = folder / "campaign.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec.update(name=name, sender=sender, reply_to=address)
    spec["from"]["address"] = address
    spec["steps"] = spec["steps"][:2]
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def publish_folders(database: Path, *folders: Path) -> None:
    store = Store(str(database))
    with store.begin() as conn:
        for folder in folders:
            publish(conn, load_folder(folder), now=NOW)
    store.close()


class _Announcing(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def serving(store: Store, certificate: Certificate | None) -> Iterator[str]:
    """`serve`'s app under uvicorn, over TLS when given a certificate: its base URL."""
    sock = listening_socket("127.0.0.1", 0)
    config = server_config(create_app(store, environ={}))
    if certificate is not None:
        config.ssl_certfile, config.ssl_keyfile = str(certificate.cert), str(certificate.key)
    server = _Announcing(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "the server did not start"
    scheme = "https" if certificate else "http"
    try:
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    """A test CA's certificate for 127.0.0.1, trusted by this process's TLS clients."""
    made = make_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(made.cert))
    return made


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer(KEY) as server:
        yield server


@pytest.fixture
def relay(certificate: Certificate) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(starttls=certificate.server_context(), credentials=SMTP_LOGIN) as server:
        yield server


@pytest.fixture
def installation(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certificate: Certificate,
    sendgrid: SendGridServer,
    relay: SmtpTestServer,
) -> Iterator[Path]:
    """The environment of a set-up clinic: database, key, public URL served over https,
    SendGrid's key and host, the relay's password. Yields the folder campaigns go in."""
    database = tmp_path / "clinic.db"
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", str(database))
    monkeypatch.setenv("DRIPMAIL_SECRET_KEY", SECRET)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid.url)
    monkeypatch.setenv("DRIPMAIL_SMTP_PASSWORD", SMTP_LOGIN[1])
    store = Store(str(database))
    with serving(store, certificate) as url:
        monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", url)
        yield tmp_path
    store.close()


def smtp_sender(relay: SmtpTestServer) -> dict[str, Any]:
    return {
        "type": "smtp",
        "host": "127.0.0.1",
        "port": relay.port,
        "security": "starttls",
        "username": SMTP_LOGIN[0],
        "return_path": "bounces@relay.example",
    }


def doctor(*args: str) -> Any:
    return CliRunner().invoke(cli_app, ["doctor", *args])


def lines(output: str) -> dict[str, str]:
    """Check name -> its line, from doctor's text output."""
    found = {}
    for line in output.splitlines():
        if line[:2] in ("✓ ", "✗ "):
            name = line[2:].partition(": ")[0]
            found[name] = line
    return found


def test_a_good_set_up_passes_every_line(installation: Path, dns, sendgrid, relay):
    serve_good(dns)
    good = campaign_folder(installation, "good-news", "news@good.example", {"type": "sendgrid"})
    relayed = campaign_folder(
        installation, "relay-care", "care@news.relay.example", smtp_sender(relay)
    )
    publish_folders(installation / "clinic.db", good, relayed)

    result = doctor("--resolver", dns.address)

    assert result.exit_code == 0, result.output
    found = lines(result.output)
    assert all(line.startswith("✓") for line in found.values()), result.output
    assert set(found) == {
        "database",
        "secret key",
        "public URL",
        "public URL /healthz",
        "sender good-news (sendgrid)",
        "unsubscribe good-news",
        "sender relay-care (smtp)",
        "unsubscribe relay-care",
        "SPF good.example",
        "DKIM good.example",
        "DMARC good.example",
        "MX good.example",
        "SPF news.relay.example",
        "DKIM news.relay.example",
        "DMARC news.relay.example",
        "MX news.relay.example",
    }
    assert "all checks passed" in result.output
    assert "include:sendgrid.net" in found["SPF good.example"]
    assert "s1._domainkey, s2._domainkey" in found["DKIM good.example"]
    assert "p=quarantine" in found["DMARC good.example"]
    # A subdomain falls under the organisational domain's record, with its sp= policy.
    assert "_dmarc.relay.example (organisational) p=quarantine" in found["DMARC news.relay.example"]
    assert "smtp 127.0.0.1" in found["SPF news.relay.example"]
    assert "logged in as clinic-relay" in found["sender relay-care (smtp)"]
    assert "mail.send" in found["sender good-news (sendgrid)"]
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in found["unsubscribe good-news"]
    # Read-only questions only: the scopes, a login; nothing was sent.
    assert sendgrid.answers() == {"200": 1} and relay.received == [] and relay.logins == [True]
    # The DNS answers came from the loopback server.
    assert ("_dmarc.good.example", "TXT") in dns.queries


def test_a_broken_domain_names_each_problem_and_exits_1(installation: Path, dns):
    serve_good(dns)
    serve_broken(dns)
    good = campaign_folder(installation, "good-news", "news@good.example", {"type": "sendgrid"})
    broken = campaign_folder(
        installation, "broken-news", "news@broken.example", {"type": "sendgrid"}
    )
    publish_folders(installation / "clinic.db", good, broken)

    result = doctor("--resolver", dns.address)

    assert result.exit_code == 1, result.output
    found = lines(result.output)
    failed = {name for name, line in found.items() if line.startswith("✗")}
    assert failed == {"SPF broken.example", "DKIM broken.example", "DMARC broken.example"}
    assert "include:sendgrid.net (sendgrid) is missing" in found["SPF broken.example"]
    assert (
        "no key at s1._domainkey.broken.example, s2._domainkey.broken.example"
        in (found["DKIM broken.example"])
    )
    assert "no DMARC record at _dmarc.broken.example" in found["DMARC broken.example"]
    assert '_dmarc.broken.example "v=DMARC1; p=none;' in result.output  # the fix
    assert "3 problems found" in result.output


def test_json_lists_every_check_with_its_fix(installation: Path, dns):
    serve_broken(dns)
    broken = campaign_folder(
        installation, "broken-news", "news@broken.example", {"type": "sendgrid"}
    )

    # A folder not yet published (before the first send) is checked as well.
    result = doctor("--resolver", dns.address, "--json", str(broken))

    assert result.exit_code == 1, result.output
    checks = json.loads(result.output)
    assert all(set(c) == {"name", "ok", "detail", "fix"} for c in checks)
    by_name = {c["name"]: c for c in checks}
    assert by_name["DMARC broken.example"]["ok"] is False
    assert by_name["DMARC broken.example"]["fix"].startswith("publish TXT _dmarc.broken.example")
    assert by_name["MX broken.example"] == {
        "name": "MX broken.example",
        "ok": True,
        "detail": "MX mx.broken.example",
        "fix": "",
    }


def test_refused_credentials_and_an_http_public_url_are_named(
    tmp_path: Path, monkeypatch, dns, sendgrid, relay, certificate
):
    serve_good(dns)
    database = tmp_path / "clinic.db"
    good = campaign_folder(tmp_path, "good-news", "news@good.example", {"type": "sendgrid"})
    relayed = campaign_folder(tmp_path, "relay-care", "care@news.relay.example", smtp_sender(relay))
    publish_folders(database, good, relayed)
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", str(database))
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.revoked")
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid.url)
    monkeypatch.setenv("DRIPMAIL_SMTP_PASSWORD", "wrong password")
    store = Store(str(database))
    with serving(store, None) as url:  # plain http on loopback: answers, but is not https
        monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", url)
        result = doctor("--resolver", dns.address)
    store.close()

    assert result.exit_code == 1, result.output
    found = lines(result.output)
    assert found["public URL"].startswith("✗") and "is not https" in found["public URL"]
    assert found["public URL /healthz"].startswith("✓")  # it does answer
    assert "SendGrid refused the key (401)" in found["sender good-news (sendgrid)"]
    assert "refused the username/password" in found["sender relay-care (smtp)"]
    assert "not https" in found["unsubscribe good-news"]
    # Without DRIPMAIL_SECRET_KEY the database's own key signs links: that is a pass.
    assert found["secret key"].startswith("✓") and "kept in the database" in found["secret key"]
    assert "wrong password" not in result.output and "SG.revoked" not in result.output


def test_a_key_without_mail_send_is_refused(installation: Path, dns, sendgrid):
    serve_good(dns)
    sendgrid.scopes = ["stats.read"]
    good = campaign_folder(installation, "good-news", "news@good.example", {"type": "sendgrid"})

    result = doctor("--resolver", dns.address, str(good))

    assert result.exit_code == 1
    assert "lacks the mail.send scope" in lines(result.output)["sender good-news (sendgrid)"]


def test_unreachable_database_and_missing_settings(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = doctor("--resolver", "127.0.0.1:9")
    assert result.exit_code == 1
    found = lines(result.output)
    assert found["database"].startswith("✗ database: cannot open database postgresql")
    assert "Connection refused" in found["database"]
    assert found["public URL"] == "✗ public URL: DRIPMAIL_PUBLIC_URL is not set"
    assert "nothing to check senders or DNS for" in found["campaigns"]


def test_a_database_behind_the_code_says_to_upgrade(tmp_path: Path, monkeypatch):
    database = tmp_path / "old.db"
    Store(str(database)).close()
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0010'")
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", str(database))

    result = doctor("--json")

    database_check = next(c for c in json.loads(result.output) if c["name"] == "database")
    assert database_check["ok"] is False
    assert "at migration 0010" in database_check["detail"]
    assert database_check["fix"] == "dripmail db upgrade"


def test_a_bad_resolver_address_is_one_line_and_exit_2():
    result = doctor("--resolver", "dns.example:53")
    assert result.exit_code == 2
    assert "is not a resolver address" in result.output


# -- DNS lines on their own, against the loopback server --------------------------------

SENDGRID = (Sending("c", "sendgrid"),)


def test_a_dmarc_policy_that_is_not_one_fails(dns):
    dns.txt("_dmarc.odd.example", "v=DMARC1; p=monitor; rua=mailto:d@odd.example")
    check = check_dmarc(Dns(("127.0.0.1", dns.port)), "odd.example", SENDGRID)
    assert not check.ok
    assert check.detail == (
        "_dmarc.odd.example: p=monitor is not a policy (none, quarantine or reject)"
    )


def test_two_spf_records_are_a_permerror(dns):
    dns.txt("twice.example", "v=spf1 include:sendgrid.net -all")
    dns.txt("twice.example", "v=spf1 mx -all")
    check = check_spf(Dns(("127.0.0.1", dns.port)), "twice.example", SENDGRID)
    assert not check.ok
    assert "twice.example has 2 SPF records (permerror" in check.detail


def test_a_domain_with_neither_mx_nor_a_fails(dns):
    dns.txt("nowhere.example", "v=spf1 include:sendgrid.net -all")
    check = check_mx(Dns(("127.0.0.1", dns.port)), "nowhere.example")
    assert not check.ok
    assert "nowhere.example has neither MX nor A/AAAA" in check.detail


def test_spf_over_ten_lookups_is_a_permerror(dns):
    dns.txt("chain.example", "v=spf1 include:l1.chain.example -all")
    for n in range(1, 12):
        dns.txt(
            f"l{n}.chain.example", f"v=spf1 include:l{n + 1}.chain.example include:sendgrid.net"
        )
    dns.txt("l12.chain.example", "v=spf1 -all")
    dns.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ~all")
    check = check_spf(Dns(("127.0.0.1", dns.port)), "chain.example", SENDGRID)
    assert not check.ok
    assert "over the limit of 10 (permerror)" in check.detail


def test_an_include_with_no_record_is_a_permerror(dns):
    dns.txt("typo.example", "v=spf1 include:sendgird.net include:sendgrid.net -all")
    dns.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ~all")
    check = check_spf(Dns(("127.0.0.1", dns.port)), "typo.example", SENDGRID)
    assert not check.ok
    assert "sendgird.net (included) has no SPF record (permerror)" in check.detail


def test_a_chosen_selector_and_a_revoked_key(dns):
    dns.txt("k1._domainkey.pm.example", DKIM_KEY)
    dns.txt("old._domainkey.pm.example", "v=DKIM1; p=")
    resolver = Dns(("127.0.0.1", dns.port))
    postmark = (Sending("c", "postmark"),)
    # Postmark's selector is per account: without one named, nothing can be found.
    assert "its selector is per account" in check_dkim(resolver, "pm.example", postmark, ()).detail
    assert check_dkim(resolver, "pm.example", postmark, ("k1",)).ok
    assert not check_dkim(resolver, "pm.example", postmark, ("old",)).ok


def test_a_resolver_on_ipv6_loopback():
    with DnsTestServer("::1") as server:
        server.mx("v6.example", "mx.v6.example")
        assert check_mx(Dns(resolver_address(server.address)), "v6.example").ok


# -- the other providers' read-only calls, against their stand-ins ------------------------


def test_postmark_token_read_only():
    with PostmarkServer() as server:
        environ = {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN, "POSTMARK_API_HOST": server.url}
        good = check_sender("c", PostmarkSenderSettings(), "clinic.example", _env(environ))
        environ["POSTMARK_SERVER_TOKEN"] = "pm-revoked"
        refused = check_sender("c", PostmarkSenderSettings(), "clinic.example", _env(environ))
        assert [r.answer for r in server.log] == ["200", "401"] and server.accepted == []
    assert good.ok and "accepted the server token (server Clinic)" in good.detail
    assert not refused.ok
    assert refused.detail == "Postmark refused the key (401): check POSTMARK_SERVER_TOKEN"


def test_mailgun_domain_read_only():
    with MailgunServer("key-doctor", "mg.clinic.example") as server:
        environ = {"MAILGUN_API_KEY": "key-doctor", "MAILGUN_API_HOST": server.url}
        config = MailgunSenderSettings(domain="mg.clinic.example")
        good = check_sender("c", config, "clinic.example", _env(environ))
        server.domain_state = "unverified"
        unverified = check_sender("c", config, "clinic.example", _env(environ))
        # Without sender.domain, the From domain is the sending domain Mailgun is asked about.
        other = check_sender("c", MailgunSenderSettings(), "clinic.example", _env(environ))
        environ["MAILGUN_API_KEY"] = "key-wrong"
        refused = check_sender("c", config, "clinic.example", _env(environ))
    assert good.ok and "domain mg.clinic.example is active" in good.detail
    assert "is unverified, not active" in unverified.detail
    assert "no sending domain clinic.example" in other.detail
    assert refused.detail == "Mailgun refused the key (401): check MAILGUN_API_KEY"


def test_ses_identity_read_only(monkeypatch):
    aws_environment(monkeypatch)
    with SesServer() as server:
        server.verify("clinic.example")
        settings = _env({"DRIPMAIL_SES_ENDPOINT_URL": server.url})
        config = SesSenderSettings(region=SES_REGION)
        good = check_sender("c", config, "clinic.example", settings)
        unknown = check_sender("c", config, "elsewhere.example", settings)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHERKEY00000000")
        refused = check_sender("c", config, "clinic.example", settings)
        assert server.moto_sent() == 0
    assert good.ok and "clinic.example is verified for sending" in good.detail
    assert "SES has no identity elsewhere.example" in unknown.detail
    assert refused.detail == "SES refused the request (UnrecognizedClientException)"


def test_a_file_sender_reaches_nobody():
    check = check_sender("c", FileSenderSettings(), "clinic.example", _env({}))
    assert not check.ok and "nothing reaches a patient" in check.detail


def _env(environ: dict[str, str]) -> Settings:
    return Settings.from_env(environ)


def test_a_resolver_that_does_not_answer_is_said_on_each_line():
    with DnsTestServer() as server:
        port = server.port
    # The port is closed now: the kernel refuses the queries (ICMP port unreachable).
    resolver = Dns(("127.0.0.1", port), timeout=0.5)
    checks = [check_spf(resolver, "x.example", SENDGRID), check_mx(resolver, "x.example")]
    assert [c.ok for c in checks] == [False, False]
    assert all(c.detail.startswith("DNS gave no answer for") for c in checks)
    assert checks[1].fix == "check that the resolver answers, then run again"


def test_a_return_path_outside_the_from_domain_is_not_aligned(dns):
    dns.txt("_dmarc.clinic.example", "v=DMARC1; p=none")
    dns.txt("_dmarc.strict.example", "v=DMARC1; p=reject; aspf=s")
    resolver = Dns(("127.0.0.1", dns.port))

    def sending(domain: str) -> tuple[Sending, ...]:
        return (Sending("care", "smtp", "127.0.0.1", return_path_domain=domain),)

    assert check_dmarc(resolver, "clinic.example", sending("bounces.clinic.example")).ok
    elsewhere = check_dmarc(resolver, "clinic.example", sending("mailer.example"))
    assert not elsewhere.ok
    assert "not aligned with From (relaxed SPF alignment): care's return path @mailer.example" in (
        elsewhere.detail
    )
    strict = check_dmarc(resolver, "strict.example", sending("bounces.strict.example"))
    assert not strict.ok and "(strict SPF alignment)" in strict.detail


def test_an_internationalised_from_domain_is_looked_up_as_its_a_label(installation: Path, dns):
    label = "xn--praxis-mller-klb.example"  # praxis-müller.example
    dns.txt(label, "v=spf1 include:sendgrid.net -all")
    dns.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ~all")
    dns.cname(f"s1._domainkey.{label}", "s1.domainkey.u9.wl.sendgrid.net")
    dns.txt("s1.domainkey.u9.wl.sendgrid.net", DKIM_KEY)
    dns.txt(f"_dmarc.{label}", "v=DMARC1; p=none")
    dns.mx(label, f"mx.{label}")
    folder = campaign_folder(
        installation, "praxis", "team@praxis-müller.example", {"type": "sendgrid"}
    )

    result = doctor("--resolver", dns.address, "--json", str(folder))

    assert result.exit_code == 0, result.output
    names = [c["name"] for c in json.loads(result.output)]
    assert f"DMARC {label}" in names and f"DKIM {label}" in names


def test_the_published_campaigns_are_read_from_either_store(store: Store, tmp_path, monkeypatch):
    folder = campaign_folder(tmp_path, "good-news", "news@good.example", {"type": "sendgrid"})
    with store.begin() as conn:
        publish(conn, load_folder(folder), now=NOW)
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", store.url)

    with DnsTestServer() as dns:
        serve_good(dns)
        result = doctor("--resolver", dns.address, "--json")

    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["database"]["ok"] is True
    assert checks["database"]["detail"].endswith(f"reachable, at migration {head_revision()}")
    # The campaign came from the store: its sender and its domain were checked.
    assert "the sendgrid sender needs an API key" in checks["sender good-news (sendgrid)"]["detail"]
    assert checks["DMARC good.example"]["ok"] is True


def test_an_include_shared_by_two_branches_is_no_loop_but_a_self_include_is(dns):
    dns.txt("shared.example", "v=spf1 include:a.shared.example include:b.shared.example -all")
    dns.txt("a.shared.example", "v=spf1 include:sendgrid.net")
    dns.txt("b.shared.example", "v=spf1 include:sendgrid.net")
    dns.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ~all")
    dns.txt("loop.example", "v=spf1 include:again.loop.example -all")
    dns.txt("again.loop.example", "v=spf1 include:loop.example")
    resolver = Dns(("127.0.0.1", dns.port))
    shared = check_spf(resolver, "shared.example", SENDGRID)
    assert shared.ok and "(4 of 10 lookups)" in shared.detail
    loop = check_spf(resolver, "loop.example", SENDGRID)
    assert not loop.ok and "loop.example includes itself (a loop: permerror)" in loop.detail
