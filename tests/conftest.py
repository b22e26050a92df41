"""Shared fixtures: a fresh store (SQLite and PostgreSQL), the clinic campaign in a folder,
a newsletter issue of three articles."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.planning.newsletter import create_newsletter
from campaigns.storage.store import Store
from examples import DEFAULTS


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's dripmail or provider settings."""
    for name in list(os.environ):
        if name.startswith(("DRIPMAIL_", "SENDGRID_", "MAILGUN_", "POSTMARK_", "NOTIFY_")):
            monkeypatch.delenv(name)


# PostgreSQL for the tests: the server CI runs (trust auth). A failure to connect fails
# the tests that need it; nothing is skipped.
POSTGRES_SERVER = os.environ.get(
    "POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: the test is about the SQLite file itself; its `store` is SQLite"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes `store` runs on SQLite and on PostgreSQL."""
    if "store" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        backends = ("sqlite",) if only_sqlite else BACKENDS
        metafunc.parametrize("backend", backends, scope="function")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This test run's own database, `dripmail_test_<random>`, dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"dripmail_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_SERVER).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A fresh, empty schema in the run's database: a URL whose search_path is that schema.

    A schema per test isolates tests as a database per test would, in milliseconds.
    """
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = postgres_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{postgres_database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def backend() -> str:
    """The store's database (parametrised by pytest_generate_tests)."""
    return "sqlite"


@pytest.fixture
def store(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Store]:
    """A fresh store, on each backend in turn: a SQLite file, or a PostgreSQL schema."""
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'dripmail.db'}"
    store = Store(url)
    yield store
    store.close()


def write_clinic_campaign(folder: Path) -> Path:
    """The bundled clinic article split with the demo's made-up clinic details."""
    from campaigns.authoring.defaults import load_defaults
    from campaigns.authoring.folder import write_campaign
    from campaigns.authoring.readers import read_article
    from campaigns.authoring.split import split_article
    from examples import ARTICLE, DEFAULTS

    article = read_article(ARTICLE)
    write_campaign(
        article, split_article(article), folder, defaults=load_defaults(DEFAULTS), force=True
    )
    return folder


@pytest.fixture
def clinic_folder(tmp_path: Path) -> Path:
    return write_clinic_campaign(tmp_path / "clinic")


@pytest.fixture
def clinic(clinic_folder: Path) -> Campaign:
    return load_folder(clinic_folder)


def write_articles(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        path = folder / f"a{i}.md"
        path.write_text(
            f"---\ntitle: Sleep note {i}\n---\n\nSummary {i}: rest well after a session, "
            f"and keep a regular bedtime.\n\nMore detail {i} that the digest leaves out.\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


@pytest.fixture
def issue(tmp_path: Path) -> Path:
    """A newsletter issue: a digest of three short articles, in a folder."""
    out = tmp_path / "issue"
    create_newsletter(
        write_articles(tmp_path / "articles"),
        out,
        title="June news",
        url="https://example.org/news",
        defaults_file=DEFAULTS,
    )
    return out
