"""What a run keeps back and what `plan` lists, as pure functions (issue 15, point 3)."""

from __future__ import annotations

import pytest

from campaigns.authoring.spec import load_folder
from campaigns.delivery.held import Held, classify_senders
from campaigns.planning.edits import diff_campaigns
from senders.base import SenderConfigurationError


def test_a_sender_problem_of_some_campaigns_is_theirs():
    errors = {"sleep-by-smtp": "smtp sender: no host: set DRIPMAIL_SMTP_HOST"}
    assert classify_senders(errors, sendable=2) == errors


def test_a_sender_problem_every_sending_campaign_shares_stops_the_run_with_one_line():
    refused = "SendGrid refused the API key (401): check SENDGRID_API_KEY"
    with pytest.raises(SenderConfigurationError) as caught:
        classify_senders({"a": refused, "b": refused}, sendable=2)
    assert str(caught.value) == refused


def test_the_line_names_the_campaign_the_count_and_the_command():
    held = Held("sleep-guide", "from.address is still a placeholder (TODO)", "/srv/sleep", 1)
    assert held.line() == (
        "campaign sleep-guide: 1 due email kept back: from.address is still a placeholder "
        "(TODO); fix it, then run: dripmail plan /srv/sleep --apply"
    )
    assert (
        "dripmail plan FOLDER --apply (FOLDER: the folder of campaign x)"
        in Held("x", "its sender failed", None, 3).line()
    )


def test_plan_lists_campaign_file_fields_and_other_files_that_changed(clinic_folder):
    old = load_folder(clinic_folder)
    spec = clinic_folder / "campaign.yaml"
    text = spec.read_text()
    spec.write_text(
        "# edited by the front desk\n"
        + text.replace("organisation: Balanced Ketamine\n", "organisation: Riverside Clinic\n")
    )
    diff = diff_campaigns(old, load_folder(clinic_folder))
    assert diff.fields_changed == (("brand.organisation", "Balanced Ketamine", "Riverside Clinic"),)
    assert diff.files_changed == () and diff.copy_changed == ()
    spec.write_text("# only a comment\n" + text)
    comment_only = diff_campaigns(old, load_folder(clinic_folder))
    assert comment_only.fields_changed == () and comment_only.files_changed == ("campaign.yaml",)
