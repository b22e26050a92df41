"""Rendering: a campaign step compiled once, personalised per contact, its links signed."""
