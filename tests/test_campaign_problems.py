"""One campaign's problem stays its own (issue 15, point 3), through the real command.

A draft campaign (split's TODO placeholders) published by an older dripmail, or a
campaign whose own sender cannot work, is kept back by `dripmail run`: its emails stay
scheduled, one line names it and the command that fixes it, every other campaign sends,
exit 1. Publishing a version with placeholders is refused everywhere (exit 2 / 422).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from campaigns.storage import publish
from campaigns.storage.tables import campaign_versions, campaigns, contacts, deliveries, enrollments
from tests.test_cli import snapshot
from tests.unit.test_cli import dripmail

ARTICLE = Path(__file__).parent / "fixtures" / "articles" / "sleep-guide.md"
DRAFT = "a-patients-guide-to-sleep-after-treatment"  # the name split gives sleep-guide.md
NOW = "2026-03-02T16:00Z"
written = (
    campaigns,
    campaign_versions,
    contacts,
    enrollments,
)  # 11:00 in New York: both first emails are due


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'dripmail.db'}"


@pytest.fixture(autouse=True)
def _outbox_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file sender's `outbox: outbox` is relative to where `run` runs."""
    monkeypatch.chdir(tmp_path)


def split_draft(tmp_path: Path) -> Path:
    """The sleep guide split with no clinic details: four TODO placeholders."""
    folder = tmp_path / "draft"
    result = dripmail("split", str(ARTICLE), "--out", str(folder))
    assert result.exit_code == 0, result.output
    assert result.output.count("placeholder:") == 4
    return folder


def enroll(folder: Path, email: str, db: str):
    return dripmail(
        "enroll",
        str(folder),
        "--email",
        email,
        "--timezone",
        "America/New_York",
        "--signed-up-at",
        "2026-03-02T10:00",
        "--db",
        db,
    )


def statuses(db: str, campaign: str) -> list[str]:
    engine = create_engine(db)
    with engine.connect() as conn:
        found = list(
            conn.scalars(
                select(deliveries.c.status)
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .where(enrollments.c.campaign == campaign)
                .order_by(deliveries.c.position)
            )
        )
    engine.dispose()
    return found


def fill_in(folder: Path) -> None:
    """What a staff member does after split: the clinic's details instead of TODO."""
    spec = folder / "campaign.yaml"
    text = spec.read_text(encoding="utf-8")
    for old, new in (
        ("'TODO: sender name'", "Riverside Clinic"),
        ("todo@example.invalid", "care@riverside-clinic.example"),
        ("'TODO: your organisation'", "Riverside Clinic"),
        ("'TODO: postal address (required by law in every email)'", "'12 River Rd, Leeds'"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    spec.write_text(text, encoding="utf-8")


def test_a_draft_is_kept_back_the_good_campaign_sends_and_the_named_command_fixes_it(
    tmp_path, clinic_folder, db, monkeypatch
):
    draft = split_draft(tmp_path)
    # Published and enrolled into by a dripmail from before the refusal.
    with monkeypatch.context() as older:
        older.setattr(publish, "check_publishable", lambda _conn, _campaign: None, raising=False)
        assert enroll(draft, "bo@example.com", db).exit_code == 0
    assert enroll(clinic_folder, "ana@example.com", db).exit_code == 0

    result = dripmail("run", "--now", NOW, "--db", db)
    assert result.exit_code == 1, result.output
    assert "sent 1," in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    command = f"dripmail plan {draft.resolve()} --apply"
    assert errors[0].startswith(f"error: campaign {DRAFT}: 1 due email kept back: ")
    assert "brand.organisation" in errors[0] and "placeholder" in errors[0]
    assert command in errors[0]
    assert "Traceback" not in result.output
    assert statuses(db, "ketamine-and-sleep")[0] == "sent"
    assert set(statuses(db, DRAFT)) == {"scheduled"}

    fill_in(draft)
    args = re.search(r"run: dripmail (plan \S+ --apply)", errors[0]).group(1).split()
    fixed = dripmail(*args, "--now", NOW, "--db", db)
    assert fixed.exit_code == 0, fixed.output
    assert "changed        from.address: “todo@example.invalid” -> " in fixed.stdout
    assert "changed        brand.organisation" in fixed.stdout
    assert "applied" in fixed.stdout

    again = dripmail("run", "--now", NOW, "--db", db)
    assert again.exit_code == 0, again.output
    assert "sent 1," in again.stdout and not again.stderr.strip()
    assert statuses(db, DRAFT)[0] == "sent"
    sent = list((tmp_path / "outbox").glob("*.eml"))
    assert any("Riverside Clinic" in eml.read_text(encoding="utf-8") for eml in sent)


def test_publishing_placeholders_is_refused_by_enroll_import_and_plan(tmp_path, db):
    draft = split_draft(tmp_path)
    result = enroll(draft, "bo@example.com", db)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 4, result.stderr
    assert lines[0].startswith(f"error: {draft / 'campaign.yaml'}:")
    assert all("still a placeholder (TODO)" in line for line in lines)
    assert {"brand.organisation", "from.address"} <= {line.split(": ")[2] for line in lines}
    csv = tmp_path / "contacts.csv"
    csv.write_text("email,first_name,timezone\r\ncy@example.com,Cy,Europe/London\r\n")
    result = dripmail("import", str(draft), str(csv), "--consent", "clinic form", "--db", db)
    assert result.exit_code == 2 and result.stderr.count("still a placeholder") == 4
    engine = create_engine(db)
    with engine.connect() as conn:
        assert [conn.scalar(select(func.count()).select_from(t)) for t in written] == [0] * 4
    engine.dispose()


def test_plan_apply_refuses_a_version_that_brings_placeholders_back(tmp_path, clinic_folder, db):
    assert enroll(clinic_folder, "ana@example.com", db).exit_code == 0
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(
        re.sub(
            r"organisation: .*",
            "organisation: 'TODO: your organisation'",
            spec.read_text(),
            count=1,
        )
    )
    before = snapshot(db)
    dry = dripmail("plan", str(clinic_folder), "--db", db)
    assert dry.exit_code == 0, dry.output
    assert "changed        brand.organisation: “Balanced Ketamine” -> “TODO: your" in dry.stdout
    assert dry.stderr.startswith(f"warning: {spec}:")
    assert "brand.organisation: still a placeholder (TODO)" in dry.stderr
    result = dripmail("plan", str(clinic_folder), "--apply", "--db", db)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "brand.organisation: still a placeholder (TODO)" in result.stderr
    assert snapshot(db) == before


def test_a_campaign_whose_own_sender_is_misconfigured_is_kept_back(tmp_path, clinic_folder, db):
    other = tmp_path / "smtp-campaign"
    other.mkdir()
    for path in clinic_folder.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    spec = other / "campaign.yaml"
    text = spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-by-smtp", 1)
    # SMTP with no host anywhere (no DRIPMAIL_SMTP_HOST, no sender.host) and no public URL.
    spec.write_text(re.sub(r"sender:\n(  .*\n)+", "sender:\n  type: smtp\n", text, count=1))
    assert enroll(other, "bo@example.com", db).exit_code == 0
    assert enroll(clinic_folder, "ana@example.com", db).exit_code == 0

    result = dripmail("run", "--now", NOW, "--db", db)
    assert result.exit_code == 1, result.output
    assert "sent 1," in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: campaign sleep-by-smtp: 1 due email kept back: ")
    assert f"dripmail plan {other.resolve()} --apply" in errors[0]
    assert statuses(db, "ketamine-and-sleep")[0] == "sent"
    assert set(statuses(db, "sleep-by-smtp")) == {"scheduled"}


def test_a_problem_every_campaign_shares_still_stops_the_run(tmp_path, clinic_folder, db):
    assert enroll(clinic_folder, "ana@example.com", db).exit_code == 0
    before = statuses(db, "ketamine-and-sleep")
    result = dripmail("run", "--now", NOW, "--sender", "smtp", "--db", db)
    assert result.exit_code == 2, result.output
    assert "kept back" not in result.stderr
    assert statuses(db, "ketamine-and-sleep") == before


def test_several_workers_keep_the_draft_back_and_name_it_once(
    tmp_path, clinic_folder, postgres_url, monkeypatch
):
    draft = split_draft(tmp_path)
    with monkeypatch.context() as older:
        older.setattr(publish, "check_publishable", lambda _conn, _campaign: None, raising=False)
        assert enroll(draft, "bo@example.com", postgres_url).exit_code == 0
    assert enroll(clinic_folder, "ana@example.com", postgres_url).exit_code == 0

    result = dripmail("run", "--workers", "2", "--now", NOW, "--db", postgres_url)
    assert result.exit_code == 1, result.output
    assert "all 2 workers: sent 1," in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"campaign {DRAFT}: 1 due email kept back: " in errors[0]
    assert f"dripmail plan {draft.resolve()} --apply" in errors[0]
    assert set(statuses(postgres_url, DRAFT)) == {"scheduled"}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda text: text.replace("delay: 2d", "delay: 5000d", 1), "10 years"),
        (lambda text: text.replace("outbox: outbox", "outbox: ../elsewhere", 1), "outbox"),
    ],
    ids=["delay-over-10-years", "outbox-outside"],
)
def test_a_version_published_before_a_new_bound_is_kept_back_and_the_others_send(
    tmp_path, clinic_folder, db, edit, named
):
    # Two campaigns; one of them published (by an older dripmail) with what is refused now.
    other = tmp_path / "other"
    shutil.copytree(clinic_folder, other)
    spec = other / "campaign.yaml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("name: ketamine-and-sleep", "name: sleep-two"),
        encoding="utf-8",
    )
    assert enroll(clinic_folder, "ana@example.com", db).exit_code == 0
    assert enroll(other, "bo@example.com", db).exit_code == 0
    engine = create_engine(db)
    with engine.begin() as conn:
        files = json.loads(
            conn.scalar(
                select(campaign_versions.c.files).where(campaign_versions.c.campaign == "sleep-two")
            )
        )
        edited = edit(files["campaign.yaml"])
        assert edited != files["campaign.yaml"]
        files["campaign.yaml"] = edited
        conn.execute(
            campaign_versions.update()
            .where(campaign_versions.c.campaign == "sleep-two")
            .values(files=json.dumps(files))
        )
    engine.dispose()

    result = dripmail("run", "--now", NOW, "--db", db)

    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    assert "sent 1," in result.stdout
    assert statuses(db, "ketamine-and-sleep")[0] == "sent"
    assert set(statuses(db, "sleep-two")) == {"scheduled"}
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: campaign sleep-two: 1 due email kept back: ")
    assert "no longer loads" in errors[0] and named in errors[0]
    assert f"dripmail plan {other.resolve()} --apply" in errors[0]
