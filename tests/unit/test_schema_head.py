"""The store reads the newest revision from the migrations' file names (so opening a
store never loads alembic); these keep that reading true to alembic's own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from campaigns.storage.store import MIGRATIONS, Store, head_revision


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_each_migration_is_its_files_number_and_follows_the_one_before() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    revisions = sorted(scripts.walk_revisions(), key=lambda script: script.revision)
    for previous, script in zip([None, *revisions], revisions, strict=False):
        assert Path(script.path).name.startswith(f"{script.revision}_")
        assert script.down_revision == (previous.revision if previous else None)


def test_opening_a_current_store_does_not_load_alembic(tmp_path: Path) -> None:
    database = tmp_path / "dripmail.db"
    Store(f"sqlite:///{database}").close()  # made and migrated here
    assert sqlite3.connect(database).execute(
        "SELECT version_num FROM alembic_version"
    ).fetchall() == [(head_revision(),)]
    # A fresh interpreter, as a worker starting on an existing database.
    probe = (
        "import sys; from campaigns.storage.store import Store; "
        f"Store({f'sqlite:///{database}'!r}).close(); "
        "heavy = ('alembic', 'mako', 'pygments'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
