"""Step conditions and contact attributes, without a database: the rule, the model, the
placeholders and the batch form."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.authoring.conditions import StepCondition, click_problems, clicks_unreported
from campaigns.authoring.sender_settings import (
    FileSenderSettings,
    MailgunSenderSettings,
    PostmarkSenderSettings,
    SendGridSenderSettings,
    SesSenderSettings,
    SmtpSenderSettings,
)
from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from campaigns.planning.conditions import (
    ContactFacts,
    Verdict,
    evaluate,
    outlook,
    parse_attributes,
    skip_note,
    stored_outcome,
)
from campaigns.planning.signups import attribute_option, checked_attributes
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import Recipient

FIXTURE = Path(__file__).parents[1] / "fixtures" / "render"
LINKS = {"unsubscribe_url": "https://c.example/u/t", "preferences_url": "https://c.example/p/t"}


def facts(tags=(), clicked=(), **attributes: str) -> ContactFacts:
    return ContactFacts(frozenset(tags), attributes, frozenset(clicked))


def when(**keys) -> StepCondition:
    return StepCondition.model_validate(keys)


# ------------------------------------------------------------------------------ the rule


def test_tags_none_is_false_for_a_contact_with_the_tag_and_says_which():
    condition = when(tags_none=["returning", "vip"])
    assert evaluate(condition, facts()) == Verdict(True, "tags_none [returning, vip] holds")
    assert evaluate(condition, facts(["returning"])) == Verdict(False, "has tag returning")
    assert evaluate(condition, facts(["vip", "returning"])) == Verdict(
        False, "has tags returning, vip"
    )


def test_tags_any_needs_one_of_the_tags():
    condition = when(tags_any=["sleep", "anxiety"])
    assert evaluate(condition, facts(["anxiety", "x"])) == Verdict(
        True, "tags_any [sleep, anxiety] holds (has anxiety)"
    )
    assert evaluate(condition, facts(["x"])) == Verdict(
        False, "has none of the tags sleep, anxiety"
    )


def test_attributes_are_equal_case_and_spaces_aside():
    condition = when(attributes={"patient_type": "new"})
    assert evaluate(condition, facts(patient_type=" New ")).go
    assert evaluate(condition, facts(patient_type="returning")) == Verdict(
        False, "patient_type is 'returning', not 'new'"
    )
    assert evaluate(condition, facts()) == Verdict(False, "has no patient_type (wanted 'new')")
    assert evaluate(condition, facts(patient_type="")) == Verdict(
        False, "has no patient_type (wanted 'new')"
    )


def test_clicked_and_not_clicked_read_the_clicks_of_the_step_named():
    assert evaluate(when(clicked="welcome"), facts(clicked=["welcome"])).go
    assert evaluate(when(clicked="welcome"), facts(clicked=["other"])) == Verdict(
        False, "did not click a link in welcome"
    )
    assert evaluate(when(not_clicked="welcome"), facts()).go
    assert evaluate(when(not_clicked="welcome"), facts(clicked=["welcome"])) == Verdict(
        False, "clicked a link in welcome"
    )


def test_every_key_must_hold_and_the_first_that_fails_is_the_reason():
    condition = when(tags_none=["returning"], attributes={"clinic": "north"}, clicked="welcome")
    ok = facts(clicked=["welcome"], clinic="North")
    assert evaluate(condition, ok) == Verdict(
        True,
        "tags_none [returning] holds; clinic is 'north'; clicked a link in welcome",
    )
    assert evaluate(condition, facts(["returning"], clinic="South")).reason == ("has tag returning")
    assert evaluate(None, facts()) == Verdict(True, "no condition")


@given(
    tags=st.frozensets(st.sampled_from(["a", "b", "c", "d"])),
    none=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1),
    any_=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1),
)
def test_tag_rules_are_set_membership(tags, none, any_):
    assert evaluate(when(tags_none=none), facts(tags)).go == (not tags & set(none))
    assert evaluate(when(tags_any=any_), facts(tags)).go == bool(tags & set(any_))


def test_staff_lines_say_what_now_means_and_what_was_decided():
    condition = when(tags_none=["returning"])
    assert outlook(condition, facts()) == (
        "gets it: tags_none [returning] holds now (decided when due)"
    )
    assert outlook(condition, facts(["returning"])) == (
        "would be skipped now: has tag returning (decided when due)"
    )
    assert outlook(None, facts()) == ""
    assert stored_outcome("skipped", skip_note("has tag returning")) == (
        "skipped: has tag returning"
    )
    assert stored_outcome("skipped", "the address is suppressed") == ""


def test_stored_facts_read_the_columns_as_the_store_keeps_them():
    stored = ContactFacts.stored(";returning;vip;", '{"patient_type": "new"}')
    assert stored.tags == {"returning", "vip"} and stored.attributes == {"patient_type": "new"}
    assert ContactFacts.stored(None, None) == ContactFacts()
    assert parse_attributes("not json") == {} and parse_attributes("[1]") == {}


# ----------------------------------------------------------------------------- the model


def test_the_model_normalises_tags_and_refuses_what_could_never_match():
    assert when(tags_none="Returning").tags_none == ("returning",)
    assert when(attributes={"visits": 3}).attributes == {"visits": "3"}
    for bad, words in (
        ({}, "an empty condition"),
        ({"tags_any": []}, "give a list of tags"),
        ({"tags_any": ["no spaces"]}, "is not a tag"),
        ({"attributes": {"vip": True}}, "quoted"),
        ({"attributes": {"Patient Type": "new"}}, "is not an attribute name"),
        ({"attributes": {}}, "give attribute: value pairs"),
        ({"opened": "welcome"}, "Extra inputs"),
    ):
        with pytest.raises(ValueError, match=words):
            when(**bad)


@pytest.mark.parametrize(
    ("sender", "reports"),
    [
        (FileSenderSettings(), False),
        (SmtpSenderSettings(), False),
        (SendGridSenderSettings(), False),
        (SendGridSenderSettings(track_clicks=True), True),
        (MailgunSenderSettings(track_clicks=True), True),
        (PostmarkSenderSettings(), False),
        (SesSenderSettings(), False),
        (SesSenderSettings(configuration_set="clicks"), True),
    ],
)
def test_which_senders_report_clicks(sender, reports):
    assert (clicks_unreported(sender) is None) == reports
    steps = [("welcome", None), ("later", when(clicked="welcome"))]
    problems = click_problems(steps, sender, {("steps", 1, "when", "clicked"): 9})
    assert (problems == []) == reports
    if not reports:
        assert problems[0][1] == 9 and "step later: when.clicked welcome" in problems[0][0]


def test_a_step_condition_is_read_from_the_campaign_file(tmp_path):
    folder = tmp_path / "campaign"
    shutil.copytree(FIXTURE, folder)
    path = folder / "campaign.yaml"
    text = path.read_text()
    head, sep, rest = text.partition("  - file: 02-mental-health.md\n")
    delay, _, tail = rest.partition("\n")
    path.write_text(
        head + sep + delay + "\n    when:\n      tags_none: [returning]\n"
        "      clicked: welcome\n" + tail
    )
    step = load_folder(folder).steps[1]
    assert step.when == when(tags_none=["returning"], clicked="welcome")
    path.write_text(path.read_text().replace("clicked: welcome", "clicked: mental-health"))
    with pytest.raises(InputError) as raised:
        load_folder(folder)
    assert raised.value.field == "steps[1].when.clicked"
    assert "is this step itself" in raised.value.message and raised.value.line


# ------------------------------------------------------------------- attributes in emails


@pytest.fixture
def attributes_campaign(tmp_path):
    folder = tmp_path / "campaign"
    shutil.copytree(FIXTURE, folder)
    path = folder / "01-welcome.md"
    path.write_text(
        path.read_text()
        + "\nYour clinic: {{ attributes.clinic }}. Type: "
        + '{{ attributes.patient_type | default("new") }}. '
        + "[Book](https://c.example/book?clinic={{ attributes.clinic }})\n"
    )
    return folder


def test_attributes_render_escaped_missing_ones_empty_and_the_batch_form_agrees(
    attributes_campaign,
):
    step = compile_campaign(load_folder(attributes_campaign)).step("welcome")
    assert step.tagged is not None  # attributes are plain values: one body for many
    for attributes in ({"clinic": "<b>North</b> & Co"}, {}, {"patient_type": "returning"}):
        recipient = Recipient("pat@example.com", "Pat", attributes=attributes)
        rendered = step.personalise(recipient, **LINKS)
        assert step.batch_form(recipient, **LINKS).render() == (rendered.html, rendered.text)
    rendered = step.personalise(
        Recipient("pat@example.com", "Pat", attributes={"clinic": "<b>North</b> & Co"}), **LINKS
    )
    assert "Your clinic: &lt;b&gt;North&lt;/b&gt; &amp; Co. Type: new." in rendered.html
    assert "<b>North" not in rendered.html
    assert "Your clinic: <b>North</b> & Co. Type: new." in rendered.text
    assert "clinic=%3Cb%3ENorth%3C/b%3E%20%26%20Co" in rendered.html
    nothing = step.personalise(Recipient("pat@example.com"), **LINKS)
    assert "Your clinic: . Type: new." in nothing.text


def test_a_contacts_attribute_is_a_value_never_template_source(attributes_campaign):
    step = compile_campaign(load_folder(attributes_campaign)).step("welcome")
    sneaky = "{{ first_name }}{% if 1 %}x{% endif %}"
    text = step.personalise(
        Recipient("pat@example.com", "Pat", attributes={"clinic": sneaky}), **LINKS
    ).text
    assert f"Your clinic: {sneaky}." in text


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("{{ attributes }}", "`attributes` is read one at a time"),
        ('{{ attributes["clinic"] }}', "`attributes` is read one at a time"),
        ("{{ attributes.clinic.upper() }}", "is text, with no parts to look up"),
        ("{{ attributes._values }}", "is not an attribute name"),
        ("{{ attribute.clinic }}", "unknown placeholder 'attribute'"),
    ],
)
def test_check_refuses_attributes_used_other_than_by_name(tmp_path, tag, words):
    folder = tmp_path / "campaign"
    shutil.copytree(FIXTURE, folder)
    path = folder / "02-mental-health.md"
    path.write_text(path.read_text() + f"\nSee {tag} here.\n")
    with pytest.raises(InputError, match=words) as raised:
        compile_campaign(load_folder(folder))
    assert raised.value.source.endswith("02-mental-health.md") and raised.value.line


def test_a_condition_in_an_if_renders_per_contact(tmp_path):
    folder = tmp_path / "campaign"
    shutil.copytree(FIXTURE, folder)
    path = folder / "01-welcome.md"
    path.write_text(
        path.read_text()
        + '\n{% if attributes.patient_type == "new" %}Welcome, new patient.{% endif %}\n'
    )
    step = compile_campaign(load_folder(folder)).step("welcome")
    new = Recipient("a@example.com", attributes={"patient_type": "new"})
    assert "Welcome, new patient." in step.personalise(new, **LINKS).text
    assert "Welcome, new patient." not in step.personalise(Recipient("b@example.com"), **LINKS).text


# ------------------------------------------------------------------------ sign-up limits


def test_attributes_are_at_most_fifty_of_two_hundred_characters():
    assert checked_attributes({"a": "  x\ny ", "b": "", "c": None}) == {"a": "x\ny"}
    with pytest.raises(InputError) as raised:
        checked_attributes({"note": "x" * 201}, prefix="attributes.")
    assert raised.value.field == "attributes.note"
    assert checked_attributes({"note": "x" * 200}) == {"note": "x" * 200}
    with pytest.raises(InputError, match="at most 50"):
        checked_attributes({f"a{i}": "x" for i in range(51)})
    assert attribute_option("clinic=North=East") == ("clinic", "North=East")
    for bad in ("clinic", "patient type=new", "=x"):
        with pytest.raises(InputError):
            attribute_option(bad)
