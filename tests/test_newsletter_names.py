"""Names never collide silently (issue 15, point 4), through the real command.

A newsletter made from the article a drip campaign was split from gets its own name;
a folder whose name another kind of campaign already published is refused, naming
both; `newsletter schedule` never says "would" outside a dry run, and when nobody is
left to send to it says why and exits 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples import DEFAULTS
from tests.unit.test_cli import dripmail

ARTICLE = Path(__file__).parent / "fixtures" / "articles" / "sleep-guide.md"
DRIP = "a-patients-guide-to-sleep-after-treatment"  # the name split gives sleep-guide.md
AT = ("--at", "2026-06-02T09:00Z", "--now", "2026-06-01T00:00Z")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'dripmail.db'}"


@pytest.fixture
def drip(tmp_path: Path, db: str) -> Path:
    """The article split into a drip campaign, with one tagged patient imported into it."""
    folder = tmp_path / "drip"
    split = dripmail("split", str(ARTICLE), "--out", str(folder), "--defaults", str(DEFAULTS))
    assert split.exit_code == 0, split.output
    csv = tmp_path / "patients.csv"
    csv.write_text(
        "email,first_name,timezone,tags\r\nana@example.com,Ana,Europe/London,patients\r\n",
        encoding="utf-8",
    )
    result = dripmail("import", str(folder), str(csv), "--consent", "clinic form", "--db", db)
    assert result.exit_code == 0, result.output
    return folder


def newsletter(tmp_path: Path) -> Path:
    out = tmp_path / "news"
    result = dripmail(
        "newsletter", "create", str(ARTICLE), "--out", str(out), "--defaults", str(DEFAULTS)
    )
    assert result.exit_code == 0, result.output
    return out


def name_of(folder: Path) -> str:
    found = re.search(r"^name: (\S+)$", (folder / "campaign.yaml").read_text(), re.MULTILINE)
    assert found is not None
    return found.group(1)


def test_a_newsletter_of_a_drip_campaigns_article_gets_its_own_name_and_is_planned(
    tmp_path, drip, db
):
    news = newsletter(tmp_path)
    name = name_of(news)
    assert name != DRIP
    assert re.fullmatch(rf"{DRIP}-newsletter-\d{{4}}-\d{{2}}", name), name
    result = dripmail("newsletter", "schedule", str(news), "--to", "patients", *AT, "--db", db)
    assert result.exit_code == 0, result.output
    assert f"planned 1 email of {name}" in result.stdout
    assert "would" not in result.output


def test_a_name_published_by_the_other_kind_is_refused_naming_both(tmp_path, drip, db):
    news = newsletter(tmp_path)
    spec = news / "campaign.yaml"
    spec.write_text(spec.read_text().replace(f"name: {name_of(news)}", f"name: {DRIP}", 1))
    result = dripmail("newsletter", "schedule", str(news), "--to", "patients", *AT, "--db", db)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {spec}: name: '{DRIP}' is already published by ")
    assert f"the drip campaign in {drip.resolve()}" in lines[0]
    assert "planned" not in result.stdout

    # The other way round: a newsletter published first, then a drip folder of its name.
    news = newsletter(tmp_path / "june")
    result = dripmail("newsletter", "schedule", str(news), "--to", "patients", *AT, "--db", db)
    assert result.exit_code == 0, result.output
    clash = drip / "campaign.yaml"
    clash.write_text(clash.read_text().replace(f"name: {DRIP}", f"name: {name_of(news)}", 1))
    result = dripmail("enroll", str(drip), "--email", "bo@example.com", "--db", db)
    assert result.exit_code == 2, result.output
    assert f"is already published by the newsletter campaign in {news.resolve()}" in result.stderr


def test_when_everyone_is_left_out_the_summary_says_why_and_exits_1(tmp_path, drip, db):
    news = newsletter(tmp_path)
    first = dripmail("newsletter", "schedule", str(news), "--to", "patients", *AT, "--db", db)
    assert first.exit_code == 0, first.output
    again = dripmail("newsletter", "schedule", str(news), "--to", "patients", *AT, "--db", db)
    assert again.exit_code == 1, again.output
    assert "would" not in again.output
    assert "planned 0 emails" in again.stdout
    assert again.stderr.strip() == (
        "error: nobody to send to: every contact tagged patients was left out: "
        "1 already have this newsletter planned or sent (once each)"
    )
    nobody = dripmail("newsletter", "schedule", str(news), "--to", "staff", *AT, "--db", db)
    assert nobody.exit_code == 1, nobody.output
    assert "no contact has the tag staff" in nobody.stderr
