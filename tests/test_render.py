"""SpamAssassin's score for every email of the render fixture (a local `spamassassin`).

The pure render tests are in tests/unit/test_render.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.authoring.spec import load_folder
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import SAMPLE, CompiledCampaign
from senders.mime import to_bytes
from tests.helpers import spamassassin
from tests.unit.test_render import FIXTURE, MAILTO, PREFERENCES, UNSUBSCRIBE


@pytest.fixture(scope="module")
def compiled() -> CompiledCampaign:
    return compile_campaign(load_folder(FIXTURE))


def test_spamassassin_scores_every_email_below_one(
    tmp_path: Path, compiled: CompiledCampaign
) -> None:
    files = []
    for key in compiled.steps:
        message = compiled.message(
            key,
            SAMPLE,
            delivery_id=f"spam-check-{key}",
            unsubscribe_url=UNSUBSCRIBE,
            unsubscribe_mailto=MAILTO,
            preferences_url=PREFERENCES,
            date=datetime.now(UTC),  # SpamAssassin scores dates far from its own clock
        )
        path = tmp_path / f"{key}.eml"
        path.write_bytes(to_bytes(message))
        files.append(path)
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = list(pool.map(spamassassin, files))
    for path, (score, report) in zip(files, results, strict=True):
        details = report[report.find("Content analysis details") :]
        assert score < 1.0, f"{path.name}: {score}\n{details}"
