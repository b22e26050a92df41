"""Steps for some patients only (`when:`) and contact attributes, end to end.

A real store (SQLite and PostgreSQL), the real dispatcher, the file sender's outbox read
back as a patient's mail client would, SendGrid's signed Event Webhook for clicks, the
sign-up API, and the CLI as staff type it.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

import cli
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.contacts import retag
from campaigns.planning.edits import apply_edit, plan_edit
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.storage.tables import contacts, deliveries, enrollments
from campaigns.web.app import create_app
from senders.file import FileSender, NullSender
from tests.helpers import utc
from tests.sendgrid_server import SendGridServer
from tests.test_sendgrid import KEY, FakeTime, sender_factory
from tests.test_sendgrid_batch import received
from tests.test_webhooks import app_client, event, post

NAME = "ketamine-and-sleep"
START = utc("2026-03-02T13:00")  # 08:00 in New York: every contact signs up then
RETURNING = "returning"


def add_conditions(folder: Path, conditions: dict[int, str]) -> Campaign:
    """campaign.yaml with `when:` YAML (indented under the step) added to steps by index."""
    path = folder / "campaign.yaml"
    lines = path.read_text().splitlines()
    out, step = [], -1
    for line in lines:
        out.append(line)
        if line.startswith("- file:"):
            step += 1
        if line.startswith("  delay:") and step in conditions:
            out.append("  when:")
            out.extend(f"    {row}" for row in conditions[step].splitlines())
    path.write_text("\n".join(out) + "\n")
    return load_folder(folder)


def add_to_step(folder: Path, campaign: Campaign, index: int, line: str) -> None:
    """A paragraph of Markdown right under the step's heading."""
    path = folder / campaign.steps[index].file
    text = path.read_text()
    cut = text.index("\n", text.index("\n# ") + 1)
    path.write_text(text[:cut] + "\n\n" + line + text[cut:])


def import_patients(store, campaign: Campaign, tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "patients.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = import_csv(store, campaign, path, now=START, consent="clinic sign-up form")
    assert report.enrolled == len(rows) and not report.rejected, report.rejected


def outbox_mail(outbox: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]


def recipients_of(mails, subject: str) -> set[str]:
    return {str(m["To"].addresses[0].addr_spec) for m in mails if m["Subject"] == subject}


def rows_of_step(store, key: str) -> dict[str, tuple]:
    """address -> (status, error, due_at, id) of each contact's delivery of step `key`."""
    with store.connect() as conn:
        return {
            row.email: (row.status, row.error, row.due_at, row.id)
            for row in conn.execute(
                select(
                    contacts.c.email,
                    deliveries.c.status,
                    deliveries.c.error,
                    deliveries.c.due_at,
                    deliveries.c.id,
                )
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .join(contacts, contacts.c.id == enrollments.c.contact_id)
                .where(deliveries.c.step_key == key)
            )
        }


def run_days(dispatchers, start, days: int) -> None:
    """Every dispatcher in turn, every 2 hours of engine time, for `days` days."""
    at = start
    while at <= start + timedelta(days=days):
        for dispatcher in dispatchers:
            dispatcher.run(now=at)
        at += timedelta(hours=2)


def test_tags_none_reaches_exactly_the_contacts_without_the_tag_when_it_is_due(
    store, clinic_folder, tmp_path
):
    campaign = add_conditions(
        clinic_folder, {1: f"tags_none: [{RETURNING}]", 2: "attributes: {patient_type: new}"}
    )
    add_to_step(
        clinic_folder,
        campaign,
        2,
        'As a {{ attributes.patient_type | default("new") }} patient of '
        "{{ attributes.clinic }}, {{ attributes.missing }}read on.",
    )
    campaign = load_folder(clinic_folder)
    assert campaign.steps[1].when.tags_none == (RETURNING,)
    people = [
        {
            "email": f"p{i:02d}@example.com",
            "first_name": f"P{i}",
            "timezone": "America/New_York",
            "signed_up_at": START.isoformat(),
            "tags": RETURNING if i < 10 else "",
            "Patient Type": ("New " if i % 3 == 0 else "returning") if i != 7 else "",
            "Clinic": "<script>alert(1)</script> & North" if i == 0 else "North",
        }
        for i in range(40)
    ]
    import_patients(store, campaign, tmp_path, people)
    outbox = tmp_path / "outbox"
    # Two workers share the work (as `dripmail run --workers 2` would), small batches.
    workers = [Dispatcher(store, lambda _c: FileSender(outbox), batch_size=7) for _ in range(2)]
    run_days(workers, START, 1)  # the welcome email
    third_due = rows_of_step(store, campaign.steps[2].key)

    # Between enrollment and the due time: tags change.
    for i in range(5):
        retag(store, f"p{i:02d}@example.com", remove=[RETURNING])  # no longer returning
    for i in range(10, 15):
        retag(store, f"p{i:02d}@example.com", add=[RETURNING])  # returning now
    run_days(workers, START + timedelta(days=1), 2)  # step 2 comes due (2 days)
    # A tag added after step 2 was decided changes nothing of it.
    retag(store, "p20@example.com", add=[RETURNING])
    run_days(workers, START + timedelta(days=3), 3)  # step 3 comes due (4 days)

    mails = outbox_mail(outbox)
    second, third = campaign.steps[1], campaign.steps[2]
    without_tag = {f"p{i:02d}@example.com" for i in (*range(5), *range(15, 40))}
    assert recipients_of(mails, second.subject) == without_tag
    assert len([m for m in mails if m["Subject"] == second.subject]) == len(without_tag)
    rows = rows_of_step(store, second.key)
    skipped = {address for address, (status, *_) in rows.items() if status == "skipped"}
    assert skipped == {f"p{i:02d}@example.com" for i in range(5, 15)}
    assert {rows[a][1] for a in skipped} == {"condition not met: has tag returning"}

    # Attribute equality, case and spaces aside; a contact without it is skipped.
    new = {f"p{i:02d}@example.com" for i in range(40) if i % 3 == 0 and i != 7}
    assert recipients_of(mails, third.subject) == new
    rows = rows_of_step(store, third.key)
    assert rows["p07@example.com"][:2] == (
        "skipped",
        "condition not met: has no patient_type (wanted 'new')",
    )
    assert rows["p01@example.com"][1] == (
        "condition not met: patient_type is 'returning', not 'new'"
    )
    # The next step keeps its own due time, whether the one before went or not.
    assert {a: r[2] for a, r in rows.items()} == {a: r[2] for a, r in third_due.items()}

    # Attributes render as the contact's text, escaped in HTML; a missing one is empty.
    mail = next(m for m in mails if m["To"].addresses[0].addr_spec == "p00@example.com"
                and m["Subject"] == third.subject)  # fmt: skip
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "As a New patient of &lt;script&gt;alert(1)&lt;/script&gt; &amp; North, read on." in (
        html
    )
    assert "<script>" not in html
    assert "As a New patient of <script>alert(1)</script> & North, read on." in text


def test_a_condition_added_to_a_running_campaign_is_counted_then_applied(
    store, clinic_folder, tmp_path
):
    campaign = load_folder(clinic_folder)
    people = [
        {
            "email": f"p{i:02d}@example.com",
            "timezone": "America/New_York",
            "signed_up_at": START.isoformat(),
            "tags": "vip" if i % 4 == 0 else "",
        }
        for i in range(20)
    ]
    import_patients(store, campaign, tmp_path, people)
    Dispatcher(store, lambda _c: NullSender()).run(now=START + timedelta(hours=2))

    add_conditions(clinic_folder, {3: "tags_any: [vip]"})
    key = campaign.steps[3].key
    planned = plan_edit(store, clinic_folder, now=START + timedelta(hours=3))
    assert planned.diff.conditions_changed == ((key, "", "tags_any [vip]"),)
    assert planned.conditions == {key: (20, 15)}
    assert not planned.diff.files_changed
    result = CliRunner().invoke(
        cli.app,
        ["plan", str(clinic_folder), "--now", "2026-03-02T16:00Z", "--db", store.url],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"condition {key}: (not set) -> “tags_any [vip]”: 15 of 20 pending emails "
        "would be skipped if due now (decided again when each is due)"
    ) in " ".join(result.output.split())

    applied = apply_edit(store, clinic_folder, now=START + timedelta(hours=3))
    assert applied.applied and applied.conditions == {key: (20, 15)}
    retag(store, "p01@example.com", add=["vip"])  # decided when due: this one counts now
    run_days([Dispatcher(store, lambda _c: NullSender())], START + timedelta(hours=4), 8)
    rows = rows_of_step(store, key)
    sent = {a for a, (status, *_) in rows.items() if status == "sent"}
    assert sent == {f"p{i:02d}@example.com" for i in (0, 1, 4, 8, 12, 16)}


def test_clicked_and_not_clicked_follow_sendgrid_click_events(
    store, clinic_folder, tmp_path, monkeypatch
):
    """SendGrid sends (batched, through the local stand-in that checks the contract);
    clicks arrive by its signed Event Webhook; attributes go as substitutions."""
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "https://mail.clinic.example")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    text = (clinic_folder / "campaign.yaml").read_text()
    (clinic_folder / "campaign.yaml").write_text(
        text.replace(
            "sender:\n  type: file\n  outbox: outbox\n",
            "sender:\n  type: sendgrid\n  track_clicks: true\n",
        )
    )
    campaign = add_conditions(clinic_folder, {1: "clicked: welcome", 2: "not_clicked: welcome"})
    add_to_step(clinic_folder, campaign, 1, "Your clinic: {{ attributes.clinic }}.")
    campaign = load_folder(clinic_folder)
    assert CliRunner().invoke(cli.app, ["check", str(clinic_folder)]).exit_code == 0
    people = [
        {
            "email": f"p{i:02d}@example.com",
            "timezone": "America/New_York",
            "signed_up_at": START.isoformat(),
            "Clinic": f"North <{i}> & Co",
        }
        for i in range(12)
    ]
    import_patients(store, campaign, tmp_path, people)
    with SendGridServer(KEY) as server, sender_factory() as build:
        sender = build(server, FakeTime())
        dispatcher = Dispatcher(store, lambda _c: sender)
        run_days([dispatcher], START, 1)
        ids = {a: str(row[3]) for a, row in rows_of_step(store, "welcome").items()}
        assert {row[0] for row in rows_of_step(store, "welcome").values()} == {"sent"}
        clickers = {f"p{i:02d}@example.com" for i in (1, 2, 5)}
        with app_client(store) as client:
            items = [
                event("click", ids[a], email=a, n=n, url="https://balancedketamine.example.com/x")
                for a in sorted(clickers)
                for n in (1, 2)  # two clicks each: still one fact
            ]
            items.append(event("open", ids["p03@example.com"], email="p03@example.com"))
            answer = post(client, items)
            assert answer.status_code == 200, answer.text
        before = len(server.bodies())
        run_days([dispatcher], START + timedelta(days=1), 4)
        assert not server.schema_failures
        emails = received(server.bodies()[before:])
    second, third = campaign.steps[1], campaign.steps[2]
    by_step: dict[str, set[str]] = {}
    for to, _, _, subject, text, html, _ in emails.values():
        by_step.setdefault(subject, set()).add(to[0]["email"])
        if subject == second.subject:
            number = int(to[0]["email"][1:3])
            assert f"Your clinic: North <{number}> & Co." in text
            assert f"Your clinic: North &lt;{number}&gt; &amp; Co." in html
    everyone = {p["email"] for p in people}
    assert by_step[second.subject] == clickers
    assert by_step[third.subject] == everyone - clickers
    # The clickers' step 2 went in one request: one body, the attribute a substitution.
    assert any(len(body["personalizations"]) == 3 for body in server.bodies()[before:])
    assert rows_of_step(store, second.key)["p03@example.com"][1] == (
        "condition not met: did not click a link in welcome"
    )
    assert rows_of_step(store, third.key)["p01@example.com"][1] == (
        "condition not met: clicked a link in welcome"
    )


def test_check_refuses_clicked_when_the_sender_reports_no_clicks(clinic_folder):
    add_conditions(clinic_folder, {2: "not_clicked: welcome"})
    result = CliRunner().invoke(cli.app, ["check", str(clinic_folder)])
    assert result.exit_code == 1
    assert re.search(
        r"campaign\.yaml:\d+: step what-about-physical-health: when\.not_clicked welcome can "
        r"never be decided by a click: the file sender reports no clicks",
        " ".join(result.output.split()),
    ), result.output
    text = (clinic_folder / "campaign.yaml").read_text()
    (clinic_folder / "campaign.yaml").write_text(
        text.replace("sender:\n  type: file\n  outbox: outbox\n", "sender:\n  type: sendgrid\n")
    )
    result = CliRunner().invoke(cli.app, ["check", str(clinic_folder)])
    assert result.exit_code == 1
    assert "click tracking is off for the sendgrid sender: set sender.track_clicks: true" in (
        " ".join(result.output.split())
    )
    text = (clinic_folder / "campaign.yaml").read_text()
    (clinic_folder / "campaign.yaml").write_text(
        text.replace("  type: sendgrid\n", "  type: sendgrid\n  track_clicks: true\n")
    )
    result = CliRunner().invoke(cli.app, ["check", str(clinic_folder)])
    # (The temporary folder's path holds this test's name, "clicked" included.)
    said = " ".join(result.output.split())
    assert "decided by a click" not in said and "click tracking is off" not in said, said


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("clicked: all-patients-are-different", "comes later"),
        ("clicked: nowhere", "is no step of this campaign"),
        ("tags_none: []", "give a list of tags"),
        ("attributes: {vip: yes}", "write the value as text, quoted"),
        ("attributes: {'Patient Type': new}", "is not an attribute name"),
        ("colour: red", "unknown key 'colour'"),
    ],
)
def test_a_bad_condition_is_one_line_naming_file_line_and_field(clinic_folder, when, message):
    path = clinic_folder / "campaign.yaml"
    text = path.read_text()
    path.write_text(text.replace("  delay: 4d\n", f"  delay: 4d\n  when:\n    {when}\n"))
    line = path.read_text().splitlines().index(f"    {when}") + 1
    result = CliRunner().invoke(cli.app, ["check", str(clinic_folder)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert f"campaign.yaml:{line}: steps[2].when" in output and message in output, output
    assert "Traceback" not in result.output


def test_schedule_shows_which_steps_a_contact_gets_and_why(
    store, clinic_folder, tmp_path, monkeypatch
):
    monkeypatch.setattr(cli.console, "_width", 400)  # one line per email, as in a wide terminal
    campaign = add_conditions(clinic_folder, {1: f"tags_none: [{RETURNING}]"})
    people = [
        {"email": a, "timezone": "America/New_York", "signed_up_at": START.isoformat()}
        for a in ("ana@example.com", "ben@example.com")
    ]
    import_patients(store, campaign, tmp_path, people)

    def schedule(address: str) -> str:
        result = CliRunner().invoke(
            cli.app,
            ["schedule", NAME, "--email", address, "--db", store.url, "--now", "2026-03-02T13:00Z"],
        )
        assert result.exit_code == 0, result.output
        return result.output

    assert "gets it: tags_none [returning] holds now (decided when due)" in schedule(
        "ana@example.com"
    )
    retag(store, "ana@example.com", add=[RETURNING])
    assert "would be skipped now: has tag returning (decided when due)" in schedule(
        "ana@example.com"
    )
    run_days([Dispatcher(store, lambda _c: NullSender())], START, 3)
    output = schedule("ana@example.com")
    row = next(line for line in output.splitlines() if campaign.steps[1].subject in line)
    assert "skipped" in row and "skipped: has tag returning" in row
    row = next(line for line in schedule("ben@example.com").splitlines()
               if campaign.steps[1].subject in line)  # fmt: skip
    assert "sent" in row and "gets it: the condition held when it was due" in row


def test_the_sign_up_api_takes_attributes_and_names_a_bad_one(store, clinic):
    app = create_app(store, clock=lambda: START, environ={"DRIPMAIL_API_TOKEN": "t0ken-for-tests"})
    headers = {"Authorization": "Bearer t0ken-for-tests"}
    body = {
        "email": "pat@example.com",
        "campaign": NAME,
        "consent": {"source": "web form", "text": "I agree to the emails"},
    }
    enroll(store, clinic, Signup("staff@example.com", consent="staff"), now=START)  # publish
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        for attributes, field, words in (
            ({"patient_type": 3}, "attributes.patient_type", "valid string"),
            ({"patient type": "new"}, "attributes.patient type", "not an attribute name"),
            ({"note": "x" * 201}, "attributes.note", "longer than 200 characters"),
            ({f"a{i}": "x" for i in range(51)}, "attributes", "at most 50"),
            ({"note": "a\x00b"}, "attributes.note", "control character"),
        ):
            answer = client.post(
                "/api/v1/enrollments", json={**body, "attributes": attributes}, headers=headers
            )
            assert answer.status_code == 422, answer.text
            assert answer.json()["field"] == field and words in answer.json()["error"]
        with store.connect() as conn:
            assert (
                conn.scalar(select(contacts.c.id).where(contacts.c.email == body["email"])) is None
            )
        answer = client.post(
            "/api/v1/enrollments",
            json={**body, "attributes": {"patient_type": "new", "clinic": "North"}},
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    with store.connect() as conn:
        stored = conn.scalar(select(contacts.c.attributes).where(contacts.c.email == body["email"]))
    assert json.loads(stored) == {"clinic": "North", "patient_type": "new"}


def test_import_and_enroll_check_attributes(store, clinic_folder, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,consent,Patient Type,Note\n"
        "ok@example.com,form,new,short\n"
        f"long@example.com,form,new,{'x' * 201}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(cli.app, ["import", str(clinic_folder), str(path), "--db", store.url])
    assert result.exit_code == 1, result.output
    assert "contacts.csv:3: note: longer than 200 characters" in result.output
    result = runner.invoke(
        cli.app,
        ["enroll", str(clinic_folder), "--email", "pat@example.com", "--db", store.url,
         "--attribute", "patient_type=new", "--attribute", "clinic=North = East"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with store.connect() as conn:
        stored = conn.scalar(
            select(contacts.c.attributes).where(contacts.c.email == "pat@example.com")
        )
    assert json.loads(stored) == {"clinic": "North = East", "patient_type": "new"}
    result = runner.invoke(
        cli.app,
        ["enroll", str(clinic_folder), "--email", "sam@example.com", "--db", store.url,
         "--attribute", "patient type=new"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--attribute" in result.output, result.output


def test_dripmail_run_with_workers_decides_each_condition_once(
    postgres_url, clinic_folder, tmp_path
):
    """Two worker processes on PostgreSQL: each contact's first email goes, or is skipped
    with the reason, exactly once."""
    add_conditions(clinic_folder, {0: f"tags_none: [{RETURNING}]"})
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,timezone,signed_up_at,consent,tags\n"
        + "".join(
            f"patient{i}@example.com,America/New_York,2026-03-02T10:00,web form,"
            f"{RETURNING if i % 3 == 0 else ''}\n"
            for i in range(30)
        )
    )
    root = str(Path(__file__).resolve().parents[1])  # this tree's code, installed or not
    path = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "DRIPMAIL_DATABASE_URL": postgres_url, "PYTHONPATH": path}

    def dripmail(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    imported = dripmail("import", str(clinic_folder), str(csv_file), "--now", "2026-03-02T12:00Z")
    assert imported.returncode == 0, imported.stderr
    result = dripmail(
        "run", "--workers", "2", "--batch-size", "4", "--now", "2026-03-02T15:00Z", "--lease", "2m"
    )
    assert result.returncode == 0, result.stderr
    assert "all 2 workers: sent 20," in result.stdout and "skipped 10" in result.stdout
    mails = outbox_mail(tmp_path / "outbox")
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == sorted(
        f"patient{i}@example.com" for i in range(30) if i % 3
    )
    again = dripmail("run", "--workers", "2", "--now", "2026-03-02T15:00Z")
    assert "all 2 workers: sent 0," in again.stdout and "skipped 0" in again.stdout


def test_signing_up_again_updates_attributes_within_the_limit(store, clinic):
    first = {f"old{i}": "a" for i in range(30)} | {"clinic": "North"}
    enroll(store, clinic, Signup("pat@example.com", consent="form", attributes=first), now=START)
    again = {f"new{i}": "b" for i in range(30)} | {"clinic": "South"}
    enroll(store, clinic, Signup("pat@example.com", consent="form", attributes=again), now=START)
    with store.connect() as conn:
        stored = json.loads(
            conn.scalar(select(contacts.c.attributes).where(contacts.c.email == "pat@example.com"))
        )
    assert len(stored) == 50 and stored["clinic"] == "South"
    assert all(stored[name] == "b" for name in again if name != "clinic")


@pytest.mark.sqlite_only
def test_the_facts_of_a_batch_are_read_in_one_query_not_one_per_row(store, clinic_folder, tmp_path):
    from sqlalchemy import event as sql_event

    campaign = add_conditions(clinic_folder, {1: "not_clicked: welcome"})
    people = [
        {"email": f"p{i:02d}@example.com", "timezone": "America/New_York",
         "signed_up_at": START.isoformat(), "tags": "vip" if i % 2 else ""}
        for i in range(60)
    ]  # fmt: skip
    import_patients(store, campaign, tmp_path, people)
    dispatcher = Dispatcher(store, lambda _c: NullSender(), batch_size=20)
    run_days([dispatcher], START, 1)
    statements: list[str] = []
    sql_event.listen(
        store.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    report = dispatcher.run(now=START + timedelta(days=2, hours=2))
    assert report.sent == 60 and report.batches == 3
    # One look-up of clicks per claimed batch of 20, whatever the batch holds.
    assert sum("JOIN events" in s for s in statements) == report.batches
