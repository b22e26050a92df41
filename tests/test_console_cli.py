"""`dripmail users`, `dripmail audit` and `dripmail console` as an administrator runs them,
on SQLite and PostgreSQL; publishing from the command line is written to the audit trail."""

from __future__ import annotations

import json
import re
import threading

import httpx
from typer.testing import CliRunner

from campaigns.console.accounts import list_users
from campaigns.console.server import make_server
from campaigns.storage.audit import entries
from campaigns.storage.store import Store
from cli import app as cli_app

runner = CliRunner()
LINK = re.compile(r"^http://127\.0\.0\.1:8030/setup/[A-Za-z0-9_-]{43}$")


def dripmail(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(cli_app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_the_first_admin_is_made_on_a_fresh_database_and_gets_a_link_alone_on_the_last_line(
    store: Store,
):
    added = dripmail("users", "add", "Ana@Clinic.example", "--role", "admin", "--db", store.url)
    assert added.exit_code == 0, added.output
    lines = added.stdout.strip().splitlines()
    assert lines[0].startswith("added admin ana@clinic.example: set-up link valid until ")
    assert LINK.match(lines[-1]), lines[-1]
    again = dripmail("users", "add", "ana@clinic.example", "--role", "viewer", "--db", store.url)
    assert again.exit_code == 2
    assert again.stderr.strip() == "error: email: this address already has an account"
    wrong = dripmail("users", "add", "bo@clinic.example", "--role", "owner", "--db", store.url)
    assert wrong.exit_code == 2
    assert "'owner' is not a role: use viewer|editor|reviewer|admin" in wrong.stderr
    custom = dripmail(
        "users",
        "add",
        "bo@clinic.example",
        "--role",
        "editor",
        "--name",
        "Bo",
        "--db",
        store.url,
        env={"DRIPMAIL_CONSOLE_URL": "https://console.clinic.example/"},
    )
    assert (
        custom.stdout.strip().splitlines()[-1].startswith("https://console.clinic.example/setup/")
    )

    listed = dripmail("users", "list", "--db", store.url)
    assert listed.exit_code == 0
    assert "ana@clinic.example" in listed.stdout and "set-up pending" in listed.stdout

    reset = dripmail("users", "reset", "ANA@clinic.example", "--db", store.url)
    assert reset.exit_code == 0 and LINK.match(reset.stdout.strip().splitlines()[-1])
    assert reset.stdout.strip().splitlines()[-1] != lines[-1]
    disabled = dripmail("users", "disable", "ana@clinic.example", "--db", store.url)
    assert disabled.exit_code == 0
    assert [u.state for u in list_users(store)] == ["disabled", "set-up pending"]
    unknown = dripmail("users", "disable", "nobody@clinic.example", "--db", store.url)
    assert unknown.exit_code == 2 and "no console user has this address" in unknown.stderr

    trail = dripmail("audit", "--db", store.url)
    actions = [line.split("  ")[1:3] for line in trail.stdout.strip().splitlines()]
    assert actions == [
        ["cli", "user.add"],
        ["cli", "user.add"],
        ["cli", "user.reset"],
        ["cli", "user.disable"],
    ]
    as_json = [
        json.loads(line)
        for line in dripmail("audit", "--json", "--db", store.url).stdout.splitlines()
    ]
    assert [e["action"] for e in as_json] == ["user.add", "user.add", "user.reset", "user.disable"]
    assert as_json[0]["detail"] == "role=admin" and as_json[0]["actor"] == "cli"
    later = dripmail("audit", "--since", "2099-01-01", "--db", store.url)
    assert later.stdout.strip() == "no actions recorded yet"
    bad = dripmail("audit", "--since", "yesterday", "--db", store.url)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --since")


def test_publishing_from_the_command_line_is_in_the_audit_trail_as_cli(store: Store, clinic_folder):
    enrolled = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "pat@example.com",
        "--timezone",
        "Europe/London",
        "--db",
        store.url,
        "--now",
        "2026-03-02T12:00",
    )
    assert enrolled.exit_code == 0, enrolled.output
    again = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "sam@example.com",
        "--timezone",
        "Europe/London",
        "--db",
        store.url,
        "--now",
        "2026-03-02T12:00",
    )
    assert again.exit_code == 0
    edited = clinic_folder / "campaign.yaml"
    edited.write_text(edited.read_text().replace("title: Ketamine and Sleep", "title: Sleep", 1))
    applied = dripmail(
        "plan", str(clinic_folder), "--apply", "--db", store.url, "--now", "2026-03-03T12:00"
    )
    assert applied.exit_code == 0, applied.output
    found = [e for e in entries(store) if e.action == "publish"]
    assert [(e.actor, e.object_kind, e.object_id) for e in found] == [
        ("cli", "campaign", "ketamine-and-sleep"),
        ("cli", "campaign", "ketamine-and-sleep"),
    ]
    assert found[0].content_hash != found[1].content_hash  # each version's hash
    text = dripmail("audit", "--db", store.url).stdout
    assert "pat@example.com" not in text and "sam@example.com" not in text
    assert f"cli  publish  campaign ketamine-and-sleep  {found[1].content_hash}" in text


def test_the_console_serves_on_its_own_port_and_a_taken_port_is_one_line(store: Store):
    server = make_server(store, port=0)
    ready = threading.Event()
    server.on_ready = lambda _url: ready.set()
    thread = threading.Thread(target=server.run_console, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        page = httpx.get(server.url + "sign-in")
        assert page.status_code == 200 and 'autocomplete="current-password"' in page.text
        assert (
            httpx.get(server.url, follow_redirects=False).headers["location"] == "/sign-in?next=/"
        )
        port = server.socket.getsockname()[1]
        taken = dripmail("console", "--port", str(port), "--db", store.url)
        assert taken.exit_code == 2
        assert taken.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}:")
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()
