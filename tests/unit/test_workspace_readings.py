"""The console parses a workspace folder again whenever a file of it changed, else reuses it."""

from __future__ import annotations

import os
from pathlib import Path

from campaigns.console.workspace import read
from tests.conftest import write_clinic_campaign


def test_a_folder_is_reused_until_a_file_changes_even_with_the_same_size_and_mtime(
    tmp_path: Path,
) -> None:
    folder = write_clinic_campaign(tmp_path / "clinic")
    first = read(folder)
    assert read(folder) is first  # nothing changed: not parsed again
    step = next(iter(sorted(folder.glob("0*.md"))))
    before = step.stat()
    text = step.read_text()
    # Same length, and the modification time put back: the change time still moves.
    step.write_text(text.replace("sleep", "SLEEP", 1))
    os.utime(step, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = read(folder)
    assert again is not first and again.campaign is not None
    assert again.campaign.version != first.campaign.version
    (folder / "campaign.yaml").write_text("name: [\n")  # now broken: says why
    assert read(folder).error is not None and read(folder).campaign is None
