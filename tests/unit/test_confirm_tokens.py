"""Double opt-in links: signed with a purpose of their own, so neither kind passes for the other."""

from __future__ import annotations

import pytest

from campaigns.rendering.tokens import (
    ConfirmClaim,
    ConfirmSigner,
    Signer,
    TokenError,
    UnsubscribeClaim,
)

KEY = "installation-secret"
CLAIM = ConfirmClaim(42, 7, "ketamine-and-sleep", 1_772_452_800_123_456)


def test_a_confirm_token_names_its_request():
    signer = ConfirmSigner(KEY)
    assert signer.read(signer.token(CLAIM)) == CLAIM


def test_an_unsubscribe_token_is_not_a_confirm_token_nor_the_reverse():
    unsubscribe = Signer(KEY).token(UnsubscribeClaim(42, "ketamine-and-sleep", None))
    with pytest.raises(TokenError, match="not a valid confirmation link"):
        ConfirmSigner(KEY).read(unsubscribe)
    with pytest.raises(TokenError, match="not a valid unsubscribe link"):
        Signer(KEY).read(ConfirmSigner(KEY).token(CLAIM))


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: t + "A" * 2000])
def test_a_tampered_or_oversized_token_is_refused(mangle):
    token = ConfirmSigner(KEY).token(CLAIM)
    with pytest.raises(TokenError):
        ConfirmSigner(KEY).read(mangle(token))
    with pytest.raises(TokenError):
        ConfirmSigner("another installation").read(token)
