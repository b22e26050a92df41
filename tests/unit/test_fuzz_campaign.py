"""Fuzz: a campaign folder's files, however edited, load as a Campaign or one InputError."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, load_files, read_folder
from campaigns.errors import InputError
from tests.conftest import write_clinic_campaign
from tests.unit.fuzz import fuzz_settings, outcome


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return read_folder(write_clinic_campaign(tmp_path_factory.mktemp("fuzz") / "clinic"))


def paths(node, prefix=()):
    """Every key and item path of a parsed YAML document."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.dates(),
    st.sampled_from(
        ["0d", "2d", "36h", "1w", "-1d", "09:00", "25:00", "mon", "TODO: set", "outbox",
         "smtp", "sendgrid", "file", "closed.ics", "01-welcome.md", "nope.md", "#zzz",
         "3654d", "100000y", "99999999999d", "1e308d", "../out", "/tmp/x"]
    ),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
ICS = st.lists(
    st.sampled_from(
        [
            "BEGIN:VCALENDAR",
            "END:VCALENDAR",
            "BEGIN:VEVENT",
            "END:VEVENT",
            "DTSTART;VALUE=DATE:20261225",
            "DTEND;VALUE=DATE:20261227",
            "DTSTART:20260101T100000",
            "DTEND;VALUE=DATE:20261224",
            "DTSTART;VALUE=DATE:2026",
            "DTSTART;VALUE=DATE:99991231",
            "DTEND;VALUE=DATE:00010101",
            " folded",
            "X-FOO:bar",
            "",
        ]
    ),
    max_size=8,
).map("\n".join)


@fuzz_settings(max_examples=80)
@given(
    changes=st.lists(
        st.tuples(st.integers(0, 10_000), VALUES, st.booleans()), min_size=1, max_size=4
    ),
    ics=ICS,
)
def test_a_campaign_file_with_any_values_loads_or_names_what_is_wrong(files, changes, ics):
    data = yaml.safe_load(files[CAMPAIGN_FILE])
    every = list(paths(data))
    for pick, value, delete in changes:
        path = every[pick % len(every)]
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            if delete:
                del node[path[-1]]
            else:
                node[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this path
    edited = {**files, CAMPAIGN_FILE: yaml.safe_dump(data, allow_unicode=True), "closed.ics": ics}
    result = outcome(lambda: load_files(edited))
    assert isinstance(result, Campaign | InputError)


YAMLISH = st.lists(
    st.sampled_from(
        [*":-[]{}#'\"|>!%@`,?\n \t&*", "abc", "0", "1.5", "subject", "---", "&a [1]", "*a"]
    ),
    max_size=40,
).map("".join)


@fuzz_settings(max_examples=100)
@given(
    which=st.integers(0, 100),
    start=st.integers(0, 5_000),
    length=st.integers(0, 60),
    insert=st.text(max_size=40) | YAMLISH,
)
def test_any_file_of_the_folder_spliced_with_any_text_loads_or_names_what_is_wrong(
    files, which, start, length, insert
):
    name = sorted(files)[which % len(files)]
    text = files[name]
    start = min(start, len(text))
    edited = {**files, name: text[:start] + insert + text[start + length :]}
    result = outcome(lambda: load_files(edited))
    assert isinstance(result, Campaign | InputError)


FRONT_VALUES = VALUES | st.text(max_size=30)


@fuzz_settings(max_examples=80)
@given(
    meta=st.dictionaries(
        st.sampled_from(["subject", "preheader", "cta", "title", "Subject"]) | st.text(max_size=6),
        FRONT_VALUES,
        max_size=4,
    ),
    raw=st.none() | YAMLISH,
    body=st.text(max_size=80) | st.sampled_from(["# Hello\n\nText.", "", "\n\n", "## Only h2"]),
    closed=st.booleans(),
)
def test_step_front_matter_of_any_shape_loads_or_names_what_is_wrong(
    files, meta, raw, body, closed
):
    header = raw if raw is not None else yaml.safe_dump(meta, allow_unicode=True)
    text = "---\n" + header + ("\n---\n" if closed else "\n") + body
    edited = {**files, "01-welcome.md": text}
    result = outcome(lambda: load_files(edited))
    assert isinstance(result, Campaign | InputError)
