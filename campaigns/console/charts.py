"""Small server-rendered SVG bar charts: no chart library, no script, accessible.

A chart scales to its container's width (viewBox), and its text scales with it: a
640-wide drawing shrunk onto a 340 px phone shows 12-unit text at 6 px. So each chart is
drawn twice, for a wide screen and for a phone, and the console's stylesheet shows one
(`.chart-wide`, `.chart-narrow`; `display: none` hides the other from assistive
technology too). Each drawing's text stays at 11 CSS px or more at the widths its
stylesheet rule shows it (tests/test_console_charts.py measures them in Chromium).

Up to ROWS_MAX bars are drawn as rows (the label above its bar, the value after it),
which holds long labels; more as columns under a 0..top axis with as many labels under
them as fit side by side. Each such label names its own column: a tick runs from the axis
at the column's centre, and the label is centred on it (or starts at it, near the axis),
never slid sideways to fit, so a reader dates a peak by the label under it. No font is
measured here: text widths are estimated on the generous side (text_width), so no two
labels, and no label and bar, overlap.

Each drawing is an <svg role="img"> labelled by its own <title> and <desc> (the desc
states every value, so a screen reader hears the numbers), and sits beside a table
holding the same numbers. Every text is escaped: a label is data, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["NARROW", "ROWS_MAX", "WIDE", "Drawing", "bar_chart", "draw", "text_width"]

ROWS_MAX = 12  # up to this many bars, one row each; more are columns
BAR = "#0b5394"  # the console's accent: 7.6:1 on white
AXIS = "#4a5561"  # 7.4:1 on white
GRID = "#cbd2d9"
COLUMNS_HEIGHT = 240
GAP = 8  # between two labels side by side
TICK = 5  # a column label's tick, from the axis down towards the label


@dataclass(frozen=True)
class Drawing:
    """One drawing of a chart: its viewBox width, its font size in viewBox units."""

    name: str  # "wide" or "narrow": the svg's class, and its ids' suffix
    width: int
    font: int


# The stylesheet shows WIDE from 48rem (a container of at least 711 px: 13.3 px text) and
# NARROW below it, at most 26rem (416 px) wide: 13 x 296/340 = 11.3 px on a 320 px phone,
# 13.4 px at 375 px, 15.9 px at most.
WIDE = Drawing("wide", 640, 12)
NARROW = Drawing("narrow", 340, 13)


def _em(char: str) -> float:
    """A generous width of an ASCII character, in em."""
    if char in " .,:;'!|iIjlft()[]":
        return 0.4
    if char in "mwMW@%&":
        return 1.0
    if char.isdigit() or char.islower():
        return 0.66
    return 0.8  # capitals, signs


_EMS = {chr(code): _em(chr(code)) for code in range(128)}


def text_width(text: str, font: float) -> float:
    """A generous estimate of `text`'s width at `font` (DejaVu Sans, wide as fonts go).

    Accented letters, other scripts and emoji count 1.3 em: they may be wider than 1 em."""
    if text.isascii():  # the usual case, and the quick one
        return sum(map(_EMS.__getitem__, text)) * font
    return sum(_EMS.get(char, 1.3) for char in text) * font


def _fit(text: str, width: float, font: float) -> tuple[str, float]:
    """`text`, cut short with an ellipsis if it is wider than `width`, and its width."""
    measured = text_width(text, font)
    if measured <= width:
        return text, measured
    text = text[: max(0, int(width / (0.4 * font)))]  # no more than this can fit
    while text and text_width(text + "…", font) > width:
        text = text[:-1]
    return text + "…", text_width(text + "…", font)


def _nice_top(value: int) -> int:
    """The axis' top: the smallest 1, 2 or 5 x 10^n at or above `value` (at least 1)."""
    top = 1
    while top < value:
        for factor in (2, 5 / 2, 2):
            top = int(top * factor)
            if top >= value:
                break
    return top


def _text(x: float, y: float, font: int, content: str, *, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.2f}" y="{y:.1f}" font-size="{font}" fill="{AXIS}" '
        f'text-anchor="{anchor}">{escape(content)}</text>'
    )


def _bar(x: float, y: float, width: float, height: float, label: str, value: int) -> str:
    return (
        f'<rect x="{x:.2f}" y="{y:.1f}" width="{width:.2f}" height="{height:.1f}" '
        f'fill="{BAR}"><title>{escape(label)}: {value:,}</title></rect>'
    )


def _rows(bars: Sequence[tuple[str, int]], drawing: Drawing) -> tuple[list[str], float]:
    """One row per bar: the label on its own line, the bar under it, its value after it.

    Vertical room is counted for fonts whose text box runs from 1.07 em above the
    baseline to 0.29 em below it (Noto Sans; DejaVu Sans is smaller), so the label,
    the bar and the value never share a line's height."""
    font, width = drawing.font, drawing.width
    row, pad = 3.2 * font, 0.2 * font
    top = max((value for _, value in bars), default=0) or 1
    widest_value = max(text_width(f"{value:,}", font) for _, value in bars)
    room = width - widest_value - 10  # the longest bar leaves its value room to the right
    parts = []
    for index, (label, value) in enumerate(bars):
        y = pad + index * row
        length = room * value / top
        parts.append(_text(0, y + font, font, _fit(label, width - 2, font)[0]))
        parts.append(_bar(0, y + 1.6 * font, length, font, label, value))
        parts.append(_text(length + 6, y + 2.45 * font, font, f"{value:,}"))
    return parts, 2 * pad + len(bars) * row


def _columns(bars: Sequence[tuple[str, int]], drawing: Drawing) -> tuple[list[str], float]:
    """A column per bar over a 0..top axis; under them as many labels as fit, at ticks."""
    font, width, height = drawing.font, drawing.width, COLUMNS_HEIGHT
    top = _nice_top(max(value for _, value in bars))
    ticks = (0, top // 2, top) if top > 1 else (0, top)
    left = max(text_width(f"{tick:,}", font) for tick in ticks) + 10
    base = height - (1.4 * font + TICK + 2)  # under the bars: a tick, then a label
    plot_h, plot_w = base - font, width - left - 4
    slot = plot_w / len(bars)
    inset = slot * 0.15 if slot >= 6 else 0.0  # thin columns touch: no hairline gaps
    parts = []
    for tick in ticks:
        y = base - plot_h * tick / top
        parts.append(
            f'<line x1="{left:.1f}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(_text(left - 6, y + 0.35 * font, font, f"{tick:,}", anchor="end"))
    for index, (label, value) in enumerate(bars):
        bar_h = plot_h * value / top
        x = left + index * slot + inset
        parts.append(_bar(x, base - bar_h, slot - 2 * inset, bar_h, label, value))
    parts.extend(_column_labels(bars, drawing, left, base, slot))
    parts.append(
        f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{font}" y2="{base:.1f}" '
        f'stroke="{AXIS}" stroke-width="1"/>'
    )
    return parts, height


def _column_labels(
    bars: Sequence[tuple[str, int]], drawing: Drawing, left: float, base: float, slot: float
) -> list[str]:
    """Labels under the columns, from the first, each clear of the last by GAP.

    A label is centred on its column's tick, or starts at it where centring would cross
    the axis (never under the axis' numbers); one that would cross the drawing's right
    edge is left out rather than slid left, off its column."""
    font, right_edge = drawing.font, drawing.width - 2
    room = right_edge - (left + slot / 2)  # the first label starts at its tick: it fits
    parts: list[str] = []
    last_right = -math.inf
    for index, (label, _) in enumerate(bars):
        tick = left + (index + 0.5) * slot
        if tick < last_right + GAP:
            continue  # neither centred nor started here would clear the last label
        shown, label_w = _fit(label, room, font)
        start, anchor = tick - label_w / 2, "middle"
        if start < left:
            start, anchor = tick, "start"
        if start < last_right + GAP or start + label_w > right_edge:
            continue
        parts.append(
            f'<g class="tick"><line x1="{tick:.2f}" x2="{tick:.2f}" y1="{base:.1f}" '
            f'y2="{base + TICK:.1f}" stroke="{AXIS}" stroke-width="1"/>'
            + _text(tick, base + TICK + 1 + 1.07 * font, font, shown, anchor=anchor)
            + "</g>"
        )
        last_right = start + label_w
    return parts


def draw(
    chart_id: str, title: str, bars: Sequence[tuple[str, int]], drawing: Drawing, unit: str
) -> str:
    """One drawing of the chart: an <svg role="img"> with its own title and desc."""
    svg_id = f"{chart_id}-chart-{drawing.name}"
    title_id, desc_id = f"{svg_id}-title", f"{svg_id}-desc"
    described = "; ".join(f"{label}: {value:,} {unit}" for label, value in bars) or "no data"
    if not bars:
        body, height = [_text(drawing.width / 2, 40, drawing.font, "No data", anchor="middle")], 60
    elif len(bars) <= ROWS_MAX:
        body, height = _rows(bars, drawing)
    else:
        body, height = _columns(bars, drawing)
    return "".join(
        [
            f'<svg id="{escape(svg_id)}" class="chart chart-{drawing.name}" role="img" '
            f'viewBox="0 0 {drawing.width} {math.ceil(height)}" '
            f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
            f'xmlns="http://www.w3.org/2000/svg">',
            f'<title id="{escape(title_id)}">{escape(title)}</title>',
            f'<desc id="{escape(desc_id)}">{escape(described)}</desc>',
            *body,
            "</svg>",
        ]
    )


def bar_chart(
    chart_id: str, title: str, bars: Sequence[tuple[str, int]], *, unit: str = "emails"
) -> Markup:
    """A bar chart of `bars` (label, value), drawn for a wide screen and for a phone."""
    return Markup(
        draw(chart_id, title, bars, WIDE, unit) + draw(chart_id, title, bars, NARROW, unit)
    )
