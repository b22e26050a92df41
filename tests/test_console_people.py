"""The console's contacts, newsletters and statistics pages over HTTP, on each backend.

Contacts (admins): a CSV import reports counts and every rejected line by number; one
person is found by exact address only; export is the JSON of `contacts export`; erasure
needs the address typed twice. Newsletters: created from uploaded articles, a dry run
with counts per hour and zone, scheduled, cancelled. Statistics: counts per step and
per day, a CSV download, and never a patient's address. Every role without the right is
refused, a POST without the CSRF token changes nothing, and typed text stays text.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.console import stats_pages
from campaigns.console.app import create_app
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.settings import Settings
from campaigns.storage import audit
from campaigns.storage.publish import publish
from campaigns.storage.store import Store
from campaigns.storage.tables import audit_log, contacts, deliveries
from senders.file import NullSender
from tests.console_support import Clock, csrf_of, signed_in
from tests.helpers import utc

NOW = utc("2026-03-09T14:00")
PATIENT = "pat.patient@example.com"
PATIENT_NAME = "Patricia Quill"
MARKUP_NAME = "<script>alert(1)</script>{{ 7*7 }}"


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "first_name", "timezone", "signed_up_at", "consent", "tags"])
    writer.writerows(rows)
    return out.getvalue().encode()


PEOPLE_CSV = csv_bytes(
    [
        [PATIENT, PATIENT_NAME, "Europe/London", "2026-03-09T09:00", "clinic form", "patients"],
        ["not-an-address", "Nobody", "Europe/London", "2026-03-09T09:00", "form", ""],
        ["markup@example.com", MARKUP_NAME, "America/New_York", "2026-03-09T09:00", "form",
         "patients"],
        ["third@example.com", "Third", "Mars/Olympus", "2026-03-09T09:00", "form", ""],
    ]
)  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def app(store: Store, clock: Clock, clinic: Campaign, workspace: Path):
    with store.begin() as conn:
        publish(conn, clinic, now=NOW)
    settings = Settings.from_env({"DRIPMAIL_WORKSPACE": str(workspace)})
    return create_app(store, clock=clock, settings=settings)


def import_csv(client, data: bytes = PEOPLE_CSV, campaign: str = "ketamine-and-sleep", **kw):
    """Upload the CSV; once the import it starts has ended, its page (else the refusal)."""
    token = kw.pop("token", None) or csrf_of(client.get("/contacts").text)
    answer = client.post(
        "/contacts/import",
        data={"csrf_token": token, "campaign": campaign, **kw},
        files={"csv": ("patients.csv", data, "text/csv")},
    )
    if answer.status_code != 303:
        return answer
    where = answer.headers["location"]
    job = client.app.state.console.imports.wait(where.rsplit("/", 1)[1], timeout=120)
    assert job is not None and job.finished, where
    return client.get(where)


def contact_count(store: Store) -> int:
    with store.connect() as conn:
        return conn.scalar(select(func.count()).select_from(contacts))


def audit_rows(store: Store) -> list:
    with store.connect() as conn:
        return conn.execute(select(audit_log).order_by(audit_log.c.id)).all()


def test_an_import_reports_counts_and_every_rejected_line_by_number(store, app, clock):
    client, admin = signed_in(app, store, "admin", clock)
    page = import_csv(client)
    assert page.status_code == 200, page.text
    assert "imported 2, already enrolled 0, suppressed 0, rejected 2" in page.text
    rejected = page.text.split('id="rejected"')[1]
    assert '<th scope="row" data-label="Line">3</th>' in rejected
    assert '<th scope="row" data-label="Line">5</th>' in rejected
    assert contact_count(store) == 2
    entry = audit_rows(store)[-1]
    assert (entry.actor, entry.action, entry.object_id) == (
        str(admin.id), "contacts.import", "ketamine-and-sleep"
    )  # fmt: skip
    assert "imported 2" in entry.detail and PATIENT not in str(entry._mapping)
    # The same file again: nobody twice.
    again = import_csv(client)
    assert "imported 0, already enrolled 2" in again.text


def test_an_unusable_file_imports_nothing_and_says_why(store, app, clock):
    client, _ = signed_in(app, store, "admin", clock)
    page = import_csv(client, b"name;city\nPat;Leeds\n")
    problem = page.text.split('id="import-problem"')[1].split("</p>")[0]
    assert "Nothing was imported" in problem
    assert "patients.csv" in problem and "email" in problem
    assert contact_count(store) == 0


def test_one_person_is_found_by_exact_address_with_their_enrollments_and_timeline(
    store, app, clock
):
    client, _admin = signed_in(app, store, "admin", clock)
    import_csv(client)
    token = csrf_of(client.get("/contacts").text)
    page = client.post(
        "/contacts/find", data={"csrf_token": token, "email": "Pat.Patient@Example.com"}
    )
    assert page.status_code == 200
    assert PATIENT_NAME in page.text and "ketamine-and-sleep" in page.text
    timeline = page.text.split('id="timeline"')[1].split("</table>")[0]
    assert timeline.count("<tr>") == 1 + 6  # the header and the six emails planned
    # Part of an address finds nobody: there is no browsing.
    part = client.post("/contacts/find", data={"csrf_token": token, "email": "pat.patient@"})
    assert part.status_code == 422 and PATIENT_NAME not in part.text
    nobody = client.post("/contacts/find", data={"csrf_token": token, "email": "x@example.com"})
    assert nobody.status_code == 404
    assert audit_rows(store)[-1].action == "contact.view"


def test_export_downloads_the_json_of_contacts_export(store, app, clock):
    client, _ = signed_in(app, store, "admin", clock)
    import_csv(client)
    token = csrf_of(client.get("/contacts").text)
    answer = client.post("/contacts/export", data={"csrf_token": token, "email": PATIENT})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    held = json.loads(answer.text)
    assert held["contact"]["email"] == PATIENT and len(held["deliveries"]) == 6
    entry = audit_rows(store)[-1]
    assert (entry.action, entry.object_id) == ("contact.export", str(held["contact"]["id"]))


def test_erasure_needs_the_address_typed_again_and_a_mismatch_changes_nothing(store, app, clock):
    client, _ = signed_in(app, store, "admin", clock)
    import_csv(client)
    token = csrf_of(client.get("/contacts").text)
    before = len(audit_rows(store))
    wrong = client.post(
        "/contacts/erase",
        data={"csrf_token": token, "email": PATIENT, "confirm": "pat.patlent@example.com"},
    )
    assert wrong.status_code == 422 and "nothing was erased" in wrong.text
    missing = client.post("/contacts/erase", data={"csrf_token": token, "email": PATIENT})
    assert missing.status_code == 422
    with store.connect() as conn:
        assert conn.scalar(select(contacts.c.email).where(contacts.c.email == PATIENT))
    assert len(audit_rows(store)) == before
    done = client.post(
        "/contacts/erase",
        data={"csrf_token": token, "email": PATIENT, "confirm": " Pat.Patient@example.com"},
    )
    assert done.status_code == 200 and "Erased" in done.text
    with store.connect() as conn:
        assert conn.scalar(select(contacts.c.email).where(contacts.c.email == PATIENT)) is None
    entry = audit_rows(store)[-1]
    assert entry.action == "contact.erase" and entry.object_id.isdigit()


@pytest.mark.parametrize("role", ["viewer", "editor", "reviewer"])
def test_only_admins_reach_contacts_and_a_crafted_post_changes_nothing(store, app, clock, role):
    admin_client, _ = signed_in(app, store, "admin", clock)
    import_csv(admin_client)
    client, _ = signed_in(app, store, role, clock)
    token = csrf_of(client.get("/").text)
    assert client.get("/contacts").status_code == 403
    before = (contact_count(store), len(audit_rows(store)))
    assert import_csv(client, csv_bytes([["new@example.com", "N", "UTC", "", "f", ""]]),
                      token=token).status_code == 403  # fmt: skip
    for path, form in (
        ("/contacts/erase", {"email": PATIENT, "confirm": PATIENT}),
        ("/contacts/find", {"email": PATIENT}),
        ("/contacts/export", {"email": PATIENT}),
    ):
        answer = client.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403 and PATIENT_NAME not in answer.text
    assert (contact_count(store), len(audit_rows(store))) == before
    assert "/contacts" not in client.get("/").text  # and no link to it


def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(store, app, clock):
    client, _ = signed_in(app, store, "admin", clock)
    assert import_csv(client, token="forged").status_code == 403
    answer = client.post(
        "/contacts/import",
        data={"campaign": "ketamine-and-sleep"},
        files={"csv": ("p.csv", PEOPLE_CSV, "text/csv")},
    )
    assert answer.status_code == 403
    assert contact_count(store) == 0
    import_csv(client)
    erase = client.post("/contacts/erase", data={"email": PATIENT, "confirm": PATIENT})
    assert erase.status_code == 403 and contact_count(store) == 2


def send_first_emails(store: Store) -> None:
    Dispatcher(store, lambda _c: NullSender()).run(now=NOW)


def test_statistics_show_the_funnel_and_sends_per_day_with_a_csv_and_no_address(store, app, clock):
    admin_client, _ = signed_in(app, store, "admin", clock)
    import_csv(admin_client)
    send_first_emails(store)
    client, _ = signed_in(app, store, "viewer", clock)
    listing = client.get("/statistics")
    assert 'href="/statistics/ketamine-and-sleep"' in listing.text
    page = client.get("/statistics/ketamine-and-sleep")
    assert page.status_code == 200
    assert '<td data-label="sent" class="num" id="total-sent">2</td>' in page.text
    # Two charts, each drawn for a wide screen and for a phone (the stylesheet shows one).
    assert page.text.count('role="img"') == 4 and "<desc" in page.text
    assert "2026-03-09" in page.text.split('id="sends"')[1]
    assert PATIENT not in page.text and PATIENT_NAME not in page.text
    assert "<script>" not in page.text
    download = client.get("/statistics/ketamine-and-sleep.csv")
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0][:4] == ["position", "step", "subject", "sent"]
    assert rows[-1][1] == "total" and rows[-1][3] == "2"
    assert client.get("/statistics/no-such-campaign").status_code == 404
    assert client.get("/statistics/..%2F..%2Fetc").status_code == 404


def test_statistics_are_read_again_once_their_snapshot_is_a_minute_old(store, app, clock):
    admin_client, _ = signed_in(app, store, "admin", clock)
    import_csv(admin_client)
    client, _ = signed_in(app, store, "viewer", clock)
    before = client.get("/statistics/ketamine-and-sleep").text
    assert 'id="total-sent">0<' in before
    send_first_emails(store)
    again = client.get("/statistics/ketamine-and-sleep").text
    assert 'id="total-sent">0<' in again  # the snapshot, with the time it was taken
    assert f"Counts as of {clock():%Y-%m-%d %H:%M:%S} UTC" in again
    clock.advance(seconds=61)
    assert 'id="total-sent">2<' in client.get("/statistics/ketamine-and-sleep").text


def test_a_step_subject_with_a_formula_is_defused_in_the_csv(store, app, clock, clinic_folder):
    step = sorted(clinic_folder.glob("01-*.md"))[0]
    text = step.read_text()
    step.write_text(text.replace("# Ketamine and Sleep", '# =HYPERLINK("x") Sleep', 1))
    with store.begin() as conn:
        publish(conn, load_folder(clinic_folder), now=NOW)
    client, _ = signed_in(app, store, "viewer", clock)
    rows = list(csv.reader(io.StringIO(client.get("/statistics/ketamine-and-sleep.csv").text)))
    assert rows[1][2].startswith("'=HYPERLINK")


def test_five_published_versions_viewed_leave_one_snapshot_of_the_campaign(
    store, app, clock, clinic_folder
):
    """Each live edit publishes a version; its statistics show that version's steps at
    once, and the console keeps one snapshot per campaign, not one per version."""
    client, _ = signed_in(app, store, "viewer", clock)
    step = sorted(clinic_folder.glob("01-*.md"))[0]
    text = step.read_text()
    for edit in range(1, 6):
        step.write_text(text.replace("# Ketamine and Sleep", f"# Sleep, edit {edit}", 1))
        with store.begin() as conn:
            publish(conn, load_folder(clinic_folder), now=NOW)
        rows = list(csv.reader(io.StringIO(client.get("/statistics/ketamine-and-sleep.csv").text)))
        assert rows[1][2].startswith(f"Sleep, edit {edit}")
        assert "ketamine-and-sleep" in client.get("/statistics/ketamine-and-sleep").text
    assert len(stats_pages._snapshots[store]) == 1


ARTICLE = b"---\ntitle: Sleep after a session\n---\n\nRest well after a session.\n\nMore.\n"


def test_a_newsletter_is_created_dry_run_scheduled_and_cancelled(store, app, clock, workspace):
    admin_client, _admin = signed_in(app, store, "admin", clock)
    import_csv(admin_client)
    editor, editor_person = signed_in(app, store, "editor", clock)
    token = csrf_of(editor.get("/newsletters").text)
    made = editor.post(
        "/newsletters",
        data={"csrf_token": token, "url": "https://clinic.example/news",
              "organisation": "Clinic", "sender": "Clinic <news@clinic.example>",
              "postal_address": "1 Main St, Springfield"},
        files={"article1": ("sleep.md", ARTICLE, "text/markdown")},
    )  # fmt: skip
    assert made.status_code == 303, made.text
    path = made.headers["location"]
    name = path.rsplit("/", 1)[1]
    assert (workspace / name / "campaign.yaml").is_file()
    assert "Sleep after a session" in editor.get(path).text
    # An editor creates; scheduling is a reviewer's or an admin's.
    assert editor.post(f"{path}/preview", data={"csrf_token": token}).status_code == 403
    reviewer, _ = signed_in(app, store, "reviewer", clock)
    token = csrf_of(reviewer.get(path).text)
    form = {"csrf_token": token, "tags": "patients", "mode": "local", "date": "2026-03-10",
            "local_time": "09:00", "max_per_hour": "1"}  # fmt: skip
    dry = reviewer.post(f"{path}/preview", data=form)
    assert dry.status_code == 200, dry.text
    assert "Would plan 2 emails" in dry.text
    zones = dry.text.split('id="per-zone"')[1].split("</table>")[0]
    assert "America/New_York" in zones and "Europe/London" in zones
    assert 'id="per-hour"' in dry.text and 'role="img"' in dry.text
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(deliveries)) == 12  # unchanged
    done = reviewer.post(f"{path}/schedule", data=form)
    assert "Planned 2 emails" in done.text
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(deliveries)) == 14
    cancelled = reviewer.post(f"{path}/cancel", data={"csrf_token": token})
    assert "Cancelled 2 emails" in cancelled.text
    actions = [(e.actor_email, e.action) for e in audit.entries(store) if e.object_id == name]
    assert [a for _, a in actions] == ["newsletter.create", "publish", "newsletter.schedule",
                                       "newsletter.cancel"]  # fmt: skip
    assert actions[0][0] == editor_person.email
    assert actions[1][0] == actions[2][0] != editor_person.email  # the reviewer, not "cli"
    # The newsletter's publish is on the console's clock, like the rest of the trail.
    when = {e.action: e.at.replace(tzinfo=None) for e in audit.entries(store)}
    assert when["publish"] == when["newsletter.schedule"] == clock().replace(tzinfo=None)


def test_typed_names_show_exactly_as_typed_on_every_page(store, app, clock):
    client, _ = signed_in(app, store, "admin", clock)
    imported = import_csv(client)
    token = csrf_of(imported.text)
    page = client.post("/contacts/find", data={"csrf_token": token, "email": "markup@example.com"})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in page.text
    assert "<script>alert" not in page.text and "49" not in page.text.split('id="person"')[1]
    for path in ("/statistics", "/statistics/ketamine-and-sleep", "/newsletters", "/contacts"):
        shown = client.get(path).text
        assert "<script>" not in shown


def test_nothing_the_console_logs_names_a_patient(store, app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    client, _ = signed_in(app, store, "admin", clock)
    imported = import_csv(client)
    token = csrf_of(imported.text)
    client.post("/contacts/find", data={"csrf_token": token, "email": PATIENT})
    client.post("/contacts/export", data={"csrf_token": token, "email": PATIENT})
    client.post("/contacts/erase", data={"csrf_token": token, "email": PATIENT, "confirm": PATIENT})
    send_first_emails(store)
    client.get("/statistics/ketamine-and-sleep")
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records
    for secret in (PATIENT, "Patricia", "markup@example.com", "alert(1)"):
        assert secret not in logged
