"""Where an error or a finding points: a campaign's files by the path the user knows, a line."""

from __future__ import annotations

from pathlib import Path

from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, Step


def campaign_file(campaign: Campaign) -> str:
    """campaign.yaml, under the folder the campaign was read from when it has one."""
    return str(Path(campaign.origin) / CAMPAIGN_FILE) if campaign.origin else CAMPAIGN_FILE


def step_file(campaign: Campaign, step: Step) -> str:
    """The step's file, under the folder the campaign was read from when it has one."""
    return str(Path(campaign.origin) / step.file) if campaign.origin else step.file


def line_containing(text: str, needle: str) -> int | None:
    """The number of the first line of `text` that contains `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None
