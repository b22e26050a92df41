"""The console's campaigns over HTTP: list, workspace folders shared with disk, editor,
new campaign from an upload, review and publish, pause, settings; refusals change nothing.

Each test runs on SQLite and PostgreSQL; the workspace is a temporary folder holding the
clinic campaign as `dripmail split` writes it. People sign in through the pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.authoring.spec import load_folder
from campaigns.console.app import create_app
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage import audit
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, console_reviews
from examples import ARTICLE
from tests.conftest import write_clinic_campaign
from tests.console_support import Clock, csrf_of, signed_in
from tests.helpers import utc

NOW = utc("2026-03-09T14:00")
NAME = "ketamine-and-sleep"
STEP3 = "what-about-physical-health"
HOSTILE = "<b>bold</b> <script>alert(1)</script> {{ 7*7 }}"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    write_clinic_campaign(root / NAME)
    return root


@pytest.fixture
def app(store: Store, clock: Clock, workspace: Path):
    settings = store.settings.model_copy(update={"workspace": str(workspace)})
    return create_app(store, settings=settings, clock=clock)


def actions(store: Store) -> list[str]:
    return [entry.action for entry in audit.entries(store)]


def step_form(client, name: str = NAME, key: str = STEP3, **changes: str) -> dict[str, str]:
    page = client.get(f"/campaigns/{name}/steps/{key}")
    assert page.status_code == 200, page.text
    values = {"csrf_token": csrf_of(page.text)}
    folder_campaign = page  # the fields as the page shows them
    for field in ("subject", "preheader", "cta"):
        values[field] = _value_of(folder_campaign.text, field)
    values["body"] = _textarea_of(folder_campaign.text, "body")
    values.update(changes)
    return values


def _value_of(html: str, field: str) -> str:
    import html as html_lib
    import re

    found = re.search(rf'name="{field}" type="text" value="([^"]*)"', html)
    assert found, field
    return html_lib.unescape(found.group(1))


def _textarea_of(html: str, field: str) -> str:
    import html as html_lib
    import re

    found = re.search(rf'<textarea id="{field}" name="{field}"[^>]*>(.*?)</textarea>', html, re.S)
    assert found, field
    return html_lib.unescape(found.group(1))


def test_list_shows_workspace_folders_and_a_disk_edit_without_restart(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    viewer, _ = signed_in(app, store, "viewer", clock)
    page = viewer.get("/campaigns")
    assert page.status_code == 200
    assert "Ketamine and Sleep" in page.text and ">draft<" in page.text
    # Edited on disk (as a person with an editor would): the next request shows it.
    step = workspace / NAME / "03-what-about-physical-health.md"
    step.write_text(step.read_text().replace("What About Physical Health?", "Edited on disk"))
    page = viewer.get(f"/campaigns/{NAME}")
    assert "Edited on disk" in page.text
    # A folder that no longer loads says why instead of failing the list.
    (workspace / "broken").mkdir()
    (workspace / "broken" / "campaign.yaml").write_text("name: [\n")
    page = viewer.get("/campaigns")
    assert page.status_code == 200 and "Does not load" in page.text


def test_console_save_writes_the_folder_file_atomically_and_audits(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, person = signed_in(app, store, "editor", clock)
    form = step_form(editor, subject="Your body and your sleep")
    answer = editor.post(f"/campaigns/{NAME}/steps/{STEP3}", data=form)
    assert answer.status_code == 200 and "Saved to the folder" in answer.text
    text = (workspace / NAME / "03-what-about-physical-health.md").read_text()
    assert "subject: Your body and your sleep" in text
    assert not list((workspace / NAME).glob(".*.md.*"))  # no temporary file left behind
    entry = audit.entries(store)[-1]
    assert (entry.action, entry.actor, entry.object_id) == ("campaign.edit", str(person.id), NAME)
    # What the CLI reads is the same folder.
    from campaigns.authoring.spec import load_folder

    assert load_folder(workspace / NAME).step(STEP3).subject == "Your body and your sleep"


def test_an_edit_that_would_not_load_is_refused_and_nothing_is_written(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    before = (workspace / NAME / "03-what-about-physical-health.md").read_text()
    answer = editor.post(
        f"/campaigns/{NAME}/steps/{STEP3}", data=step_form(editor, subject="", body="  ")
    )
    assert answer.status_code == 400 and "Not saved" in answer.text
    assert (workspace / NAME / "03-what-about-physical-health.md").read_text() == before


def test_hostile_subject_and_body_are_shown_as_typed_on_console_pages(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    form = step_form(editor, subject=HOSTILE, body=f"# Heading\n\n{HOSTILE}\n\nMore words here.")
    answer = editor.post(f"/campaigns/{NAME}/steps/{STEP3}", data=form)
    assert answer.status_code in (200, 400)
    for path in (f"/campaigns/{NAME}", f"/campaigns/{NAME}/steps/{STEP3}", "/campaigns"):
        page = editor.get(path).text
        assert "<script>alert(1)</script>" not in page
        assert "<b>bold</b>" not in page
    page = editor.get(f"/campaigns/{NAME}/steps/{STEP3}").text
    assert "&lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in page
    # The preview is the engine's rendering, served with a policy that runs no script.
    preview = editor.get(f"/campaigns/{NAME}/steps/{STEP3}/preview?view=desktop")
    assert "sandbox" in preview.headers["content-security-policy"]
    assert "script-src" not in preview.headers["content-security-policy"]


def test_draft_preview_renders_the_typed_text_and_writes_nothing(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    before = (workspace / NAME / "03-what-about-physical-health.md").read_text()
    form = step_form(editor, body="# Heading\n\nA draft sentence nobody saved yet.")
    for view in ("desktop", "phone", "dark", "text"):
        answer = editor.post(
            f"/campaigns/{NAME}/steps/{STEP3}/preview", data={**form, "view": view}
        )
        assert answer.status_code == 200
        assert "A draft sentence nobody saved yet." in answer.text
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
    assert (workspace / NAME / "03-what-about-physical-health.md").read_text() == before


def test_editor_shows_checks_beside_the_line_they_name(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    body = "# Heading\n\nRead [here](http://clinic.example/insecure) for more about sleep."
    editor.post(f"/campaigns/{NAME}/steps/{STEP3}", data=step_form(editor, body=body))
    page = editor.get(f"/campaigns/{NAME}/steps/{STEP3}").text
    assert 'class="finding' in page and "line " in page


def test_timing_saves_order_delays_and_window_to_campaign_yaml(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    token = csrf_of(editor.get(f"/campaigns/{NAME}/timing").text)
    form = {"csrf_token": token, "start": "10:00", "end": "16:00", "min_gap": "20h"}
    form.update({f"day-{d}": "1" for d in ("mon", "tue", "wed", "thu", "fri")})
    form["closed"] = "2026-12-25\n2026-12-26"
    delays = ["0d", "2d", "4d", "7d", "10d", "14d"]
    for i, delay in enumerate(delays):
        form[f"position-{i}"] = str(i + 1)
        form[f"delay-{i}"] = delay
    form["position-1"], form["position-2"] = "3", "2"  # steps 2 and 3 swap
    answer = editor.post(f"/campaigns/{NAME}/timing", data=form)
    assert answer.status_code == 303, answer.text
    from campaigns.authoring.spec import load_folder

    campaign = load_folder(workspace / NAME)
    assert campaign.steps[1].key == STEP3
    assert campaign.spec.send_window.start == "10:00"
    assert campaign.spec.send_window.days == ["mon", "tue", "wed", "thu", "fri"]
    assert campaign.spec.send_window.min_gap == "20h"
    assert [str(d) for d in campaign.spec.send_window.closed] == ["2026-12-25", "2026-12-26"]


def _submit(client) -> None:
    token = csrf_of(client.get(f"/campaigns/{NAME}").text)
    assert client.post(f"/campaigns/{NAME}/submit", data={"csrf_token": token}).status_code == 303


def _review_form(client) -> tuple[str, str]:
    import re

    page = client.get(f"/campaigns/{NAME}/review").text
    found = re.search(r'name="confirm" value="([0-9a-f]+)"', page)
    return csrf_of(page), found.group(1) if found else ""


def test_submit_approve_publish_with_every_refusal_on_the_way(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    reviewer, checker = signed_in(app, store, "reviewer", clock)
    other_reviewer, _ = signed_in(app, store, "reviewer", clock)
    _submit(editor)
    token = csrf_of(editor.get(f"/campaigns/{NAME}").text)
    # An editor cannot approve or publish (crafted POSTs): 403, nothing changes.
    for action in ("approve", "reject", "publish"):
        answer = editor.post(f"/campaigns/{NAME}/{action}", data={"csrf_token": token})
        assert answer.status_code == 403
    # Without the CSRF token: 403, nothing changes.
    assert reviewer.post(f"/campaigns/{NAME}/approve", data={}).status_code == 403
    # Publishing before approval: refused.
    token, confirm = _review_form(reviewer)
    assert confirm == ""  # no publish form is shown
    answer = reviewer.post(f"/campaigns/{NAME}/publish", data={"csrf_token": token})
    assert answer.status_code == 409
    with store.connect() as conn:
        assert conn.scalar(select(campaigns.c.name)) is None
        assert conn.scalar(select(console_reviews.c.state)) == "submitted"
    # The reviewer sees the emails, the diff (never published) and the plan; approves.
    page = reviewer.get(f"/campaigns/{NAME}/review").text
    assert "Never published" in page and "First publish" in page
    answer = reviewer.post(
        f"/campaigns/{NAME}/approve", data={"csrf_token": token, "comment": "Looks right."}
    )
    assert answer.status_code == 303
    token, confirm = _review_form(other_reviewer)
    answer = other_reviewer.post(
        f"/campaigns/{NAME}/publish", data={"csrf_token": token, "confirm": confirm}
    )
    assert answer.status_code == 303, answer.text
    with store.connect() as conn:
        assert conn.scalar(select(campaigns.c.name)) == NAME
        assert conn.scalar(select(console_reviews.c.state)) == "published"
    assert actions(store)[-3:] == ["review.submit", "review.approve", "publish"]
    assert audit.entries(store)[-2].actor == str(checker.id)
    # Every row of the trail is on the console's clock, the publish's too (not the wall's).
    assert {entry.at.replace(tzinfo=None) for entry in audit.entries(store)[-3:]} == {
        clock().replace(tzinfo=None)
    }
    page = editor.get("/campaigns").text
    assert ">published<" in page


def test_a_reviewer_cannot_approve_their_own_submission(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    admin, _ = signed_in(app, store, "admin", clock)  # an admin may submit and review
    _submit(admin)
    token, _ = _review_form(admin)
    before = actions(store)
    answer = admin.post(f"/campaigns/{NAME}/approve", data={"csrf_token": token})
    assert answer.status_code == 403
    with store.connect() as conn:
        assert conn.scalar(select(console_reviews.c.state)) == "submitted"
    assert actions(store) == before


def test_a_version_changed_after_submission_cannot_be_approved(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    reviewer, _ = signed_in(app, store, "reviewer", clock)
    _submit(editor)
    editor.post(f"/campaigns/{NAME}/steps/{STEP3}", data=step_form(editor, subject="Changed"))
    token, _ = _review_form(reviewer)
    answer = reviewer.post(f"/campaigns/{NAME}/approve", data={"csrf_token": token})
    assert answer.status_code == 409 and "submitted again" in answer.text


def test_publish_shows_the_plan_again_when_enrollments_changed_since_approval(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    from campaigns.authoring.spec import load_folder

    enroll(
        store,
        load_folder(workspace / NAME),
        Signup("a@example.com", "Ann", "America/New_York", "2026-03-09T10:00", "clinic form"),
        now=NOW,
    )
    editor, _ = signed_in(app, store, "editor", clock)
    reviewer, _ = signed_in(app, store, "reviewer", clock)
    editor.post(f"/campaigns/{NAME}/steps/{STEP3}", data=step_form(editor, subject="New words"))
    _submit(editor)
    token, _ = _review_form(reviewer)
    reviewer.post(f"/campaigns/{NAME}/approve", data={"csrf_token": token})
    token, old_confirm = _review_form(reviewer)
    assert old_confirm  # the approved plan's fingerprint, on the publish form
    # Someone enrolls after the approval: the plan is no longer the approved one.
    with store.connect() as conn:
        published = load_version(conn, NAME)  # (enrolling into the folder would publish it)
    enroll(
        store,
        published,
        Signup("b@example.com", "Bo", "America/New_York", "2026-03-09T10:00", "clinic form"),
        now=NOW,
    )
    token, confirm = _review_form(reviewer)
    assert confirm != old_confirm
    page = reviewer.get(f"/campaigns/{NAME}/review").text
    assert "changed since approval" in page
    answer = reviewer.post(
        f"/campaigns/{NAME}/publish", data={"csrf_token": token, "confirm": old_confirm}
    )
    assert answer.status_code == 409
    with store.connect() as conn:
        assert load_version(conn, NAME).step(STEP3).subject != "New words"
    answer = reviewer.post(
        f"/campaigns/{NAME}/publish", data={"csrf_token": token, "confirm": confirm}
    )
    assert answer.status_code == 303, answer.text
    with store.connect() as conn:
        assert load_version(conn, NAME).step(STEP3).subject == "New words"


def test_approval_none_is_an_audited_admin_setting(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    admin, _ = signed_in(app, store, "admin", clock)
    editor, _ = signed_in(app, store, "editor", clock)
    reviewer, _ = signed_in(app, store, "reviewer", clock)
    token = csrf_of(editor.get("/campaigns").text)
    assert editor.get("/settings").status_code == 403
    answer = editor.post("/settings/approval", data={"csrf_token": token, "approval": "none"})
    assert answer.status_code == 403
    token = csrf_of(admin.get("/settings").text)
    answer = admin.post("/settings/approval", data={"csrf_token": token, "approval": "none"})
    assert answer.status_code == 200 and "Approval: none" in answer.text
    assert actions(store)[-1] == "settings.approval"
    token, confirm = _review_form(reviewer)
    answer = reviewer.post(
        f"/campaigns/{NAME}/publish", data={"csrf_token": token, "confirm": confirm}
    )
    assert answer.status_code == 303


def test_clinic_details_are_kept_once_and_fill_a_new_campaign_from_an_upload(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    admin, _ = signed_in(app, store, "admin", clock)
    token = csrf_of(admin.get("/settings").text)
    details = {
        "organisation": "Riverside Clinic",
        "from_name": "Riverside Care",
        "from_address": "care@riverside.example",
        "postal_address": "1 River Road, Springfield",
        "website": "https://riverside.example",
        "cta_url": "https://riverside.example/book",
        "disclaimer": "Not medical advice.",
    }
    answer = admin.post("/settings", data={"csrf_token": token, **details})
    assert answer.status_code == 200 and "Clinic details saved" in answer.text
    bad = admin.post("/settings", data={"csrf_token": token, "from_address": "not an address"})
    assert bad.status_code == 400
    editor, _ = signed_in(app, store, "editor", clock)
    token = csrf_of(editor.get("/campaigns/new").text)
    article = Path(ARTICLE)
    answer = editor.post(
        "/campaigns/new",
        data={"csrf_token": token, "emails": "4", "cadence": "0,3,7", "title": "Sleep better"},
        files={"article": (article.name, article.read_bytes(), "text/plain")},
    )
    assert answer.status_code == 200, answer.text
    assert "4 emails" in answer.text and not list(workspace.glob("sleep-better"))
    import re

    upload = re.search(r'name="upload" value="([^"]+)"', answer.text).group(1)
    answer = editor.post(
        "/campaigns/new/create",
        data={
            "csrf_token": token,
            "upload": upload,
            "emails": "4",
            "cadence": "0,3,7",
            "title": "Sleep better",
        },
    )
    assert answer.status_code == 303, answer.text
    spec = (workspace / "sleep-better" / "campaign.yaml").read_text()
    assert "Riverside Clinic" in spec and "care@riverside.example" in spec
    assert actions(store)[-1] == "campaign.create"


def _create_from_upload(client, filename: str, content: bytes) -> tuple[str, str]:
    """Upload an article with the default split, then create it: (preview page, new URL)."""
    import re

    token = csrf_of(client.get("/campaigns/new").text)
    files = {"article": (filename, content, "text/plain")}
    preview = client.post("/campaigns/new", data={"csrf_token": token}, files=files)
    assert preview.status_code == 200, preview.text
    upload = re.search(r'name="upload" value="([^"]+)"', preview.text).group(1)
    answer = client.post("/campaigns/new/create", data={"csrf_token": token, "upload": upload})
    assert answer.status_code == 303, answer.text
    return preview.text, answer.headers["location"]


def test_an_uploaded_article_is_named_by_its_title_and_never_replaces_a_folder(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    before = {p.name: p.read_bytes() for p in (workspace / NAME).iterdir()}
    article = Path(ARTICLE).read_bytes()
    # The clinic article's title makes NAME, which the workspace already has: "-2", then "-3".
    preview, where = _create_from_upload(editor, Path(ARTICLE).name, article)
    assert f"<code>{NAME}-2</code>" in preview
    assert where.startswith(f"/campaigns/{NAME}-2?")
    _, where = _create_from_upload(editor, Path(ARTICLE).name, article)
    assert where.startswith(f"/campaigns/{NAME}-3?")
    assert {p.name: p.read_bytes() for p in (workspace / NAME).iterdir()} == before
    for name in (f"{NAME}-2", f"{NAME}-3"):
        spec = (workspace / name / "campaign.yaml").read_text()
        assert f"name: {name}\n" in spec and "title: Ketamine and Sleep" in spec
    # A name a published campaign holds is skipped too, its folder gone from the workspace.
    signup = Signup("pat@example.com", "Pat", "Europe/London", "2026-03-09T10:00", "form")
    enroll(store, load_folder(workspace / NAME), signup, now=NOW)
    (workspace / NAME).rename(workspace.parent / "elsewhere")
    _, where = _create_from_upload(editor, Path(ARTICLE).name, article)
    assert where.startswith(f"/campaigns/{NAME}-4?")
    # The file's own name makes the title when the article has none, as with split.
    _, where = _create_from_upload(editor, "Sleep Hygiene Basics.txt", article)
    assert where.startswith("/campaigns/sleep-hygiene-basics?")
    # A crafted file name stays one file of the uploads folder; nothing waits there after.
    _, where = _create_from_upload(editor, "../../etc/Night Shift.txt", article)
    assert where.startswith("/campaigns/night-shift?")
    assert not list((workspace / ".uploads").rglob("*.txt"))
    assert actions(store).count("campaign.create") == 5


def test_upload_refusals_wrong_type_no_csrf_and_viewer(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    editor, _ = signed_in(app, store, "editor", clock)
    viewer, _ = signed_in(app, store, "viewer", clock)
    token = csrf_of(editor.get("/campaigns/new").text)
    files = {"article": ("notes.pdf", b"%PDF-1.4", "application/pdf")}
    answer = editor.post("/campaigns/new", data={"csrf_token": token}, files=files)
    assert answer.status_code == 400 and "Upload a .txt, .md or .html article" in answer.text
    files = {"article": ("a.txt", b"Title\n\nSome words.", "text/plain")}
    assert editor.post("/campaigns/new", data={}, files=files).status_code == 403
    token = csrf_of(viewer.get("/campaigns").text)
    answer = viewer.post("/campaigns/new", data={"csrf_token": token}, files=files)
    assert answer.status_code == 403
    assert not (workspace / ".uploads").exists() or not list((workspace / ".uploads").iterdir())


def test_pause_and_resume_from_the_campaign_page(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    from campaigns.authoring.spec import load_folder

    enroll(
        store,
        load_folder(workspace / NAME),
        Signup("a@example.com", "Ann", "America/New_York", "2026-03-09T10:00", "clinic form"),
        now=NOW,
    )
    viewer, _ = signed_in(app, store, "viewer", clock)
    editor, _ = signed_in(app, store, "editor", clock)
    token = csrf_of(viewer.get(f"/campaigns/{NAME}").text)
    assert viewer.post(f"/campaigns/{NAME}/pause", data={"csrf_token": token}).status_code == 403
    token = csrf_of(editor.get(f"/campaigns/{NAME}").text)
    assert editor.post(f"/campaigns/{NAME}/pause", data={}).status_code == 403
    answer = editor.post(f"/campaigns/{NAME}/pause", data={"csrf_token": token})
    assert answer.status_code == 303
    assert ">paused<" in viewer.get("/campaigns").text
    answer = editor.post(f"/campaigns/{NAME}/resume", data={"csrf_token": token})
    assert answer.status_code == 303
    assert actions(store)[-2:] == ["campaign.pause", "campaign.resume"]
    assert json.dumps(actions(store))  # entries carry no address: checked in the security tests


def test_a_campaign_dripmail_paused_shows_why_and_a_person_resumes_it(
    store: Store, app, clock: Clock, workspace: Path
) -> None:
    """Issue 21: the automatic pause's reason is on the console's list; resuming clears it."""
    from campaigns.authoring.spec import load_folder
    from campaigns.delivery.autopause import pause_for
    from campaigns.delivery.health_rules import PauseKind, PauseReason
    from campaigns.storage.statuses import CampaignStatus

    enroll(
        store,
        load_folder(workspace / NAME),
        Signup("a@example.com", "Ann", "America/New_York", "2026-03-09T10:00", "clinic form"),
        now=NOW,
    )
    why = "15 failed of its last 50 emails handed to the sender (30%, above max_error_rate 10%)"
    with store.begin() as conn:
        assert pause_for(conn, NAME, PauseReason(PauseKind.ERROR_RATE, why), now=NOW)
    viewer, _ = signed_in(app, store, "viewer", clock)
    editor, _ = signed_in(app, store, "editor", clock)
    listed = viewer.get("/campaigns").text
    assert ">paused<" in listed and f"paused by dripmail: {why}" in listed
    token = csrf_of(editor.get(f"/campaigns/{NAME}").text)
    assert editor.post(f"/campaigns/{NAME}/resume", data={"csrf_token": token}).status_code == 303
    listed = viewer.get("/campaigns").text
    assert "paused by dripmail" not in listed
    with store.connect() as conn:
        row = conn.execute(select(campaigns).where(campaigns.c.name == NAME)).one()
    assert row.pause_reason is None and row.status == CampaignStatus.ACTIVE
