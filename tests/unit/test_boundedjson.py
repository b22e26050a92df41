"""JSON from outside: its depth measured before parsing, refusals in the project's errors."""

from __future__ import annotations

import json

import pytest

from campaigns import boundedjson
from campaigns.errors import InputError
from campaigns.rendering.tokens import TokenError, UnsubscribeClaim, claim_from_payload


def nested(depth: int, *, kind: str = "list") -> str:
    value: object = "x"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return json.dumps(value)


@pytest.mark.parametrize("kind", ["list", "object"])
def test_the_cap_is_exact(kind):
    at_cap = nested(boundedjson.MAX_DEPTH, kind=kind)
    assert boundedjson.loads(at_cap) == json.loads(at_cap)
    with pytest.raises(InputError, match="nested deeper than 32 levels") as refused:
        boundedjson.loads(nested(boundedjson.MAX_DEPTH + 1, kind=kind))
    assert refused.value.field == "body"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 10**6],
)
def test_deep_nesting_is_refused_before_the_parser_recurses(raw):
    with pytest.raises(InputError):  # json.loads alone raises RecursionError here
        boundedjson.loads(raw)


@pytest.mark.parametrize(
    "text",
    [
        '["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"]',
        r'["a \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ quoted", "\\", "]]]"]',
        '{"consent": "I agree [to everything]"}',
        "3",
        '"just a string"',
    ],
)
def test_brackets_inside_strings_do_not_nest(text):
    assert boundedjson.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    ("string", "deep"),
    [
        (r'"\""', True),  # an escaped quote does not close the string
        (r'"\\"', True),  # an escaped backslash does not escape the closing quote
        (r'"\\\"' + "[" * 40 + '"', False),  # the brackets are inside the string
    ],
)
def test_escapes_are_read_as_json_reads_them(string, deep):
    # Read wrongly, a string would swallow (or spill) the 40 levels that follow it.
    text = f"[{string}, " + "[" * 40 + "]" * 40 + "]" if deep else f"[{string}, 1]"
    json.loads(text)  # the example is JSON
    assert boundedjson.depth_exceeds(text.encode()) is deep


@pytest.mark.parametrize("raw", [b"", b"{not json", b"\xff\xfe", b'["unterminated', b"]["])
def test_what_is_not_json_is_an_input_error(raw):
    with pytest.raises(InputError) as refused:
        boundedjson.loads(raw, what="token")
    assert refused.value.field == "token"


def test_a_signed_payload_must_have_the_claims_shape():
    assert claim_from_payload([7, "sleep", None]) == UnsubscribeClaim(7, "sleep", None)
    assert claim_from_payload([0, "sleep", 12]) == UnsubscribeClaim(0, "sleep", 12)  # send-test
    for payload in (
        ["7", "sleep", None],
        [True, "sleep", None],
        [7.0, "sleep", None],
        [2**31, "sleep", None],
        [-1, "sleep", None],
        [7, ["sleep"], None],
        [7, "", None],
        [7, "s" * 65, None],
        [7, "sleep", "12"],
        [7, "sleep", {"id": 12}],
        [7, "sleep"],
        {"contact": 7},
        7,
    ):
        with pytest.raises(TokenError):
            claim_from_payload(payload)
