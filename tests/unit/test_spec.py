"""The campaign file: what it accepts, and the one line it says when something is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.authoring.spec import load_folder, step_key
from campaigns.errors import InputError

CAMPAIGN = """\
name: sleep
from:
  name: Clinic Care Team
  address: care@clinic.example.com
brand:
  organisation: Clinic
  postal_address: 1 Main St, Springfield
timezone: America/New_York
send_window:
  start: 09:00
  end: "17:00"
  days: [mon, tue, wed, thu, fri]
steps:
  - file: 01-welcome.md
    delay: 0d
  - file: 02b-physical-health.md
    delay: 36h
"""


def make(tmp_path: Path, text: str = CAMPAIGN) -> Path:
    (tmp_path / "campaign.yaml").write_text(text)
    (tmp_path / "01-welcome.md").write_text("---\npreheader: Hello there\n---\n# Welcome\n\nHi.\n")
    (tmp_path / "02b-physical-health.md").write_text(
        "---\nsubject: Your body at night\ncta: Book a visit\n---\nSleep matters.\n"
    )
    return tmp_path


def test_a_valid_campaign_loads_with_keys_subjects_and_window(tmp_path):
    campaign = load_folder(make(tmp_path))
    assert [s.key for s in campaign.steps] == ["welcome", "physical-health"]
    assert [s.subject for s in campaign.steps] == ["Welcome", "Your body at night"]
    assert campaign.steps[0].preheader == "Hello there"
    assert campaign.steps[1].cta == "Book a visit"
    assert str(campaign.steps[1].delay) == "36h"
    # An unquoted 09:00 is a time, not the YAML 1.1 integer 540.
    assert campaign.spec.send_window.start == "09:00"
    assert campaign.window.days == frozenset(range(5))
    assert campaign.placeholders() == []


def test_step_keys_drop_the_order_prefix():
    assert step_key("03-physical-health.md") == "physical-health"
    assert step_key("03b-physical-health.md") == "physical-health"
    assert step_key("welcome.md") == "welcome"


def test_version_changes_with_any_referenced_file(tmp_path):
    before = load_folder(make(tmp_path)).version
    (tmp_path / "01-welcome.md").write_text("# Welcome\n\nHi again.\n")
    assert load_folder(tmp_path).version != before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("timezone: America/New_York", "timezone: America/New_Yrok"),
            "campaign.yaml:8: timezone: unknown time zone 'America/New_Yrok'",
        ),
        (
            ("    delay: 36h", "    delay: 2 weeks later"),
            "campaign.yaml:17: steps[1].delay: '2 weeks later' is not a delay",
        ),
        (
            ("timezone: America", "colour: blue\ntimezone: America"),
            "campaign.yaml:8: colour: unknown key 'colour' (expected one of: name, title",
        ),
        (
            ('  end: "17:00"', '  ends: "17:00"'),
            "campaign.yaml:11: send_window.ends: unknown key 'ends': did you mean `end`?",
        ),
        (
            ("  organisation: Clinic", "  organization: Clinic"),
            "campaign.yaml:6: brand.organization: unknown key 'organization': "
            "did you mean `organisation`?",
        ),
        (
            ("address: care@clinic.example.com", "address: care-at-clinic"),
            "campaign.yaml:4: from.address: 'care-at-clinic' is not an email address",
        ),
        (
            ("  days: [mon, tue, wed, thu, fri]", "  days: [mon, tues]"),
            "campaign.yaml:12: send_window.days[1]: Input should be 'mon'",
        ),
        (("name: sleep\n", ""), "campaign.yaml:1: name: required"),
        (
            ("- file: 01-welcome.md", "- file: 01-welcom.md"),
            "campaign.yaml:14: steps[0].file: no such file '01-welcom.md'",
        ),
        (
            ('  end: "17:00"', '  end: "08:00"'),
            "campaign.yaml:9: send_window: the send window must end after it starts",
        ),
    ],
)
def test_each_mistake_gets_one_line_with_file_line_and_field(tmp_path, change, expected):
    make(tmp_path, CAMPAIGN.replace(*change))
    with pytest.raises(InputError) as caught:
        load_folder(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert message.removeprefix(str(tmp_path) + "/").startswith(expected), message


def test_broken_yaml_names_its_line(tmp_path):
    make(tmp_path, CAMPAIGN.replace("  days: [mon, tue", "  days: [mon, tue\n  oops: ]"))
    with pytest.raises(InputError, match=r"campaign.yaml:1[23]: not valid YAML"):
        load_folder(tmp_path)


def test_unknown_front_matter_key_names_the_step_file_and_line(tmp_path):
    make(tmp_path)
    (tmp_path / "01-welcome.md").write_text("---\npreheader: Hi\nsubjet: Typo\n---\n# Welcome\n")
    with pytest.raises(InputError, match=r"01-welcome.md:3: subjet: unknown key 'subjet'"):
        load_folder(tmp_path)
