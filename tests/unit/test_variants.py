"""A/B variants without a database: the campaign file, the hash -> variant mapping, the
z-test and sample size, the winner rule, the verdict in words, and the batch form."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from campaigns.authoring.checks import check_campaign
from campaigns.authoring.spec import load_folder
from campaigns.authoring.variant_spec import label
from campaigns.compliance.event_model import EventKind
from campaigns.delivery.variants import CLICKED
from campaigns.errors import InputError
from campaigns.planning.variants import Rates, choose, pick_winner
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import Recipient
from campaigns.reporting.export import export_campaign
from campaigns.reporting.significance import sample_size, two_proportion_test
from campaigns.reporting.variant_stats import StepVariants, VariantCounts, _compare
from senders.sendgrid_body import plan_requests
from tests.variant_helpers import SUBJECT_A, SUBJECT_B, read_spec, variant_folder, write_spec

KEY = b"a fixed installation key for the tests"


@dataclass(frozen=True)
class V:
    name: str
    weight: float


def shares(variants: list[V], contacts: range, key: bytes = KEY) -> Counter[str]:
    return Counter(choose(key, c, "welcome", variants) for c in contacts)


# ----------------------------------------------------------------- hash -> variant


@pytest.mark.parametrize(
    "weights", [(1, 1), (1, 3), (2, 1, 1), (0.5, 0.25, 0.25), (1, 1, 1, 1, 1, 1, 1, 1, 1, 1)]
)
def test_the_split_follows_the_weights(weights):
    variants = [V(chr(ord("a") + i), w) for i, w in enumerate(weights)]
    counts = shares(variants, range(50_000))
    total = sum(weights)
    for variant in variants:
        # 50,000 draws: a share's standard deviation is at most 0.23 percentage points.
        assert abs(counts[variant.name] / 50_000 - variant.weight / total) < 0.01


def test_the_same_contact_and_step_always_get_the_same_variant():
    variants = [V("a", 1), V("b", 1)]
    first = [choose(KEY, c, "welcome", variants) for c in range(1000)]
    assert first == [choose(KEY, c, "welcome", list(reversed(variants))) for c in range(1000)]
    # Another step or another installation's key is an independent draw.
    other_step = [choose(KEY, c, "second", variants) for c in range(1000)]
    other_key = [choose(secrets.token_bytes(32), c, "welcome", variants) for c in range(1000)]
    assert 400 < sum(a == b for a, b in zip(first, other_step, strict=True)) < 600
    assert 400 < sum(a == b for a, b in zip(first, other_key, strict=True)) < 600


def test_adding_a_variant_moves_contacts_only_to_it():
    before = {c: choose(KEY, c, "welcome", [V("a", 1), V("b", 1)]) for c in range(30_000)}
    after = {c: choose(KEY, c, "welcome", [V("a", 1), V("b", 1), V("c", 1)]) for c in range(30_000)}
    moved = [c for c in before if before[c] != after[c]]
    assert all(after[c] == "c" for c in moved)
    assert abs(len(moved) / 30_000 - 1 / 3) < 0.01  # exactly the share c takes


def test_a_weight_change_moves_contacts_only_to_or_from_that_variant():
    three = [V("a", 1), V("b", 1), V("c", 1)]
    heavier = [V("a", 1), V("b", 1), V("c", 2)]
    before = {c: choose(KEY, c, "welcome", three) for c in range(30_000)}
    after = {c: choose(KEY, c, "welcome", heavier) for c in range(30_000)}
    moved = [c for c in before if before[c] != after[c]]
    assert all(after[c] == "c" for c in moved)
    # c goes from 1/3 to 1/2: a sixth of everyone moves, and nobody else.
    assert abs(len(moved) / 30_000 - 1 / 6) < 0.01


def test_removing_a_variant_moves_only_its_contacts():
    before = {c: choose(KEY, c, "welcome", [V("a", 1), V("b", 1), V("c", 1)]) for c in range(9000)}
    after = {c: choose(KEY, c, "welcome", [V("a", 1), V("c", 1)]) for c in range(9000)}
    assert all(before[c] == after[c] for c in before if before[c] != "b")


# ----------------------------------------------------------------- z-test, sample size


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "z", "p"),
    [
        # Checked against scipy.stats.chi2_contingency(..., correction=False): chi2 = z^2.
        (41, 1000, 29, 1000, 1.4600528264780652, 0.14427555602805964),
        (80, 1000, 50, 1000, 2.721095431170472, 0.00650659748363784),
        (120, 2000, 90, 2000, 2.126777210754324, 0.03343859867669463),
    ],
)
def test_two_proportion_z_test_against_known_values(x1, n1, x2, n2, z, p):
    result = two_proportion_test(x1, n1, x2, n2)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.meaningful == (p < 0.05)
    assert two_proportion_test(x2, n2, x1, n1).z == pytest.approx(-z, rel=1e-9)


def test_z_test_with_nothing_to_compare():
    assert two_proportion_test(0, 100, 0, 100).p_value == 1.0
    assert two_proportion_test(100, 100, 100, 100).p_value == 1.0
    assert two_proportion_test(0, 0, 3, 10).p_value == 1.0


def test_sample_size_against_known_values():
    # Fleiss' table (no continuity correction), 95 % two-sided, 80 % power.
    assert sample_size(0.05, 0.10) == 435
    assert sample_size(0.10, 0.05) == 435
    assert sample_size(0.20, 0.30) == 294
    assert sample_size(0.029, 0.041) == 3681
    assert sample_size(0.04, 0.04) is None


# ----------------------------------------------------------------- winner rule


def test_no_winner_before_every_variant_has_its_sends():
    rates = {"a": Rates(499, 40), "b": Rates(600, 10)}
    assert pick_winner(rates, ["a", "b"], 500) is None
    assert pick_winner({"a": Rates(600, 40)}, ["a", "b"], 500) is None  # b never sent


def test_the_better_rate_wins_and_a_tie_waits():
    rates = {"a": Rates(500, 10), "b": Rates(520, 21)}
    choice = pick_winner(rates, ["a", "b"], 500)
    assert choice is not None and choice.variant == "b" and choice.rates == rates
    assert pick_winner({"a": Rates(500, 0), "b": Rates(510, 0)}, ["a", "b"], 500) is None
    assert pick_winner({"a": Rates(500, 5), "b": Rates(1000, 10)}, ["a", "b"], 500) is None


def test_the_stored_click_type_is_the_event_models():
    assert EventKind.CLICKED.value == CLICKED


# ----------------------------------------------------------------- the verdict in words


def step_with(a: tuple[int, int], b: tuple[int, int]) -> StepVariants:
    step = StepVariants(1, "welcome", "clicked")
    step.variants = [
        VariantCounts("a", SUBJECT_A, 1, sent=a[0], clicked=a[1]),
        VariantCounts("b", SUBJECT_B, 1, sent=b[0], clicked=b[1]),
    ]
    _compare(step)
    return step


def test_a_meaningful_difference_in_words():
    step = step_with((5000, 145), (5000, 205))
    assert step.meaningful
    assert step.verdict == "B's click rate is higher (4.1 % vs 2.9 %), meaningful at 95 %"


def test_not_yet_in_words_with_how_many_more():
    step = step_with((500, 15), (500, 20))  # 3.0 % vs 4.0 %
    needed = sample_size(0.04, 0.03)
    assert step.more_per_variant == needed - 500
    assert step.verdict == (
        f"not yet: need about {needed - 500:,} more per variant (B's click rate 4.0 % vs A's 3.0 %)"
    )
    assert step_with((500, 0), (500, 0)).verdict == (
        "not yet: no difference so far (click rate 0.0 % for each)"
    )
    assert step_with((500, 10), (0, 0)).verdict.startswith("not yet: fewer than two")


def test_labels():
    assert (label("a"), label("b"), label("short-subject")) == ("A", "B", "short-subject")


# ----------------------------------------------------------------- campaign file


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return variant_folder(tmp_path / "clinic", weights=(1, 2))


def test_variants_are_read_with_their_bodies(folder):
    step = load_folder(folder).steps[0]
    a, b = step.variants
    assert (a.name, a.subject, a.weight, a.file) == ("a", SUBJECT_A, 1, step.file)
    assert a.body == step.body
    assert (b.name, b.subject, b.weight, b.file) == ("b", SUBJECT_B, 2, "01-welcome-b.md")
    assert "regular bedtime" in b.body


def test_explicit_names(folder):
    data = read_spec(folder)
    data["steps"][0]["variants"][1]["name"] = "habit"
    write_spec(folder, data)
    assert [v.name for v in load_folder(folder).steps[0].variants] == ["a", "habit"]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda v: v[1].pop("subject"), "steps[0].variants[1].subject", "required"),
        (lambda v: v[0].update(weight=0), "steps[0].variants[0].weight", "above 0"),
        (lambda v: v[0].update(weight=-2), "steps[0].variants[0].weight", "above 0"),
        (lambda v: v[1].update(file="../x.md"), "steps[0].variants[1].file", "outside"),
        (lambda v: v[1].update(colour="red"), "steps[0].variants[1].colour", "unknown key"),
        (lambda v: v[1].update(name="a"), "steps[0].variants", "two variants are named 'a'"),
        (lambda v: v[1].update(name="Big B"), "steps[0].variants[1].name", "lower-case"),
        (lambda v: v.pop(), "steps[0].variants", "list 2 to 26"),
    ],
)
def test_bad_variants_name_file_line_and_field(folder, change, field, says):
    data = read_spec(folder)
    change(data["steps"][0]["variants"])
    write_spec(folder, data)
    with pytest.raises(InputError) as caught:
        load_folder(folder)
    error = caught.value
    assert error.field == field and says in error.message, (error.field, error.message)
    assert str(error.source).endswith("campaign.yaml") and error.line is not None


@pytest.mark.parametrize(
    ("winner", "field", "says"),
    [
        ({"metric": "opened", "after": 500}, "steps[0].winner.metric", "clicked"),
        ({"metric": "clicked", "after": 0}, "steps[0].winner.after", "greater than or equal"),
        ({"metric": "clicked"}, "steps[0].winner.after", "required"),
    ],
)
def test_bad_winner_rules(folder, winner, field, says):
    data = read_spec(folder)
    data["steps"][0]["winner"] = winner
    write_spec(folder, data)
    with pytest.raises(InputError) as caught:
        load_folder(folder)
    assert caught.value.field == field and says in caught.value.message


def test_a_winner_needs_variants(folder):
    data = read_spec(folder)
    data["steps"][1]["winner"] = {"metric": "clicked", "after": 100}
    write_spec(folder, data)
    with pytest.raises(InputError) as caught:
        load_folder(folder)
    assert caught.value.field == "steps[1].winner" and "variants" in caught.value.message
    assert caught.value.line is not None


def test_a_missing_variant_file_is_named(folder):
    (folder / "01-welcome-b.md").unlink()
    with pytest.raises(InputError) as caught:
        load_folder(folder)
    assert caught.value.field == "steps[0].variants[1].file"
    assert "01-welcome-b.md" in caught.value.message


def test_a_variant_body_follows_step_file_rules(folder):
    (folder / "01-welcome-b.md").write_text("---\nsubject: x\nmood: happy\n---\nText\n")
    with pytest.raises(InputError) as caught:
        load_folder(folder)
    assert caught.value.field == "mood" and str(caught.value.source).endswith("01-welcome-b.md")


# ----------------------------------------------------------------- compile, batch form


def test_each_variant_is_compiled_once_with_its_own_batch_content(folder):
    campaign = load_folder(folder)
    compiled = compile_campaign(campaign)
    assert compile_campaign(campaign) is compiled  # cached by version
    a, b = compiled.step("welcome", "a"), compiled.step("welcome", "b")
    links = {"unsubscribe_url": "https://x.example/u/1", "preferences_url": "https://x.example/p"}
    sam = Recipient("sam@example.com", "Sam")
    assert a.personalise(sam, **links).subject == SUBJECT_A
    assert b.personalise(sam, **links).subject == SUBJECT_B
    assert "regular bedtime" in b.personalise(sam, **links).text
    assert a.tagged is not None and b.tagged is not None
    assert a.tagged.key != b.tagged.key != compiled.step("welcome").tagged.key


def test_sendgrid_batches_never_mix_two_variants(folder):
    campaign = load_folder(folder)
    compiled = compile_campaign(campaign)
    messages = [
        compiled.message(
            "welcome",
            Recipient(f"p{n}@example.com", "Pat"),
            delivery_id=str(n),
            unsubscribe_url=f"https://x.example/u/{n}",
            unsubscribe_mailto="unsubscribe@example.com",
            preferences_url=f"https://x.example/p/{n}",
            date=None,
            variant="ab"[n % 2],
        )
        for n in range(10)
    ]
    requests = plan_requests(messages, batch_limit=1000)
    assert sorted(len(r) for r in requests) == [5, 5]
    for request in requests:
        assert len({messages[i].subject for i in request}) == 1


# ----------------------------------------------------------------- check


def test_check_runs_over_each_variant(folder):
    data = read_spec(folder)
    data["steps"][0]["variants"][1]["subject"] = "Sleep " * 15 + "tonight"
    write_spec(folder, data)
    (folder / "01-welcome-b.md").write_text(
        "Hi,\n\nRead [click here](http://example.com/sleep) tonight.\n", encoding="utf-8"
    )
    report = check_campaign(load_folder(folder))
    mine = [f for f in report.findings if "variant B" in f.message]
    assert {(f.severity, f.code) for f in mine} >= {
        ("error", "http-url"),
        ("warning", "subject-length"),
        ("warning", "link-text"),
    }, [str(f) for f in mine]
    assert all(f.file.endswith("01-welcome-b.md") for f in mine)
    assert not [f for f in report.findings if "variant A" in f.message and f.severity == "error"]


def test_check_names_a_broken_placeholder_in_a_variant_body(folder):
    (folder / "01-welcome-b.md").write_text("Hi {{ first_nam }},\n\nText.\n", encoding="utf-8")
    report = check_campaign(load_folder(folder))
    assert any(
        f.code == "template" and f.file.endswith("01-welcome-b.md") for f in report.errors
    ), [str(f) for f in report.findings]


def test_render_exports_each_variant_beside_its_step(folder, tmp_path):
    written = export_campaign(load_folder(folder), tmp_path / "out")
    names = {path.name for path in written}
    assert {"01-welcome.eml", "01-welcome-a.eml", "01-welcome-b.eml"} <= names
    b = (tmp_path / "out" / "01-welcome-b.eml").read_text(encoding="utf-8")
    assert f"Subject: {SUBJECT_B}" in b and "regular bedtime" in b
    assert f"Subject: {SUBJECT_A}" in (tmp_path / "out" / "01-welcome-a.eml").read_text()
