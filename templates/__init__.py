"""The MJML, plain-text and index layouts, shipped as package data.

`digest()` fingerprints them so a compiled campaign is rebuilt when a layout changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent

__all__ = ["DIRECTORY", "digest"]


def digest() -> str:
    """Content hash of every layout file (`*.j2`), stable across machines."""
    sha = hashlib.sha256()
    for path in sorted(DIRECTORY.glob("*.j2")):
        sha.update(path.name.encode())
        sha.update(b"\0")
        sha.update(path.read_bytes())
        sha.update(b"\0")
    return sha.hexdigest()[:16]
