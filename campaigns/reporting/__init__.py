"""Reporting: delivery status, statistics, exported previews."""
