"""Small server-rendered SVG bar charts: no chart library, no script, accessible.

Each chart is an <svg role="img"> labelled by its own <title> and <desc> (the desc
states every value, so a screen reader hears the numbers), scales to its container's
width (viewBox), and sits beside a table holding the same numbers. Every text is
escaped: a label is data, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

WIDTH = 640
HEIGHT = 240
MARGIN_LEFT = 48
MARGIN_BOTTOM = 56
MARGIN_TOP = 12
BAR = "#0b5394"  # the console's accent: 7.6:1 on white
AXIS = "#4a5561"


def _nice_top(value: int) -> int:
    """The axis' top: the smallest 1, 2 or 5 x 10^n at or above `value` (at least 1)."""
    top = 1
    while top < value:
        for factor in (2, 5 / 2, 2):
            top = int(top * factor)
            if top >= value:
                break
    return top


def bar_chart(
    chart_id: str, title: str, bars: Sequence[tuple[str, int]], *, unit: str = "emails"
) -> Markup:
    """A vertical bar chart of `bars` (label, value) with a 0..top axis."""
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    described = "; ".join(f"{label}: {value:,} {unit}" for label, value in bars) or "no data"
    top = _nice_top(max((value for _, value in bars), default=0))
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(len(bars), 1)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(described)}</desc>',
    ]
    base = MARGIN_TOP + plot_h
    for tick in (0, top // 2, top) if top > 1 else (0, top):
        y = base - plot_h * tick / top
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#cbd2d9" stroke-width="1"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="{AXIS}">{tick:,}</text>'
        )
    label_every = max(1, round(len(bars) / 12))  # at most about 12 labels under the bars
    for index, (label, value) in enumerate(bars):
        height = plot_h * value / top
        x = MARGIN_LEFT + index * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{base - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" fill="{BAR}"><title>{escape(label)}: {value:,}</title></rect>'
        )
        if index % label_every == 0:
            cx = x + slot * 0.35
            parts.append(
                f'<text x="{cx:.1f}" y="{base + 16}" font-size="12" fill="{AXIS}" '
                f'text-anchor="end" transform="rotate(-35 {cx:.1f} {base + 16})">'
                f"{escape(label)}</text>"
            )
    parts.append(
        f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{base}" '
        f'stroke="{AXIS}" stroke-width="1"/></svg>'
    )
    return Markup("".join(parts))
