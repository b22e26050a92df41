"""Alembic migrations of the dripmail store (run in code by campaigns.store; no alembic.ini)."""
