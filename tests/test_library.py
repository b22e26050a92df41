"""The engine without the CLI: what `campaigns/__init__.py` promises a Python user."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import campaigns
from senders.file import FileSender

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_the_docstring_example_sends_the_first_email(clinic_folder: Path, tmp_path: Path):
    from campaigns import Dispatcher, Signup, Store, enroll, load_folder

    store = Store(str(tmp_path / "clinic.db"))
    campaign = load_folder(clinic_folder)
    signup = Signup("pat@example.com", "Pat", "Europe/London", None, "web form")
    enroll(store, campaign, signup, now=NOW)
    outbox = FileSender(tmp_path / "outbox")
    report = Dispatcher(store, lambda campaign: outbox).run(now=NOW)

    assert report.sent == 1
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "Pat <pat@example.com>"
    assert message["Subject"] == campaign.steps[0].subject


def test_every_public_name_resolves_and_an_unknown_one_is_an_attribute_error():
    assert sorted(campaigns.__all__) == sorted(campaigns._PUBLIC)
    for name in campaigns.__all__:
        assert getattr(campaigns, name).__name__ == name
    try:
        campaigns.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("campaigns.no_such_thing resolved")


def test_importing_the_package_loads_no_stage():
    loaded = subprocess.run(
        [sys.executable, "-c", "import campaigns, sys; print(sorted(m for m in sys.modules "
         "if m.startswith('campaigns.')))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"
