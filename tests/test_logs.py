"""Data hygiene: at DEBUG, the output and logs of import, run and serve hold no address or name."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import contacts, deliveries
from campaigns.web.app import create_app, server_config
from campaigns.web.listen import listening_socket
from cli import app as cli_app

PEOPLE = [
    ("zebulon.quill@example.org", "Zebulon", "America/New_York"),
    ("philippa.marchbanks@example.net", "Philippa", "Europe/London"),
    ("octavia.brightwater@example.com", "Octavia", "Australia/Sydney"),
]
API_KEY = "SG.not-a-real-key.do-not-print-me"
CONSENT = "Yes, Marchbanks-Quill may email me the sleep series"


def leaks(text: str) -> list[str]:
    """Every address, address local part or first name of PEOPLE found in `text`."""
    lowered = text.lower()
    found = []
    for address, name, _zone in PEOPLE:
        for needle in (address, address.split("@")[0], name):
            if needle.lower() in lowered:
                found.append(needle)
    return found


@pytest.fixture
def debug(monkeypatch, caplog):
    monkeypatch.setenv("DRIPMAIL_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy sets its own loggers to WARNING: DEBUG for them too, so the statements,
    # their parameters and the rows fetched would all be seen if they leaked.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    return caplog


def test_import_and_run_at_debug_print_and_log_no_address_or_name(
    tmp_path, clinic_folder, monkeypatch, debug
):
    monkeypatch.chdir(tmp_path)  # the file sender's outbox goes here
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(f"{a},{n},{z},2026-03-02T08:00,clinic form\n" for a, n, z in PEOPLE)
    )
    db = str(tmp_path / "hygiene.db")
    runner = CliRunner()
    outputs = []
    imported = runner.invoke(
        cli_app,
        ["import", str(clinic_folder), str(csv_file), "--db", db, "--now", "2026-03-02T08:00Z"],
    )
    outputs.append(imported)
    assert imported.exit_code == 0, imported.output
    assert "imported 3" in imported.stdout
    for now in ("2026-03-02T15:00Z", "2026-03-03T01:00Z", "2026-03-04T15:00Z"):
        ran = runner.invoke(cli_app, ["run", "--once", "--now", now, "--db", db])
        assert ran.exit_code == 0, ran.output
        outputs.append(ran)
    status = runner.invoke(cli_app, ["status", "--db", db])
    outputs.append(status)

    store = Store(db)
    with store.connect() as conn:
        sent = conn.execute(select(deliveries).where(deliveries.c.status == "sent")).all()
    store.close()
    assert len(sent) >= 3  # the run really sent: there was something to leak
    assert any("sent" in r.stdout for r in outputs[1:])
    assert debug.records, "DEBUG logging was on and something logged"
    for result in outputs:
        assert leaks(result.stdout) == [], result.stdout
        assert leaks(result.stderr) == [], result.stderr
        assert API_KEY not in result.output
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in debug.records)
    assert leaks(logged) == [], logged
    assert API_KEY not in logged


def test_serve_at_debug_logs_no_address_name_or_key(store, clinic, debug):
    from campaigns.planning.enroll import enroll
    from campaigns.planning.signups import Signup

    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    for address, name, zone in PEOPLE:
        enroll(
            store,
            clinic,
            Signup(address, name, zone, "2026-03-02T08:00", "form"),
            now=utcnow(),
        )
    with store.connect() as conn:
        contact_id = conn.scalar(select(contacts.c.id).where(contacts.c.email == PEOPLE[0][0]))
    token = Signer(store.secret_key()).token(UnsubscribeClaim(contact_id, clinic.name, None))
    body = json.dumps(
        [
            {"event": "bounce", "email": PEOPLE[1][0], "sg_event_id": "b1", "timestamp": 1},
            {"event": "open", "email": PEOPLE[2][0], "sg_event_id": "o1", "timestamp": 1},
        ]
    ).encode()
    stamp = str(int(utcnow().timestamp()))
    signature = base64.b64encode(private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256())))
    app = create_app(store, environ={"SENDGRID_WEBHOOK_PUBLIC_KEY": public})
    with TestClient(app) as client:
        pages = [
            client.get(f"/u/{token}"),
            client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}),
            client.post(
                "/webhooks/sendgrid",
                content=body,
                headers={
                    "X-Twilio-Email-Event-Webhook-Signature": signature.decode(),
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                },
            ),
            client.post("/webhooks/sendgrid", content=body),  # refused: logged as such
        ]
    assert [p.status_code for p in pages] == [200, 200, 200, 401]
    for page in pages:
        assert leaks(page.text) == []
    # The test client's own request log (logger "httpx") is the caller's, not the server's.
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in debug.records if r.name != "httpx")
    assert "sendgrid events: 2 stored" in logged
    assert "unsubscribe: contact" in logged
    assert leaks(logged) == [], logged
    assert public not in logged
    assert token not in logged


def test_a_database_error_shows_the_statement_but_no_value(store, debug):
    """The engine hides parameters: the error and SQLAlchemy's own log lines name no value."""
    from sqlalchemy import insert
    from sqlalchemy.exc import DBAPIError

    address, name, _zone = PEOPLE[1]
    # PostgreSQL refuses the NUL; SQLite, the missing time zone.
    row = {"email": address, "first_name": f"{name}\x00", "timezone": None}
    row |= {"consent_source": CONSENT, "consent_at": utcnow(), "created_at": utcnow()}
    with pytest.raises(DBAPIError) as failure, store.begin() as conn:
        conn.execute(insert(contacts).values(**row))
    message = str(failure.value)
    assert "INSERT INTO contacts" in message  # the statement's shape stays, to debug by
    assert leaks(message) == [] and CONSENT not in message, message
    logged = "\n".join(debug.handler.format(r) for r in debug.records)
    assert "INSERT INTO contacts" in logged
    assert leaks(logged) == [] and CONSENT not in logged, logged


class _Announcing(uvicorn.Server):
    """uvicorn, saying when it is ready."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def serving(store: Store, environ: dict[str, str]) -> Iterator[str]:
    """`serve`'s app under uvicorn as `serve` runs it, on a free port: its base URL."""
    sock = listening_socket("127.0.0.1", 0)
    server = _Announcing(server_config(create_app(store, environ=environ)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


def test_serve_on_postgresql_logs_nothing_of_a_signup_with_a_nul_in_the_name(
    postgres_url, clinic, debug
):
    """PostgreSQL refuses NUL in text; the error it raises, logged at DEBUG with every
    logger on (SQLAlchemy's included), shows the statement's shape only."""
    from campaigns.planning.enroll import enroll
    from campaigns.planning.signups import Signup

    store = Store(postgres_url)
    # Publish the campaign: the API enrolls only into published campaigns.
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=utcnow())
    address, name, zone = PEOPLE[0]
    body = {
        "email": address,
        "first_name": f"{name}\x00",
        "timezone": zone,
        "campaign": clinic.name,
        "consent": {"source": "clinic website form", "text": CONSENT},
    }
    try:
        with serving(store, {"DRIPMAIL_API_TOKEN": "t0ken"}) as url:
            answer = httpx.post(
                f"{url}/api/v1/enrollments",
                json=body,
                headers={"Authorization": "Bearer t0ken"},
                timeout=30,
            )
        with store.connect() as conn:
            stored = conn.scalar(select(contacts.c.id).where(contacts.c.email == address))
    finally:
        store.close()
    assert answer.status_code == 422, answer.text
    assert stored is None
    # Formatted as a handler writes them: a traceback logged with a record is included.
    logged = "\n".join(debug.handler.format(r) for r in debug.records if r.name != "httpx")
    assert leaks(logged) == [] and CONSENT not in logged, logged
    assert leaks(answer.text) == [] and CONSENT not in answer.text
