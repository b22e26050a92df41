"""The unit tier: tests that need no PostgreSQL, browser, SpamAssassin, mail server or network.

`python -m pytest tests/unit` runs offline after `pip install -e '.[test]'`. A unit test that
asks for a database fixture fails here rather than quietly reaching for PostgreSQL.
"""

from __future__ import annotations

import pytest

DATABASE_FIXTURES = frozenset({"store", "postgres_url", "postgres_database"})


@pytest.fixture(autouse=True)
def _no_database(request: pytest.FixtureRequest) -> None:
    wanted = DATABASE_FIXTURES.intersection(request.fixturenames)
    if wanted:
        pytest.fail(f"a unit test may not use {sorted(wanted)}: move it to tests/")
