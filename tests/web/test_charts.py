"""Geometry of the report's SVG forest plots (mbtcode/web/charts.py) and their template."""

from __future__ import annotations

import re

import pytest

from mbtcode.web import charts
from mbtcode.web.charts import (
    LABEL_WIDTH,
    RIGHT_MARGIN,
    ROW_HEIGHT,
    TOP,
    WIDTH,
    PanelSpec,
    clip,
    forest_plot,
    shorten,
    x_of,
)

LEFT, RIGHT = LABEL_WIDTH, WIDTH - RIGHT_MARGIN  # one panel spans the whole plot width


def stat(estimate, low=None, high=None, reason=None) -> dict:
    d = {"estimate": estimate, "ci_low": low, "ci_high": high}
    if reason:
        d["reason"] = reason
    return d


def one_panel(values, **kwargs):
    labels = [f"row {i}" for i in range(len(values))]
    return forest_plot(labels, [PanelSpec("ICC(1)", values, symbol="ICC(1)", **kwargs)])


def test_x_of_maps_the_axis_linearly():
    assert x_of(-1, -1, 1, 100, 300) == 100
    assert x_of(0, -1, 1, 100, 300) == 200
    assert x_of(0.5, -1, 1, 100, 300) == 250
    assert x_of(1, -1, 1, 100, 300) == 300
    assert x_of(0.75, 0, 1, 0, 400) == 300
    with pytest.raises(ValueError):
        x_of(0.5, 1, 1, 0, 10)


def test_clip():
    assert clip(0.5, 0, 1) == (0.5, False)
    assert clip(-0.2, 0, 1) == (0, True)
    assert clip(1.3, 0, 1) == (1, True)


@pytest.mark.parametrize("value", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_points_land_where_their_value_is_on_a_0_to_1_axis(value):
    plot = one_panel([stat(value, max(0, value - 0.1), min(1, value + 0.05))])
    (panel,) = plot.panels
    assert (panel.lo, panel.hi) == (0.0, 1.0)
    (mark,) = panel.marks
    assert mark.cx == pytest.approx(LEFT + value * (RIGHT - LEFT), abs=0.01)
    assert mark.x_low == pytest.approx(x_of(max(0, value - 0.1), 0, 1, LEFT, RIGHT))
    assert mark.x_high == pytest.approx(x_of(min(1, value + 0.05), 0, 1, LEFT, RIGHT))
    assert not mark.clipped_low and not mark.clipped_high


def test_a_negative_estimate_switches_to_a_minus_one_to_one_axis():
    plot = one_panel([stat(-0.5, -0.8, -0.1), stat(0.5, 0.2, 0.7)])
    (panel,) = plot.panels
    assert (panel.lo, panel.hi) == (-1.0, 1.0)
    first, second = panel.marks
    assert first.cx == pytest.approx(LEFT + 0.25 * (RIGHT - LEFT), abs=0.01)
    assert second.cx == pytest.approx(LEFT + 0.75 * (RIGHT - LEFT), abs=0.01)
    assert panel.zero == pytest.approx((LEFT + RIGHT) / 2, abs=0.01)
    assert [t.label for t in panel.ticks] == ["-1", "-0.5", "0", "0.5", "1"]


def test_a_fixed_axis_is_kept():
    (panel,) = one_panel([stat(0.3, 0.1, 0.5)], lo=-1.0).panels
    assert panel.lo == -1.0
    assert panel.marks[0].cx == pytest.approx(x_of(0.3, -1, 1, LEFT, RIGHT))


def test_intervals_beyond_the_axis_are_clipped_and_flagged():
    plot = one_panel([stat(0.2, -0.6, 0.7), stat(0.95, 0.8, 1.4)])
    (panel,) = plot.panels
    assert panel.lo == 0.0  # estimates are positive: the axis stays 0…1
    low, high = panel.marks
    assert low.x_low == LEFT and low.clipped_low and not low.clipped_high
    assert high.x_high == RIGHT and high.clipped_high and not high.clipped_low
    # The text keeps the true interval.
    assert low.text == "row 0, ICC(1) 0.200 [-0.600, 0.700]"


def test_rows_are_stacked_from_the_top():
    plot = one_panel([stat(0.1), stat(0.2), stat(0.3)])
    assert [r.y for r in plot.rows] == [TOP + ROW_HEIGHT * (i + 0.5) for i in range(3)]
    assert plot.axis_y > plot.rows[-1].y and plot.height > plot.axis_y
    assert [m.y for m in plot.panels[0].marks] == [r.y for r in plot.rows]


def test_none_estimates_are_omitted_with_a_note():
    plot = one_panel([stat(0.6, 0.4, 0.8), stat(None, reason="no variance between units"), None])
    (panel,) = plot.panels
    assert [m.row for m in panel.marks] == [0]
    assert [(o.row, o.reason) for o in panel.omitted] == [(1, "no variance between units"), (2, "no data")]
    assert plot.notes == ["ICC(1), row 1: not estimable (no variance between units)",
                          "ICC(1), row 2: not estimable (no data)"]
    assert not plot.empty
    assert one_panel([stat(None, reason="x")]).empty


def test_a_point_without_interval_has_no_whisker():
    (mark,) = one_panel([stat(0.4)]).panels[0].marks
    assert mark.x_low is None and mark.x_high is None
    assert mark.text.endswith("0.400, no interval")


def test_thresholds_are_placed_and_labelled_per_panel():
    plot = forest_plot(["a"], [
        PanelSpec("α", [stat(0.7)], charts.ALPHA_THRESHOLDS),
        PanelSpec("ICC(1)", [stat(0.7)], charts.ICC_THRESHOLDS),
    ])
    alpha, icc = plot.panels
    assert alpha.right < icc.left  # side by side with a gap
    assert [t.label for t in alpha.thresholds] == [".667", ".800"]
    assert [t.label for t in icc.thresholds] == [".50", ".75", ".90"]
    for panel in (alpha, icc):
        for t in panel.thresholds:
            assert t.x == pytest.approx(x_of(t.value, 0, 1, panel.left, panel.right))
    assert [t.level for t in alpha.thresholds] == [0, 0]
    # On a −1…1 axis .667 and .800 are too close for one line: the second label goes up one.
    wide = forest_plot(["a"], [PanelSpec("α", [stat(-0.1)], charts.ALPHA_THRESHOLDS),
                               PanelSpec("ICC(1)", [stat(-0.1)], charts.ICC_THRESHOLDS)])
    assert [t.level for t in wide.panels[0].thresholds] == [0, 1]
    assert [t.level for t in wide.panels[1].thresholds] == [0, 0, 1]


def test_thresholds_outside_the_axis_are_left_out():
    (panel,) = forest_plot(["a"], [PanelSpec("x", [stat(0.5)], (-2.0, 0.5, 1.5))]).panels
    assert [t.value for t in panel.thresholds] == [0.5]


def test_long_labels_are_shortened_but_kept_whole_for_titles():
    label = "13. Mentalizing the relationship (transference) and much more"
    (row,) = one_panel([stat(0.5)]).rows  # default labels are short
    assert row.label == row.full_label
    plot = forest_plot([label], [PanelSpec("x", [stat(0.5)])])
    assert plot.rows[0].label.endswith("…") and len(plot.rows[0].label) <= charts.LABEL_MAX_CHARS
    assert plot.rows[0].full_label == label
    assert shorten("  a   b ") == "a b"
    titled = forest_plot(["2. Explor… · adherence"], [PanelSpec("x", [stat(None, reason="r")])],
                         titles=["2. Exploration · adherence"])
    assert titled.rows[0].label == "2. Explor… · adherence"
    assert titled.notes == ["x, 2. Exploration · adherence: not estimable (r)"]


def test_mismatched_values_are_refused():
    with pytest.raises(ValueError):
        forest_plot(["a", "b"], [PanelSpec("x", [stat(0.5)])])
    with pytest.raises(ValueError):
        forest_plot(["a"], [])
    with pytest.raises(ValueError):
        forest_plot(["a"], [PanelSpec("x", [stat(0.5)])], titles=["a", "b"])


def test_number():
    assert charts.number(None) == "—"
    assert charts.number(0.12345) == "0.123"
    assert charts.number(-0.5, 2) == "-0.50"


def test_template_draws_the_geometry_without_styles_or_scripts(app):
    plot = forest_plot(["<script>alert(1)</script>", "b"], [
        PanelSpec("ICC(1)", [stat(0.5, -0.2, 0.9), stat(None, reason="too <few>")], charts.ICC_THRESHOLDS),
    ])
    with app.test_request_context():
        module = app.jinja_env.get_template("reliability/_charts.html").make_module({})
        svg = str(module.forest(plot, "c1", "A chart", "c1-note"))
    assert 'role="img"' in svg and '<title id="c1-title">A chart</title>' in svg
    assert 'aria-labelledby="c1-title"' in svg and 'aria-describedby="c1-desc c1-note"' in svg
    assert "style" not in svg and "<script" not in svg and not re.search(r"\son\w+=", svg)
    assert "&lt;script&gt;" in svg and "too &lt;few&gt;" in svg
    (mark,) = plot.panels[0].marks
    assert f'cx="{mark.cx}"' in svg
    assert 'class="clipped"' in svg  # the interval reaches below 0
    assert svg.count('class="threshold"') == 3
    assert "Not plotted: ICC(1), b: not estimable (too &lt;few&gt;)" in svg
