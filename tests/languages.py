"""The clinic campaign with a Spanish translation beside it (tests/fixtures/languages/clinic-es)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import write_clinic_campaign

SPANISH = Path(__file__).resolve().parent / "fixtures" / "languages" / "clinic-es"


def write_spanish_clinic(folder: Path) -> Path:
    """The bundled clinic campaign in English (its default) and Spanish: each step's
    `NN-name.es.md` beside it, and the campaign's own texts under `translations.es`."""
    write_clinic_campaign(folder)
    for path in sorted(SPANISH.glob("*.es.md")):
        shutil.copy(path, folder / path.name)
    spec = folder / "campaign.yaml"
    extra = (SPANISH / "translations.yaml").read_text(encoding="utf-8")
    spec.write_text(spec.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return folder
