"""The fidelity SVG charts (mbtcode/web/fidelity_charts.py), tested without a request.

Every chart must be well-formed XML (parsed here), an image with a name, free of inline
styles and scripts, with its text escaped; the geometry is checked against hand-computed
coordinates from the layout constants.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mbtcode.web import fidelity_charts as fc
from mbtcode.web.fidelity_charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, X_PAD

NS = {"svg": "http://www.w3.org/2000/svg"}
HOSTILE = "<script>alert(1)</script>"


def parse(markup) -> ET.Element:
    """The chart as XML (fails the test if it is not well-formed)."""
    root = ET.fromstring(str(markup))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def elements(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [e for e in root.iter() if css_class in (e.get("class") or "").split()]


def series(values, labels=None) -> fc.Series:
    labels = labels or [f"session {i}" for i in range(1, len(values) + 1)]
    return fc.Series("Adherence", [fc.Point(i, v, lab) for i, (v, lab) in enumerate(zip(values, labels), 1)])


def chart(values=(5, 4.5, 3.5, 3), **kwargs):
    options = {"chart_id": "c", "title": "Adherence of TH-01 per session", "description": "d",
               "scale_min": 1, "scale_max": 7, "cutoff": 4}
    options.update(kwargs)
    return fc.score_chart([series(values)], **options)


# --------------------------------------------------------------------------- score chart


def test_score_chart_is_a_named_image_and_well_formed():
    root = parse(chart())
    assert root.get("role") == "img"
    title = root.find("svg:title", NS)
    assert title is not None and title.text == "Adherence of TH-01 per session"
    assert root.get("aria-labelledby") == title.get("id") == "c-title"
    assert root.find("svg:desc", NS).get("id") in root.get("aria-describedby").split()


@pytest.mark.parametrize(("lo", "hi", "cutoff", "expected_y"), [
    # plot from y = TOP (26) to HEIGHT - BOTTOM (214): 188 units high
    (1, 7, 4, 120.0),  # 26 + (7 - 4) / 6 · 188 = 26 + 94
    (1, 7, 3, 151.33),  # 26 + 4/6 · 188 = 26 + 125.33
    (1, 5, 3, 120.0),  # 26 + 2/4 · 188
    (1, 5, 4, 73.0),  # 26 + 1/4 · 188 = 26 + 47
])
def test_cutoff_line_sits_at_the_cutoff_on_the_scale(lo, hi, cutoff, expected_y):
    assert (TOP, HEIGHT - BOTTOM) == (26, 214)  # the hand computation's premise
    root = parse(chart(values=(lo, hi), scale_min=lo, scale_max=hi, cutoff=cutoff))
    (line,) = elements(root, "cutoff-line")
    assert float(line.get("y1")) == float(line.get("y2")) == pytest.approx(expected_y, abs=0.01)
    assert float(line.get("x1")) == LEFT and float(line.get("x2")) == WIDTH - RIGHT
    label = elements(root, "cutoff-label")[0]
    assert label.text == f"cut-off {cutoff}"


def test_no_cutoff_line_without_a_cutoff():
    root = parse(chart(cutoff=None))
    assert not elements(root, "cutoff-line")
    assert not elements(root, "below")


def test_points_below_the_cutoff_are_marked_with_another_shape():
    root = parse(chart(values=(5, 4, 3.99, 2)))
    points = elements(root, "point")
    below = elements(root, "below")
    assert len(points) == 4 and len(below) == 2  # 4 is at the cut-off: adequate
    for p in below:
        assert p.find("svg:path", NS) is not None and p.find("svg:circle", NS) is None
        assert "below the cut-off 4" in p.find("svg:title", NS).text
    ok = [p for p in points if p not in below]
    assert all(p.find("svg:circle", NS) is not None for p in ok)


def test_points_land_at_their_value_and_order():
    root = parse(chart(values=(7, 1, 4)))
    circles = [p.find("svg:circle", NS) for p in elements(root, "point") if p.find("svg:circle", NS) is not None]
    # x: from LEFT + X_PAD (62) to WIDTH - RIGHT - X_PAD (684), three points evenly
    left, right = LEFT + X_PAD, WIDTH - RIGHT - X_PAD
    assert [float(c.get("cx")) for c in circles] == [left, right]  # the 1 is below: a triangle
    assert float(circles[0].get("cy")) == TOP  # 7, the top of the scale
    assert float(circles[1].get("cy")) == 120.0  # 4, the middle of 1–7
    (tri,) = elements(root, "below")
    assert f"M{(left + right) / 2 - 5.5:g}" in tri.find("svg:path", NS).get("d")


def test_trend_line_is_drawn_only_when_given():
    assert not elements(parse(chart()), "trend-line")
    root = parse(chart(values=(5, 4, 3), trend=fc.Trend(-1.0, 6.0, "trend −1.00 per session")))
    (line,) = elements(root, "trend-line")
    # y = 6 − x: 5 at the first point (x 1), 3 at the last (x 3)
    assert float(line.get("y1")) == pytest.approx(26 + (7 - 5) / 6 * 188, abs=0.01)
    assert float(line.get("y2")) == pytest.approx(26 + (7 - 3) / 6 * 188, abs=0.01)


@pytest.mark.parametrize("n", [2, 5, 13, 40])
def test_x_labels_are_thinned_so_they_do_not_overlap(n):
    values = [4.0] * n
    ticks = [(i, f"2026-01-{i:02d}") for i in range(1, n + 1)]
    root = parse(chart(values=values, x_ticks=ticks))
    labels = [t for t in elements(root, "tick-label") if t.text and t.text.startswith("2026")]
    assert 2 <= len(labels) <= n and (len(labels) < n or n <= 5)

    def extent(t):
        x, width = float(t.get("x")), fc.CHAR_WIDTH * len(t.text)
        return {"start": (x, x + width), "end": (x - width, x)}.get(t.get("text-anchor"),
                                                                   (x - width / 2, x + width / 2))

    spans = [extent(t) for t in labels]
    assert all(b[0] >= a[1] + 8 for a, b in zip(spans, spans[1:])), spans  # no overlap
    assert spans[0][0] >= 0 and spans[-1][1] <= WIDTH  # inside the image
    assert labels[0].text == "2026-01-01" and labels[-1].text == f"2026-01-{n:02d}"


def test_y_axis_has_one_tick_per_scale_point():
    root = parse(chart(scale_min=1, scale_max=5, cutoff=3, values=(3,)))
    ticks = [t.text for t in elements(root, "tick-label") if t.text in {"1", "2", "3", "4", "5"}]
    assert ticks == ["1", "2", "3", "4", "5"]


def test_several_series_get_a_legend_with_distinct_shapes():
    lines = [fc.Series(name, [fc.Point(1, 3, "a"), fc.Point(2, 4, "b")]) for name in ("Mean", "Team", "Therapist")]
    root = parse(fc.score_chart(lines, chart_id="a", title="t", description="d", scale_min=1, scale_max=5,
                                cutoff=3))
    legend = elements(root, "chart-legend")[0]
    assert [t.text for t in legend.iter("{http://www.w3.org/2000/svg}text")] == ["Mean", "Team", "Therapist"]
    tags = [m.tag.split("}")[1] for m in elements(root, "legend-marker")]
    assert tags == ["circle", "rect", "path"]


def test_an_empty_chart_says_so():
    root = parse(fc.score_chart([fc.Series("Adherence", [])], chart_id="e", title="t", description="d",
                                scale_min=1, scale_max=7, cutoff=4))
    assert "no scores yet" in "".join(root.itertext())


def test_score_chart_escapes_hostile_text_and_has_no_inline_style():
    markup = fc.score_chart(
        [fc.Series(HOSTILE, [fc.Point(1, 3, HOSTILE), fc.Point(2, 5, "ok")])], chart_id='x" onload="alert(1)',
        title=f"Adherence of {HOSTILE}", description=HOSTILE, scale_min=1, scale_max=7, cutoff=4,
        x_ticks=[(1, HOSTILE), (2, "b")], described_by=HOSTILE)
    text = str(markup)
    assert "<script" not in text and "style=" not in text and 'onload="' not in text
    root = parse(markup)
    assert root.find("svg:title", NS).text == f"Adherence of {HOSTILE}"  # shown as text
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert not [a for e in root.iter() for a in e.attrib if a.lower().startswith("on")]


def test_empty_scale_is_refused():
    with pytest.raises(ValueError):
        chart(scale_min=5, scale_max=5)
    with pytest.raises(ValueError):
        fc.y_of(3, 4, 4)


# --------------------------------------------------------------------------- stacked bars


def bars_chart(bars, legend=("Recommended", "Neither", "Iatrogenic"), **kwargs):
    return fc.stacked_bars(bars, list(legend), chart_id="b", title="Responsiveness", description="d", **kwargs)


def test_segments_are_as_wide_as_their_share():
    bar = fc.Bar("Psychic equivalence", [fc.Segment("Recommended", 0.5, 2), fc.Segment("Neither", 0.25, 1),
                                         fc.Segment("Iatrogenic", 0.25, 1)], note="n = 4")
    root = parse(bars_chart([bar]))
    full = WIDTH - fc.BAR_NOTE_WIDTH - fc.BAR_LABEL_WIDTH  # 760 − 80 − 200 = 480
    rects = [s.find("svg:rect", NS) for s in elements(root, "segment")]
    assert [float(r.get("width")) for r in rects] == [240, 120, 120]
    assert [float(r.get("x")) for r in rects] == [200, 440, 560]
    assert full == 480
    assert "Psychic equivalence: Recommended 50% (2)" in elements(root, "segment")[0].find("svg:title", NS).text
    assert [t.text for t in elements(root, "segment-label")] == ["50%", "25%", "25%"]
    assert elements(root, "bar-note")[0].text == "n = 4"


def test_zero_shares_draw_nothing_and_narrow_ones_have_no_label():
    bar = fc.Bar("TH-01", [fc.Segment("Recommended", 0.97, 97), fc.Segment("Neither", 0.0, 0),
                           fc.Segment("Iatrogenic", 0.03, 3)])
    root = parse(bars_chart([bar]))
    assert len(elements(root, "segment")) == 2
    assert [t.text for t in elements(root, "segment-label")] == ["97%"]  # 3% is 14.4 units wide


def test_bars_need_one_segment_per_legend_entry():
    with pytest.raises(ValueError, match="2 segments for 3 legend entries"):
        bars_chart([fc.Bar("x", [fc.Segment("a", 1, 1), fc.Segment("b", 0, 0)])])


def test_long_legends_wrap_and_the_chart_grows():
    legend = [f"Level {i}: a rather long description of the level" for i in range(5)]
    bar = fc.Bar("TH-01", [fc.Segment(name, 0.2, 1) for name in legend])
    root = parse(bars_chart([bar], legend=legend))
    swatches = elements(root, "swatch")
    assert len({s.get("y") for s in swatches}) > 1  # more than one row
    assert all(float(s.get("x")) + 10 <= WIDTH for s in swatches)
    height = float(root.get("viewBox").split()[3])
    bar_y = float(elements(root, "bar-frame")[0].get("y"))
    assert bar_y > max(float(s.get("y")) for s in swatches) and height >= bar_y + fc.BAR_HEIGHT


# Widths of some labels in DejaVu Sans at 11 px (Debian's default sans-serif), from the font's
# advance widths: 'Recommended' is 83.1 units wide, 7.55 per character.
DEJAVU_11 = {"Recommended": 83.1, "Neither": 40.6, "Iatrogenic": 55.4, "Mean": 30.0,
             "Therapist": 51.8, "Team": 30.9, "WWWWWWWWWW": 108.8, "Ärztin ß": 42.6}


def test_text_width_is_dejavu_sans():
    for text, width in DEJAVU_11.items():
        assert fc.text_width(text) >= width - 0.05, text
        assert fc.text_width(text) <= width * 1.15, text  # non-ASCII: a little generous


@pytest.mark.parametrize("kind", ["bars", "lines"])
def test_legend_labels_leave_room_before_the_next_entry(kind):
    """Each label, as wide as DejaVu Sans sets it, ends at least 8 units before the next
    entry's swatch or marker (the browser test measures the same in Chromium)."""
    if kind == "bars":
        names = ["Recommended", "Neither", "Iatrogenic", "WWWWWWWWWW", "Ärztin ß", "Mean"]
        root = parse(bars_chart([], legend=names))
        marks = [float(s.get("x")) for s in elements(root, "swatch")]
        rows = [s.get("y") for s in elements(root, "swatch")]
    else:
        names = ["Mean", "Team", "Therapist", "Recommended", "WWWWWWWWWW", "Ärztin ß"]
        lines = [fc.Series(n, [fc.Point(1, 3, "a"), fc.Point(2, 4, "b")]) for n in names]
        root = parse(fc.score_chart(lines, chart_id="a", title="t", description="d", scale_min=1,
                                    scale_max=5, cutoff=3))
        marks = [float(fc._legend_layout(names, start=LEFT)[k][0]) for k in range(len(names))]
        rows = [t.get("y") for t in elements(root, "legend-label")]
    labels = elements(root, "legend-label")
    assert [t.text for t in labels] == names
    for k in range(len(names) - 1):
        if rows[k] == rows[k + 1]:
            end = float(labels[k].get("x")) + DEJAVU_11[names[k]]
            assert marks[k + 1] - end >= 8, (names[k], marks[k + 1] - end)


def test_bars_escape_hostile_labels():
    bar = fc.Bar(HOSTILE, [fc.Segment("a", 1, 1), fc.Segment("b", 0, 0), fc.Segment("c", 0, 0)], note=HOSTILE)
    markup = bars_chart([bar], legend=(HOSTILE, "b", "c"))
    assert "<script" not in str(markup) and "style=" not in str(markup)
    root = parse(markup)
    assert HOSTILE in "".join(root.itertext())


def test_no_bars_say_so():
    assert "nothing to show yet" in "".join(parse(bars_chart([])).itertext())
