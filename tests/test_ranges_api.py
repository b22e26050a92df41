"""The sign-up API's time fields have a range: out of it is 422 naming the field, never 500."""

from __future__ import annotations

import pytest

from tests.test_signup_api import BODY, client, count, post  # noqa: F401 (the fixture)


@pytest.mark.parametrize(
    "signed_up_at",
    [
        "9999-12-31T23:59:59",  # OverflowError (a 500) today, read in Asia/Kolkata
        "0001-01-01T00:00",
        "1900-01-01T00:00Z",
        "2101-01-02T00:00+00:00",
    ],
)
def test_a_signup_time_outside_1970_to_2100_is_422(client, store, signed_up_at):  # noqa: F811
    answer = post(client, {**BODY, "signed_up_at": signed_up_at})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "signed_up_at"
    assert "1970-01-01 to 2100-12-31" in answer.json()["error"]
    assert count(store) == 1  # the staff sign-up that published the campaign, alone
