"""What a worker carries: the libraries it needs, not those of paths it never takes.

benchmarks/run.py memory measures the peak; this guards the causes found when it rose
(104.5 MB for 10,000 emails): the SQLAlchemy ORM for one alias, Babel's catalog reader
and pytz for English-only sending, sqlite3 on PostgreSQL, and all of CLDR's English kept
to check a language tag. Each runs in a fresh interpreter, as a worker starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys
import campaigns.delivery.workers, campaigns.storage.store
from campaigns.authoring.languages import normalise_language
from campaigns.rendering.catalogs import translations
import babel.localedata

normalise_language("es-mx"), normalise_language("zh-hant-tw")  # as loading a campaign does
translations("en").gettext("Unsubscribe")
loaded = {"modules": sorted(sys.modules), "cldr": sorted(babel.localedata._cache)}
translations("es").gettext("Unsubscribe")  # a Spanish campaign's first email
loaded["after_spanish"] = sorted(sys.modules)
print(json.dumps(loaded))
"""


def worker_loads() -> dict[str, list[str]]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", WORKER], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_worker_sending_english_loads_no_orm_no_catalog_reader_and_no_cldr_locale():
    loaded = worker_loads()
    modules = set(loaded["modules"])
    assert not {m for m in modules if m.startswith("sqlalchemy.orm")}
    assert not {m for m in modules if m.startswith(("babel.messages", "httpx"))}
    assert "sqlite3" not in modules  # opened by the first SQLite connection only
    # A tag is checked against CLDR's codes without keeping a Locale's data (4.6 MB).
    assert loaded["cldr"] == []
    # The Spanish catalog still compiles, its reader imported when first needed.
    assert "babel.messages.pofile" in loaded["after_spanish"]
