"""A long contacts import in the console: it runs in the background and its page shows how
far it is, then the per-line report of `dripmail import`; on each backend.

The file is what Excel saves as "CSV UTF-8": a byte-order mark, CRLF line ends, 5,000
rows of which three are bad. The import is held after its second chunk (by wrapping the
progress callback, nothing sleeps) so the page can be read while it runs: over HTTP, and
in headless Chromium under the console's own CSP (the page's script polls the status
URL and moves the bar), axe-clean and without horizontal scroll at 375 px.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import func, select

from campaigns.authoring.spec import Campaign
from campaigns.console import import_jobs
from campaigns.console.app import create_app
from campaigns.settings import Settings
from campaigns.storage import audit
from campaigns.storage.publish import publish
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts
from tests.console_support import Clock, add_person, csrf_of, signed_in
from tests.test_console_campaign_pages import sign_in
from tests.test_console_pages import PHONE, check_page, running_console, tab_to
from tests.test_console_people import NOW, app, clock, import_csv, workspace  # noqa: F401
from tests.test_studio import artifacts, axe_source, browser, guarded  # noqa: F401

ROWS = 5000
BAD = {17: "not-an-address", 2500: "pat@@example.com", 4999: ""}  # row number -> address


def excel_csv() -> bytes:
    """5,000 sign-ups as Excel writes "CSV UTF-8": BOM, CRLF, a quoted name with a comma."""
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    for n in range(1, ROWS + 1):
        address = BAD.get(n, f"patient{n}@example.com")
        lines.append(f'{address},"Patient, {n}",Europe/London,2026-03-09T10:00,clinic form')
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


def contact_count(store: Store) -> int:
    with store.connect() as conn:
        return conn.scalar(select(func.count()).select_from(contacts))


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch):
    """The import pauses after its second chunk until `go_on` is set."""
    reached, go_on = threading.Event(), threading.Event()
    real = import_jobs.import_ref

    def held_import(*args, progress, **options):
        def step(done: int, total: int) -> None:
            progress(done, total)
            if done == 2 * import_jobs.CHUNK:
                reached.set()
                go_on.wait(120)

        return real(*args, progress=step, **options)

    monkeypatch.setattr(import_jobs, "import_ref", held_import)
    yield reached, go_on
    go_on.set()


def test_a_5000_row_excel_csv_shows_progress_then_every_bad_line(
    store: Store,
    app,  # noqa: F811
    clock: Clock,  # noqa: F811
    held,
) -> None:
    reached, go_on = held
    admin, person = signed_in(app, store, "admin", clock)
    viewer, _ = signed_in(app, store, "viewer", clock)
    editor, _ = signed_in(app, store, "editor", clock)
    token = csrf_of(admin.get("/contacts").text)
    started = admin.post(
        "/contacts/import",
        data={"csrf_token": token, "campaign": "ketamine-and-sleep"},
        files={"csv": ("Patients (Excel).csv", excel_csv(), "text/csv")},
    )
    assert started.status_code == 303, started.text
    where = started.headers["location"]
    job_id = where.rsplit("/", 1)[1]
    assert reached.wait(120), "the import never reached its second chunk"

    # While it runs: a labelled progress bar, a status line read out as it changes, a link.
    page = admin.get(where)
    assert page.status_code == 200
    valid = ROWS - len(BAD)
    assert '<label for="import-progress">Rows imported</label>' in page.text
    assert f'<progress id="import-progress" max="{valid}" value="1000">' in page.text
    assert f'<p id="import-state" role="status">Imported 1000 of {valid} rows…</p>' in page.text
    assert f'<a href="{where}" id="import-refresh">' in page.text
    assert '<script src="/_console/console-import.js"></script>' in page.text
    status = admin.get(f"{where}/status")
    assert status.json() == {"state": "importing", "done": 1000, "total": valid, "finished": False}
    # The progress is the admins' only: 403 for everyone else, and no count leaks.
    for other in (viewer, editor):
        for path in (where, f"{where}/status"):
            refused = other.get(path)
            assert refused.status_code == 403 and str(valid) not in refused.text
    # A second import into the same campaign waits for this one.
    again = admin.post(
        "/contacts/import",
        data={"csrf_token": token, "campaign": "ketamine-and-sleep"},
        files={"csv": ("more.csv", excel_csv(), "text/csv")},
    )
    assert again.status_code == 409 and "is running" in again.text

    go_on.set()
    job = app.state.console.imports.wait(job_id, timeout=300)
    assert job is not None and job.finished
    done = admin.get(where).text
    assert "import-progress" not in done and "console-import.js" not in done
    assert f"imported {valid}, already enrolled 0, suppressed 0, rejected 3" in done
    rejected = done.split('id="rejected"')[1]
    for row in BAD:  # the header is line 1: row n is line n + 1
        assert f'<th scope="row" data-label="Line">{row + 1}</th>' in rejected
    assert admin.get(f"{where}/status").json()["finished"] is True
    assert contact_count(store) == valid
    entry = audit.entries(store)[-1]
    assert (entry.actor, entry.action, entry.object_id) == (
        str(person.id), "contacts.import", "ketamine-and-sleep"
    )  # fmt: skip
    assert entry.at.replace(tzinfo=None) == clock().replace(tzinfo=None)
    assert "patient1@" not in str(entry)


def test_the_upload_needs_the_csrf_token_and_an_admin(
    store: Store,
    app,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    admin, _ = signed_in(app, store, "admin", clock)
    editor, _ = signed_in(app, store, "editor", clock)
    files = {"csv": ("p.csv", excel_csv(), "text/csv")}
    form = {"campaign": "ketamine-and-sleep"}
    assert admin.post("/contacts/import", data=form, files=files).status_code == 403
    assert import_csv(admin, excel_csv(), token="forged").status_code == 403
    token = csrf_of(editor.get("/").text)
    answer = editor.post("/contacts/import", data={"csrf_token": token, **form}, files=files)
    assert answer.status_code == 403
    assert app.state.console.imports.running_into("ketamine-and-sleep") is None
    assert contact_count(store) == 0
    assert admin.get("/contacts/import/no-such-job").status_code == 404


def test_after_a_restart_the_import_page_says_where_the_rows_are_and_a_second_import_is_safe(
    store: Store,
    app,  # noqa: F811
    clock: Clock,  # noqa: F811
    workspace: Path,  # noqa: F811
) -> None:
    admin, _ = signed_in(app, store, "admin", clock)
    small = excel_csv().split(b"\r\n")
    data = b"\r\n".join(small[:11]) + b"\r\n"  # the header and the first 10 rows (all good)
    done = import_csv(admin, data)
    assert "imported 10, already enrolled 0" in done.text
    where = str(done.url)

    # The console restarts: its import pages were in the old process's memory.
    restarted = create_app(
        store, clock=clock, settings=Settings.from_env({"DRIPMAIL_WORKSPACE": str(workspace)})
    )
    admin, _ = signed_in(restarted, store, "admin", clock)
    gone = admin.get(where)
    assert gone.status_code == 404
    assert "This import is no longer shown" in gone.text
    assert "Every row that was imported is still there" in gone.text
    assert contact_count(store) == 10
    again = import_csv(admin, data)
    assert "imported 0, already enrolled 10" in again.text
    assert contact_count(store) == 10


@pytest.fixture
def console_url(tmp_path: Path, clinic: Campaign) -> Iterator[tuple[Store, Clock, str]]:
    """The console in a thread on a SQLite file with the clinic campaign published."""
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    with store.begin() as conn:
        publish(conn, clinic, now=NOW)
    moving = Clock(NOW)
    with running_console(store, moving) as server:
        yield store, moving, server.url.rstrip("/")
    store.close()


def test_the_progress_page_in_a_browser_moves_then_shows_the_report(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    console_url: tuple[Store, Clock, str],
    held,
) -> None:
    store, moving, origin = console_url
    reached, go_on = held
    person = add_person(store, "admin", moving)
    valid = ROWS - len(BAD)
    # One window under the console's own CSP (its script must work there), one with the
    # CSP bypassed so axe can be injected: both the same admin, each signed in.
    with (
        guarded(browser, (origin + "/",), viewport=PHONE) as (context, guard),
        guarded(browser, (origin + "/",), viewport=PHONE, bypass_csp=True) as (checking, _),
    ):
        page = context.new_page()
        sign_in(page, origin, person, moving)
        page.goto(f"{origin}/contacts")
        page.select_option("#import-campaign", "ketamine-and-sleep")
        page.set_input_files(
            "#import-csv", {"name": "patients.csv", "mimeType": "text/csv", "buffer": excel_csv()}
        )
        page.click("#import")
        assert reached.wait(120), "the import never reached its second chunk"
        # The script has asked the status URL and moved the bar and the status line.
        expect(page.locator("#import-state")).to_have_text(f"Imported 1000 of {valid} rows…")
        expect(page.locator("#import-progress")).to_have_js_property("value", 1000)
        expect(page.locator("#import-progress")).to_have_accessible_name("Rows imported")

        other = checking.new_page()
        sign_in(other, origin, person, moving)
        other.goto(page.url)
        expect(other.locator("#import-progress")).to_be_visible()
        check_page(other, axe_source, artifacts, "import-running")
        other.keyboard.press("Tab")  # the skip link, then on by keyboard to the refresh link
        tab_to(other, "#import-refresh")
        other.keyboard.press("Enter")
        expect(other.locator("#import-progress")).to_be_visible()

        go_on.set()
        # The page loads itself again at the end: the per-line report.
        expect(page.locator("#import-counts")).to_have_text(
            f"imported {valid}, already enrolled 0, suppressed 0, rejected 3", timeout=120_000
        )
        expect(page.locator("#rejected tbody tr")).to_have_count(3)
        other.reload()
        expect(other.locator("#import-counts")).to_be_visible()
        check_page(other, axe_source, artifacts, "import-done")
    assert guard.console == [], guard.console
