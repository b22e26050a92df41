"""The public URL the unsubscribe and preference links are built on: its rule, and previews'."""

from __future__ import annotations

from urllib.parse import urlsplit

from campaigns.errors import ConfigurationError
from campaigns.rendering.tokens import PLACEHOLDER_PUBLIC_URL
from campaigns.settings import PUBLIC_URL_ENV
from senders.base import is_loopback

__all__ = ["check_public_url", "sample_links"]


def check_public_url(url: str | None, *, name: str = PUBLIC_URL_ENV) -> None:
    """Unsubscribe links must be https; plain http is accepted only for a loopback address."""
    if not url:
        return
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise ConfigurationError(
        f"{name} must be an https address where `dripmail serve` is reachable "
        f"(plain http only for a loopback address such as http://127.0.0.1:8025); got {url!r}"
    )


def sample_links(public_url: str | None = None) -> tuple[str, str]:
    """(unsubscribe_url, preferences_url) for previews; real signed tokens come from elsewhere."""
    base = (public_url or PLACEHOLDER_PUBLIC_URL).rstrip("/")
    return f"{base}/u/sample-token", f"{base}/p/sample-token"
