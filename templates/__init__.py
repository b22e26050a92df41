"""The MJML, plain-text and index layouts, shipped as package data.

`digest()` fingerprints them (and the gettext catalogs in locale/ that translate their
text) so a compiled campaign is rebuilt when a layout or a translation changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent

__all__ = ["DIRECTORY", "digest"]


def digest() -> str:
    """Content hash of every layout file (`*.j2`) and catalog, stable across machines."""
    sha = hashlib.sha256()
    paths = [*DIRECTORY.glob("*.j2"), *DIRECTORY.glob("locale/*/LC_MESSAGES/*.po")]
    for path in sorted(paths):
        sha.update(path.relative_to(DIRECTORY).as_posix().encode())
        sha.update(b"\0")
        sha.update(path.read_bytes())
        sha.update(b"\0")
    return sha.hexdigest()[:16]
