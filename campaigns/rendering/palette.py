"""The layout's colours from the brand's, and the WCAG 2.1 contrast every text must reach."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.authoring.sources import campaign_file
from campaigns.authoring.spec import Campaign, Colors
from campaigns.errors import InputError

__all__ = ["WCAG_AA", "Palette", "checked_palette", "contrast_ratio", "palette"]

WCAG_AA = 4.5


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(color: str) -> float:
    """WCAG 2.1 relative luminance of `#rrggbb`."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two `#rrggbb` colours (1 to 21)."""
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _mix(color: str, other: str, share: float) -> str:
    """`color` with `share` of `other` blended in."""
    a = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(other[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Palette:
    """Every colour the layout uses; `pairs()` lists each text colour with its background."""

    text: str
    muted: str  # footer and progress text
    primary: str  # header band, links, button
    button_text: str  # on primary
    background: str  # around the card and behind the footer
    surface: str = "#ffffff"  # the card the step is written on

    def pairs(self) -> list[tuple[str, str, str]]:
        """(field, text colour, background colour) for every text the layout writes."""
        return [
            ("brand.colors.text", self.text, self.surface),
            ("brand.colors.primary", self.primary, self.surface),
            ("brand.colors.primary", self.primary, self.background),
            ("brand.colors.button_text", self.button_text, self.primary),
            ("brand.colors.text", self.muted, self.surface),
            ("brand.colors.background", self.muted, self.background),
        ]


def palette(colors: Colors) -> Palette:
    """The layout's colours from the brand's; the muted grey is the lightest that stays AA."""
    surface = "#ffffff"
    muted = colors.text
    for share in (0.35, 0.3, 0.25, 0.2, 0.15, 0.1):
        candidate = _mix(colors.text, surface, share)
        worst = min(contrast_ratio(candidate, bg) for bg in (surface, colors.background))
        if worst >= WCAG_AA:
            muted = candidate
            break
    return Palette(
        text=colors.text,
        muted=muted,
        primary=colors.primary,
        button_text=colors.button_text,
        background=colors.background,
        surface=surface,
    )


def checked_palette(campaign: Campaign) -> Palette:
    """The campaign's palette; an InputError naming the field when a text fails WCAG AA."""
    colours = palette(campaign.spec.brand.colors)
    for field, foreground, background in colours.pairs():
        ratio = contrast_ratio(foreground, background)
        if ratio < WCAG_AA:
            raise InputError(
                f"text {foreground} on {background} has a contrast of {ratio:.1f}:1; "
                f"WCAG 2.1 AA needs {WCAG_AA}:1 (pick a darker or lighter colour)",
                source=campaign_file(campaign),
                field=field,
            )
    return colours
