"""No redirect is built from the Host header: a path with a trailing slash is 404 in
`dripmail serve` and in the studio, with no Location anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.studio.app import create_app as create_studio_app
from campaigns.studio.state import Studio
from campaigns.web.app import create_app
from tests.helpers import utc

EVIL = {"Host": "evil.example"}


def test_serve_answers_a_trailing_slash_with_404_not_a_redirect_to_the_host(store, clinic):
    enroll(
        store,
        clinic,
        Signup("pat@example.com", "Pat", None, None, "form"),
        now=utc("2026-03-02T12:00"),
    )
    token = Signer(store.secret_key()).token(UnsubscribeClaim(1, clinic.name, None))
    app = create_app(store, environ={"DRIPMAIL_API_TOKEN": "t"})
    with TestClient(app, follow_redirects=False) as client:
        for method, path in [
            ("GET", "/healthz/"),
            ("GET", f"/u/{token}/"),
            ("GET", f"/p/{token}/"),
            ("POST", f"/u/{token}/"),
            ("POST", "/webhooks/sendgrid/"),
            ("POST", "/api/v1/enrollments/"),
        ]:
            answer = client.request(method, path, headers=EVIL)
            assert answer.status_code == 404, (method, path, answer.status_code)
            assert "location" not in answer.headers
            assert token not in answer.text
        # The exact paths still answer.
        assert client.get("/healthz", headers=EVIL).text == "ok"
        assert client.get(f"/u/{token}", headers=EVIL).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_the_studio_answers_a_trailing_slash_with_404(clinic_folder: Path, tmp_path, host):
    studio = Studio(clinic_folder, db=f"sqlite:///{tmp_path / 'studio.db'}")
    key = studio.snapshot.campaign.steps[0].key
    # Listening on every address the studio takes any Host; on loopback only its own.
    headers = EVIL if host == "0.0.0.0" else {"Host": "127.0.0.1:8025"}
    with TestClient(create_studio_app(studio, host=host), follow_redirects=False) as client:
        assert client.get(f"/email/{key}.html", headers=headers).status_code == 200
        for path in (f"/email/{key}.html/", f"/email/{key}.txt/", "/api/version/"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 404, (path, answer.status_code)
            assert "location" not in answer.headers
