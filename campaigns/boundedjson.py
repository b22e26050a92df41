"""JSON from outside, parsed only once its nesting is known to be shallow.

Python's `json` parser recurses once per `[` or `{`: a body of 100,000 brackets
(100 KB) raises RecursionError, which is not a ValueError and so escapes every
`except ValueError` around a parse. Every JSON the public app accepts (sign-up bodies,
SendGrid's events, the payload inside a signed token) goes through `loads`, which
measures the depth first with a cheap scan and refuses anything deeper than
`MAX_DEPTH` before the parser sees it.
"""

from __future__ import annotations

import json
from typing import Any

from campaigns.errors import InputError

# The deepest JSON we take: a sign-up body is 2 levels, a SendGrid batch 3 or 4
# (an array of events, each with a `category` array or custom args). Far below the
# parser's recursion limit, far above anything real.
MAX_DEPTH = 32

# Kept by the scan: string delimiters and brackets; braces fold into brackets.
_NOT_SCANNED = bytes(b for b in range(256) if b not in b'"[]{}')
_FOLD = bytes.maketrans(b"{}", b"[]")


def depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether `raw` nests arrays and objects more than `limit` levels deep.

    Every step is one pass in C over the bytes (no per-character Python): escaped
    backslashes, then escaped quotes, are dropped, so each quote left opens or closes a
    string; only quotes and brackets are kept; what lies between quotes (string content,
    where a bracket does not nest) is dropped. Then each pass deletes every innermost
    `[]` pair, one level per pass: after `limit` passes a well-formed document no deeper
    than `limit` has nothing left. Brackets that never pair (malformed JSON) count as too
    deep: both are refused. A signed 1 MB webhook body takes about as long to scan as to
    parse; a deep one is refused at the first run of `limit + 1` openings.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = unescaped.translate(_FOLD, _NOT_SCANNED)
    brackets = b"".join(kept.split(b'"')[::2])  # even pieces lie outside strings
    too_deep = b"[" * (limit + 1)
    for _ in range(limit):
        if not brackets:
            return False
        if too_deep in brackets:  # a plain run of openings: no need to peel it
            return True
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return True  # unpaired: not JSON
        brackets = shorter
    return bool(brackets)


def loads(raw: bytes | str, *, what: str = "body", limit: int = MAX_DEPTH) -> Any:
    """The parsed value, or InputError (field `what`) for text that is not JSON, not
    UTF-8, or nested deeper than `limit`."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if depth_exceeds(data, limit):
        raise InputError(f"not JSON, or nested deeper than {limit} levels", field=what)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InputError("not JSON", field=what) from None
