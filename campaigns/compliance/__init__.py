"""Compliance: suppressions, provider events, privacy requests."""
