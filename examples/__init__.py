"""The bundled example: the clinic's article, kept exactly as it was received."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTICLE = HERE / "ketamine-and-sleep.txt"
DEFAULTS = HERE / "clinic-defaults.yaml"
