"""SpamAssassin's score for every email of the bundled clinic campaign (a local `spamassassin`).

The pure acceptance tests on the clinic article are in tests/unit/test_clinic.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.helpers import spamassassin
from tests.unit.test_clinic import messages


def test_spamassassin_scores_every_clinic_email_below_one(clinic, tmp_path):
    from senders.mime import to_bytes

    files = []
    for message in messages(clinic, date=datetime.now(UTC)):  # SA scores odd dates
        path = tmp_path / f"{message.delivery_id}.eml"
        path.write_bytes(to_bytes(message))
        files.append(path)
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = list(pool.map(spamassassin, files))
    for path, (score, report) in zip(files, results, strict=True):
        assert score < 1.0, f"{path.name}: {score}\n{report[report.find('Content analysis') :]}"
