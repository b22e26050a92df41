"""Campaign folders with A/B variants and many contacts, for the variant tests."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path

import yaml
from sqlalchemy import select

from campaigns.authoring.spec import load_folder
from campaigns.planning.enroll import import_csv
from campaigns.storage.tables import contacts, deliveries, enrollments
from tests.conftest import write_clinic_campaign

SUBJECT_A = "Sleep better from tonight"
SUBJECT_B = "One habit for better sleep"


def variant_folder(
    folder: Path,
    *,
    weights: tuple[float, float] = (1, 1),
    winner: dict | None = None,
    step: int = 0,
) -> Path:
    """The clinic campaign with two subject variants on step `step` (B with its own body)."""
    write_clinic_campaign(folder)
    data = yaml.safe_load((folder / "campaign.yaml").read_text(encoding="utf-8"))
    data["steps"][step]["variants"] = [
        {"subject": SUBJECT_A, "weight": weights[0]},
        {"subject": SUBJECT_B, "file": "01-welcome-b.md", "weight": weights[1]},
    ]
    if winner is not None:
        data["steps"][step]["winner"] = winner
    (folder / "01-welcome-b.md").write_text(
        "Hello {{ first_name | default('there') }},\n\n"
        "One habit helps most after a ketamine session: a regular bedtime.\n",
        encoding="utf-8",
    )
    write_spec(folder, data)
    return folder


def write_spec(folder: Path, data: dict) -> None:
    (folder / "campaign.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )


def read_spec(folder: Path) -> dict:
    return yaml.safe_load((folder / "campaign.yaml").read_text(encoding="utf-8"))


def enroll_many(store, folder: Path, people: Iterable[tuple[str, str]], *, now: datetime) -> None:
    """Enroll (address, signed_up_at) pairs through a CSV import, in UTC."""
    path = folder.parent / f"people-{len(list(folder.parent.glob('people-*.csv')))}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "timezone", "signed_up_at"])
        for address, signed_up_at in people:
            writer.writerow([address, "Pat", "UTC", signed_up_at])
    report = import_csv(store, load_folder(folder), path, now=now, consent="clinic form")
    assert not report.rejected, report.rejected[:3]


def outbox_subjects(outbox: Path) -> dict[int, str]:
    """Delivery id -> Subject, from every .eml in the outbox (Message-ID names the id)."""
    parser = BytesHeaderParser()
    found = {}
    for path in outbox.glob("*.eml"):
        with path.open("rb") as handle:
            headers = parser.parse(handle)
        match = re.match(r"<dripmail\.(\d+)\.", headers["Message-ID"])
        assert match, headers["Message-ID"]
        found[int(match.group(1))] = str(headers["Subject"])
    return found


def recorded(store, step_key: str) -> dict[int, tuple[int, str | None, str]]:
    """Contact id -> (delivery id, variant, status) of one step."""
    with store.connect() as conn:
        rows = conn.execute(
            select(contacts.c.id, deliveries.c.id, deliveries.c.variant, deliveries.c.status)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(deliveries.c.step_key == step_key)
        ).all()
    return {contact: (delivery, variant, status) for contact, delivery, variant, status in rows}
