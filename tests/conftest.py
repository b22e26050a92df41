"""Shared fixtures: a fresh SQLite store, the clinic campaign split into a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from campaigns.spec import Campaign, load_folder
from campaigns.store import Store


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's dripmail or provider settings."""
    for name in list(os.environ):
        if name.startswith(("DRIPMAIL_", "SENDGRID_")):
            monkeypatch.delenv(name)


@pytest.fixture
def store(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'dripmail.db'}")
    yield store
    store.close()


def write_clinic_campaign(folder: Path) -> Path:
    """The bundled clinic article split with the demo's made-up clinic details."""
    from campaigns.article import read_article
    from campaigns.split import load_defaults, split_article, write_campaign
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
