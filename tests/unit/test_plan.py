"""Live edits without a database: the diff between two versions of a campaign folder."""

from __future__ import annotations

from campaigns.authoring.spec import load_folder
from campaigns.planning.edits import diff_campaigns


def insert_step(folder, after_file: str, new_file: str, delay: str) -> None:
    (folder / new_file).write_text("---\nsubject: An extra word on rest\n---\nRest well.\n")
    path = folder / "campaign.yaml"
    text = path.read_text()
    marker = f"- file: {after_file}\n"
    at = text.index(marker)
    at = text.index("\n", text.index("delay:", at)) + 1
    path.write_text(text[:at] + f"- file: {new_file}\n  delay: {delay}\n" + text[at:])


def remove_step(folder, file: str) -> None:
    path = folder / "campaign.yaml"
    lines = path.read_text().splitlines(keepends=True)
    i = lines.index(f"- file: {file}\n")
    del lines[i : i + 2]
    path.write_text("".join(lines))


def test_diff_is_pure_and_names_each_kind(clinic_folder):
    old = load_folder(clinic_folder)
    insert_step(clinic_folder, "03-what-about-physical-health.md", "03b-extra.md", "5d")
    remove_step(clinic_folder, "05-can-ketamine-make-my-sleep-issues-worse.md")
    first = clinic_folder / "01-welcome.md"
    first.write_text(first.read_text() + "\nOne more line.\n")
    diff = diff_campaigns(old, load_folder(clinic_folder))
    assert diff.added == ("extra",)
    assert diff.removed == ("can-ketamine-make-my-sleep-issues-worse",)
    assert diff.copy_changed == ("welcome",)
    assert diff.delay_changed == () and not diff.timing_changed
