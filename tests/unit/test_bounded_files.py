"""Files a user hands dripmail are bounded and stay where they belong (issue 16, points 4, 6, 10).

Campaign files, step front matter and defaults files take no YAML aliases and no file
over 1 MB; `split` reads only a regular file of up to 2 MB (`--max-size`) and asks before
writing more than 60 emails; a campaign file keeps the outbox under the working folder,
and a step file that is a link leading out of the campaign folder is refused everywhere.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from campaigns.authoring.bounded import parse_size
from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from campaigns.studio.state import Studio
from tests.unit.test_cli import assert_one_line_error, dripmail

# Nine levels of nine aliases each: 9**9 (387 million) leaves from about 600 bytes.
BOMB = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n" for level in range(1, 10)
)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


# ---------------------------------------------------------------- point 4: campaign files


def test_a_single_alias_in_campaign_yaml_is_refused_with_its_line(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    replace_in(spec, "timezone: America/New_York", "timezone: &zone America/New_York\nx: *zone")
    result = dripmail("check", str(clinic_folder))
    assert_one_line_error(
        result, f"{spec}:{line_of(spec, 'x: *zone')}:", "YAML aliases (*name) are not accepted"
    )


def test_an_alias_bomb_is_refused_at_its_first_alias_not_expanded(clinic_folder):
    # Today's main: over 60 s and 5 GB, as the line mapper walks every expanded path.
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + BOMB, encoding="utf-8")
    result = dripmail("check", str(clinic_folder))
    assert_one_line_error(result, f"{spec}:{line_of(spec, 'a1: &a1')}:", "YAML aliases")
    with pytest.raises(InputError, match="YAML aliases"):
        load_folder(clinic_folder)


def test_aliases_in_step_front_matter_and_defaults_files_are_refused(clinic_folder, tmp_path):
    step = clinic_folder / "01-welcome.md"
    step.write_text(
        "---\nsubject: &s Welcome\npreheader: *s\n---\n# Welcome\n\nHello.\n", encoding="utf-8"
    )
    assert_one_line_error(dripmail("check", str(clinic_folder)), f"{step}:3:", "YAML aliases")

    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("organisation: &org Clinic\nfrom_name: *org\n", encoding="utf-8")
    article = tmp_path / "article.md"
    article.write_text("# Sleep\n\nRest well, every night of the week.\n", encoding="utf-8")
    result = dripmail(
        "split", str(article), "--out", str(tmp_path / "c"), "--defaults", str(defaults)
    )
    assert_one_line_error(result, f"{defaults}:2:", "YAML aliases")
    assert not (tmp_path / "c").exists()


def test_deep_nesting_is_one_line_not_a_recursion_error(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "x: " + "[" * 2000 + "]" * 2000 + "\n")
    assert_one_line_error(dripmail("check", str(clinic_folder)), str(spec), "nested more than")


def test_a_control_character_is_still_one_line(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    spec.write_text("\x1f" + spec.read_text(encoding="utf-8"), encoding="utf-8")
    assert_one_line_error(dripmail("check", str(clinic_folder)), str(spec), "not valid YAML")


def test_campaign_files_over_1_mb_are_refused_naming_the_file(clinic_folder, tmp_path):
    spec = clinic_folder / "campaign.yaml"
    with spec.open("a", encoding="utf-8") as handle:  # a valid file, only too long
        handle.write("# padding\n" * 100_001)
    assert spec.stat().st_size > 1_000_000
    assert_one_line_error(dripmail("check", str(clinic_folder)), str(spec), "larger than 1 MB")

    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("organisation: Clinic\n" + "#\n" * 500_001, encoding="utf-8")
    article = tmp_path / "article.md"
    article.write_text("# Sleep\n\nRest well, every night of the week.\n", encoding="utf-8")
    result = dripmail(
        "split", str(article), "--out", str(tmp_path / "c"), "--defaults", str(defaults)
    )
    assert_one_line_error(result, str(defaults), "larger than 1 MB")


def test_a_step_file_over_1_mb_is_refused(clinic_folder):
    step = clinic_folder / "02-how-mental-health-affects-sleep.md"
    step.write_text("# Big\n\n" + "word " * 200_001, encoding="utf-8")
    assert_one_line_error(dripmail("check", str(clinic_folder)), str(step), "larger than 1 MB")


# ---------------------------------------------------------------- point 6: articles


def test_split_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "article.txt"
    os.mkfifo(fifo)
    article = b"Sleep\n\nRest well, every night of the week, for weeks on end.\n"

    def writer() -> None:  # feeds the pipe should split open it (today's main does)
        descriptor = os.open(fifo, os.O_WRONLY)
        os.write(descriptor, article)
        os.close(descriptor)

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    try:
        result = dripmail("split", str(fifo), "--out", str(tmp_path / "c"))
    finally:
        # Open the reading end ourselves, so the writer's open returns and it ends.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        feeding.join()
        os.close(reader)
    assert_one_line_error(result, str(fifo), "not a regular file")
    assert not (tmp_path / "c").exists()


def test_split_refuses_a_device(tmp_path):
    result = dripmail("split", "/dev/zero", "--out", str(tmp_path / "c"))
    assert_one_line_error(result, "/dev/zero", "not a regular file")


def test_an_article_over_2_mb_is_refused_before_it_is_read(tmp_path):
    article = tmp_path / "article.txt"
    article.write_bytes(b"\0" * 2_000_001)  # binary: it would be refused later, if read at all
    result = dripmail("split", str(article), "--out", str(tmp_path / "c"))
    assert_one_line_error(result, str(article), "larger than 2 MB", "--max-size")
    assert not (tmp_path / "c").exists()


def test_max_size_sets_the_bound(tmp_path):
    article = tmp_path / "article.md"
    article.write_text("# Sleep\n\n" + "Rest well every night. " * 60 + "\n", encoding="utf-8")
    assert 1000 < article.stat().st_size < 2000
    out = str(tmp_path / "c")
    assert_one_line_error(
        dripmail("split", str(article), "--out", out, "--max-size", "1KB"), "larger than 1 KB"
    )
    assert dripmail("split", str(article), "--out", out, "--max-size", "2KB").exit_code == 0
    assert_one_line_error(
        dripmail("split", str(article), "--out", out, "--max-size", "lots"), "--max-size:"
    )


def test_sizes_read_as_people_write_them():
    assert [parse_size(text) for text in ("5MB", "500 kb", "2.5M", "3000000")] == [
        5_000_000,
        500_000,
        2_500_000,
        3_000_000,
    ]
    for bad in ("0", "999", "101MB", "-1MB", "5 GB", ""):
        with pytest.raises(InputError, match="--max-size"):
            parse_size(bad)


def long_article(path: Path, sections: int) -> Path:
    parts = ["# A long guide to sleep\n"]
    for number in range(1, sections + 1):
        body = f"Part {number} of the guide talks about rest, routine and calm evenings. " * 6
        parts.append(f"## Part {number} about sleep\n\n{body.strip()}\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def test_a_split_into_more_than_60_emails_asks_first_and_writes_nothing(tmp_path):
    article = long_article(tmp_path / "guide.md", 80)
    out = tmp_path / "c"
    result = dripmail("split", str(article), "--out", str(out))
    assert_one_line_error(result, str(article), "would make 80 emails", "--emails N", "--force")
    assert not out.exists()

    assert dripmail("split", str(article), "--out", str(out), "--emails", "12").exit_code == 0
    assert len(load_folder(out).steps) == 12
    assert dripmail("split", str(article), "--out", str(out), "--force").exit_code == 0
    assert len(load_folder(out).steps) == 80


def test_minutes_that_would_make_more_than_60_emails_ask_first(tmp_path):
    article = long_article(tmp_path / "guide.md", 80)
    result = dripmail("split", str(article), "--out", str(tmp_path / "c"), "--minutes", "0.1")
    assert_one_line_error(result, "more than 60", "--emails N")


# ---------------------------------------------------------------- point 10: where files go


@pytest.mark.parametrize("outbox", ["../elsewhere", "/var/spool/outbox", "mail/../../x"])
def test_a_campaign_file_cannot_send_the_outbox_outside_the_working_folder(clinic_folder, outbox):
    spec = clinic_folder / "campaign.yaml"
    replace_in(spec, "  outbox: outbox", f"  outbox: {outbox}")
    result = dripmail("check", str(clinic_folder))
    assert_one_line_error(
        result,
        f"{spec}:{line_of(spec, '  outbox:')}: sender.outbox:",
        "outside the working folder",
        "DRIPMAIL_OUTBOX",
    )


def test_an_outbox_under_the_working_folder_is_fine(clinic_folder):
    replace_in(clinic_folder / "campaign.yaml", "  outbox: outbox", "  outbox: mail/outbox")
    assert load_folder(clinic_folder).spec.sender.outbox == "mail/outbox"


@pytest.fixture
def linked_step(clinic_folder: Path, tmp_path: Path) -> Path:
    """The first step file swapped for a link to a file outside the campaign folder."""
    secret = tmp_path / "secret.md"
    secret.write_text("# Private notes\n\nTOP-SECRET\n", encoding="utf-8")
    step = clinic_folder / "01-welcome.md"
    step.unlink()
    step.symlink_to(secret)
    return step


def test_check_and_render_refuse_a_step_linked_outside_the_folder(clinic_folder, linked_step):
    spec = clinic_folder / "campaign.yaml"
    where = f"{spec}:{line_of(spec, '01-welcome.md')}: steps[0].file:"
    assert_one_line_error(dripmail("check", str(clinic_folder)), where, "outside the campaign")
    out = clinic_folder.parent / "previews"
    result = dripmail("render", str(clinic_folder), "--out", str(out))
    assert_one_line_error(result, where, "outside the campaign folder")
    assert not out.exists()


def test_the_studio_refuses_a_step_linked_outside_the_folder(clinic_folder, linked_step):
    studio = Studio(clinic_folder)
    assert studio.snapshot.campaign is None
    assert studio.snapshot.error is not None
    assert "outside the campaign folder" in studio.snapshot.error.message


def test_a_link_that_stays_inside_the_folder_is_fine(clinic_folder):
    step = clinic_folder / "01-welcome.md"
    kept = clinic_folder / "drafts" / "welcome.md"
    kept.parent.mkdir()
    step.rename(kept)
    step.symlink_to(kept)
    assert load_folder(clinic_folder).steps[0].key == "welcome"
