"""The console's bar charts as drawn (console/charts.py): escaped, accessible, and laid
out so no two texts, and no text and bar, share a place; Chromium measures the same in
tests/test_console_charts.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from campaigns.console.charts import NARROW, ROWS_MAX, WIDE, bar_chart, text_width

SVG = "{http://www.w3.org/2000/svg}"
NASTY = '<script>alert(1)</script> & "quoted" {{ 7*7 }}'

# The narrowest container each drawing is shown in (console.css): 13.3 and 11.3 px text.
SHOWN_FROM = {"wide": 711, "narrow": 296}


def drawings(markup: str) -> dict[str, ET.Element]:
    """The chart's drawings by name ("wide", "narrow"), parsed as XML."""
    root = ET.fromstring(f"<div>{markup}</div>")
    found = {}
    for svg in root:
        assert svg.tag == f"{SVG}svg"
        classes = svg.get("class", "").split()
        name = next(c.removeprefix("chart-") for c in classes if c != "chart")
        found[name] = svg
    assert sorted(found) == ["narrow", "wide"]
    return found


def texts(svg: ET.Element) -> list[ET.Element]:
    return list(svg.iter(f"{SVG}text"))


def boxes(svg: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """Each text's box as the layout counts it: generous width, 1.07 em up, 0.29 em down."""
    found = []
    for text in texts(svg):
        font, x, y = float(text.get("font-size")), float(text.get("x")), float(text.get("y"))
        width = text_width(text.text or "", font)
        left = {"start": x, "middle": x - width / 2, "end": x - width}[text.get("text-anchor")]
        found.append((text.text or "", left, y - 1.07 * font, left + width, y + 0.29 * font))
    return found


def bars(svg: ET.Element) -> list[tuple[float, float, float, float]]:
    return [
        (float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
         float(r.get("y")) + float(r.get("height")))
        for r in svg.iter(f"{SVG}rect")
    ]  # fmt: skip


def cross(a, b) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0 and min(a[3], b[3]) - max(a[1], b[1]) > 0


def assert_laid_out(svg: ET.Element) -> None:
    """Every text legible where shown, inside the drawing, clear of the others and the bars."""
    _, _, width, height = (float(v) for v in svg.get("viewBox").split())
    name = svg.get("id")
    scale = SHOWN_FROM[name.rsplit("-", 1)[1]] / width
    placed = boxes(svg)
    for text in texts(svg):
        assert float(text.get("font-size")) * scale >= 11, (name, text.text)
    for label, left, top, right, bottom in placed:
        assert left >= 0 and right <= width and top >= 0 and bottom <= height, (name, label)
    for n, a in enumerate(placed):
        for b in placed[n + 1 :]:
            assert not cross(a[1:], b[1:]), (name, a[0], b[0])
        for bar in bars(svg):
            assert not cross(a[1:], bar), (name, a[0])


def test_labels_and_title_are_escaped_text_never_markup():
    chart = bar_chart("x", f"Title {NASTY}", [(NASTY, 3), ("ok", 1)])
    assert "<script" not in chart and "{{ 7*7 }}" in chart
    for svg in drawings(chart).values():
        assert svg.find(f"{SVG}title").text == f"Title {NASTY}"
        assert NASTY in svg.find(f"{SVG}desc").text
        assert [r.find(f"{SVG}title").text for r in svg.iter(f"{SVG}rect")] == [
            f"{NASTY}: 3",
            "ok: 1",
        ]
        assert_laid_out(svg)


def test_each_drawing_is_an_image_named_by_its_own_title_and_description():
    found = drawings(bar_chart("funnel", "Funnel", [("sent", 50), ("delivered", 48)]))
    ids = [e.get("id") for svg in found.values() for e in svg.iter() if e.get("id")]
    assert len(ids) == len(set(ids)) == 6  # two drawings: svg, title, desc each
    assert "funnel" not in ids  # the page's table beside the chart is #funnel
    for svg in found.values():
        assert svg.get("role") == "img"
        title_id, desc_id = svg.get("aria-labelledby").split()
        assert svg.find(f"{SVG}title").get("id") == title_id
        assert svg.find(f"{SVG}desc").get("id") == desc_id
        assert svg.find(f"{SVG}desc").text == "sent: 50 emails; delivered: 48 emails"


def test_no_data_says_so_and_draws_no_bar():
    for svg in drawings(bar_chart("none", "Nothing", [])).values():
        assert svg.find(f"{SVG}desc").text == "no data"
        assert [t.text for t in texts(svg)] == ["No data"]
        assert bars(svg) == []
        assert_laid_out(svg)


def test_zero_values_draw_empty_bars_and_say_zero():
    for count in (3, 40):  # rows and columns
        for svg in drawings(bar_chart("z", "Zeros", [(f"d{n}", 0) for n in range(count)])).values():
            assert all(b[3] - b[1] == 0 or b[2] - b[0] == 0 for b in bars(svg))
            assert_laid_out(svg)


def test_one_bar_is_a_row_with_its_label_and_value():
    for svg in drawings(bar_chart("one", "One", [("sent", 1234)])).values():
        assert [t.text for t in texts(svg)] == ["sent", "1,234"]
        assert len(bars(svg)) == 1
        assert_laid_out(svg)


def test_a_long_label_is_cut_short_on_screen_and_kept_whole_in_the_bar_title():
    long = "Can Ketamine Make My Sleep Issues Worse? What to ask your provider before a session"
    found = drawings(bar_chart("steps", "Steps", [(long, 10), ("WWWWWWWWWWWWWWWWWWWWWWWWWWWW", 2)]))
    narrow = [t.text for t in texts(found["narrow"])]
    assert narrow[0].endswith("…") and long.startswith(narrow[0][:-1])
    assert narrow[2].endswith("…")
    assert texts(found["wide"])[0].text == long  # fits the wide drawing
    for svg in found.values():
        assert svg.find(f"{SVG}rect/{SVG}title").text == f"{long}: 10"
        assert_laid_out(svg)


@pytest.mark.parametrize("count", [ROWS_MAX, ROWS_MAX + 1, 31, 200, 366])
def test_many_bars_keep_every_bar_and_as_many_labels_as_fit(count: int):
    start = date(2026, 1, 1)
    days = [(str(start + timedelta(days=n)), (n * 37) % 23 + 1000 * (n % 50)) for n in range(count)]
    for name, svg in drawings(bar_chart("sends", "Sends", days)).items():
        assert len(bars(svg)) == count
        assert_laid_out(svg)
        labels = [t.text for t in texts(svg) if t.text in dict(days)]
        assert labels[0] == days[0][0]  # the first day is always named
        assert len(labels) >= 2 and labels == sorted(labels)
        if count > ROWS_MAX:  # columns: the axis' numbers too, as many labels as room
            assert "0" in {t.text for t in texts(svg)}
            drawing = {"wide": WIDE, "narrow": NARROW}[name]
            assert len(labels) >= drawing.width // (text_width("2026-01-01", drawing.font) * 2)


def column_centres(svg: ET.Element) -> dict[str, float]:
    """Each column's label (from its bar's title) -> the x of the column's centre."""
    centres = {}
    for rect in svg.iter(f"{SVG}rect"):
        label = rect.find(f"{SVG}title").text.rsplit(": ", 1)[0]
        centres[label] = float(rect.get("x")) + float(rect.get("width")) / 2
    return centres


@pytest.mark.parametrize("count", [31, 120, 366])
def test_each_day_label_sits_under_its_own_column_marked_by_a_tick(count: int):
    """A reader dates a peak by the label under it: each shown label has a tick from the
    axis at its column's centre, and is centred on that tick or starts at it (never
    shifted off it to fit)."""
    start = date(2026, 1, 1)
    days = [(str(start + timedelta(days=n)), n % 7 + 1) for n in range(count)]
    for name, svg in drawings(bar_chart("sends", "Sends", days)).items():
        centres = column_centres(svg)
        axis_y = max(
            float(line.get("y1"))
            for line in svg.iter(f"{SVG}line")
            if line.get("y1") == line.get("y2")
        )  # the 0 line, the columns' foot
        parent = {child: node for node in svg.iter() for child in node}
        placed = {box[0]: box for box in boxes(svg)}
        labels = [text for text in texts(svg) if text.text in centres]
        assert len(labels) >= 2, name
        for text in labels:
            where = f"{name}: {text.text}"
            ticks = list(parent[text].iter(f"{SVG}line")) if parent[text] is not svg else []
            assert len(ticks) == 1, f"{where} has no tick of its own"
            tick = ticks[0]
            x = float(tick.get("x1"))
            assert float(tick.get("x2")) == x, where  # upright
            assert x == pytest.approx(centres[text.text], abs=0.02), f"{where}: off its column"
            _, left, top, right, _ = placed[text.text]
            assert float(tick.get("y1")) == pytest.approx(axis_y, abs=0.1), where
            assert axis_y < float(tick.get("y2")) <= top, f"{where}: tick not axis to label"
            centred = (left + right) / 2 == pytest.approx(x, abs=0.02)
            assert centred or left == pytest.approx(x, abs=0.02), f"{where}: not at its tick"
        assert_laid_out(svg)
