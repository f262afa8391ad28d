"""Server-rendered SVG charts of the fidelity pages: pure functions that return markup.

* :func:`score_chart` — scores over time (a therapist's adherence per session, a program's
  audit means per date): points joined by a line on the instrument's scale, the cut-off as a
  horizontal line, points under it drawn as a different shape (not by colour alone), and an
  optional trend line;
* :func:`stacked_bars` — one horizontal bar per row (a therapist's spectrum levels, a mode's
  recommended / neither / iatrogenic answers), each bar split into shares that add up to 1.

Every chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>``;
the pages put a table with the same figures next to it (``described_by``). No script, no
``style`` attribute (the CSP forbids inline styles): classes for the stylesheet and
presentation attributes (``fill``, ``stroke``) so a chart still reads without it. All text is
escaped here, so a hostile therapist code or scheme label stays text.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from .charts import shorten

SVG_NS = "http://www.w3.org/2000/svg"

# Layout of the line charts, in SVG user units (the SVG scales to its container).
WIDTH = 760
HEIGHT = 260
LEFT = 48  # y tick labels
RIGHT = 62  # the cut-off label sits right of the plot
TOP = 26  # the cut-off label above the line needs room
BOTTOM = 46  # x tick labels and the axis title
#: Least distance between two x tick labels; labels closer than this are skipped.
X_LABEL_SPACING = 70
#: Inner padding so that the first and last points are not on the frame.
X_PAD = 14

# Layout of the stacked bar charts.
BAR_LABEL_WIDTH = 200
BAR_NOTE_WIDTH = 80
BAR_HEIGHT = 18
BAR_GAP = 8
BAR_TOP = 10
BAR_LEGEND = 26
#: Shares narrower than this (user units) get no percentage written on them.
MIN_LABEL_WIDTH = 30

#: Marker shapes of the series of a line chart, in order (colour is never the only cue).
SHAPES = ("circle", "square", "diamond", "triangle", "cross")
#: Fill colours of series and segments (CSS may override them by class).
PALETTE = ("#1f5f8b", "#7a3e8e", "#1b6e3a", "#8a4b00", "#5b6570", "#a4161a")
BELOW_FILL = "#a4161a"


def _e(value: object) -> str:
    """Text for SVG content or a double-quoted attribute, escaped (valid XML, too)."""
    return html.escape(str(value), quote=True)


def _n(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _number(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _scale_label(value: float) -> str:
    return f"{value:g}"


# ----------------------------------------------------------------------------- line charts


@dataclass(frozen=True)
class Point:
    """One observation: ``x`` on the chart's axis (an order or a date's ordinal), ``y`` the score."""

    x: float
    y: float
    #: What the point is, for its tooltip: "TH-01/PT-101 #14, 2026-04-21".
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]


@dataclass(frozen=True)
class Trend:
    """A straight line ``y = intercept + slope · x`` over the chart's x range."""

    slope: float
    intercept: float
    label: str


def y_of(value: float, lo: float, hi: float, *, top: float = TOP, height: float = HEIGHT,
         bottom: float = BOTTOM) -> float:
    """The y coordinate of ``value`` on a vertical axis from ``lo`` (bottom) to ``hi`` (top)."""
    if hi <= lo:
        raise ValueError(f"empty scale {lo}…{hi}")
    plot = height - top - bottom
    return round(top + (hi - value) / (hi - lo) * plot, 2)


def x_of(value: float, lo: float, hi: float, *, left: float = LEFT, width: float = WIDTH,
         right: float = RIGHT) -> float:
    """The x coordinate of ``value`` on an axis from ``lo`` to ``hi`` (one value: the middle)."""
    a, b = left + X_PAD, width - right - X_PAD
    if hi <= lo:
        return round((a + b) / 2, 2)
    return round(a + (value - lo) / (hi - lo) * (b - a), 2)


def _marker(shape: str, x: float, y: float, r: float = 4.5) -> str:
    """The element of one marker (no closing attributes; the caller adds class and fill)."""
    if shape == "circle":
        return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}"'
    if shape == "square":
        return f'<rect x="{_n(x - r)}" y="{_n(y - r)}" width="{_n(2 * r)}" height="{_n(2 * r)}"'
    if shape == "diamond":
        d = r * 1.3
        return f'<path d="M{_n(x)} {_n(y - d)}L{_n(x + d)} {_n(y)}L{_n(x)} {_n(y + d)}L{_n(x - d)} {_n(y)}Z"'
    if shape == "triangle":
        d = r * 1.25
        return f'<path d="M{_n(x)} {_n(y - d)}L{_n(x + d)} {_n(y + d * 0.8)}L{_n(x - d)} {_n(y + d * 0.8)}Z"'
    d = r
    return (f'<path d="M{_n(x - d)} {_n(y - d)}L{_n(x + d)} {_n(y + d)}M{_n(x - d)} {_n(y + d)}'
            f'L{_n(x + d)} {_n(y - d)}" stroke-width="2"')


def _below_marker(x: float, y: float, r: float = 5.5) -> str:
    """A point under the cut-off: a downward triangle, whatever the series' shape."""
    return (f'<path d="M{_n(x - r)} {_n(y - r * 0.75)}L{_n(x + r)} {_n(y - r * 0.75)}'
            f'L{_n(x)} {_n(y + r)}Z"')


#: Approximate width of one character of a tick label (11px system font), for collisions.
CHAR_WIDTH = 6.2
LABEL_CHARS = 14


def _x_ticks(ticks: Sequence[tuple[float, str]], lo: float, hi: float) -> list[tuple[float, str, str]]:
    """(x, label, text-anchor) of the ticks whose labels fit without overlapping.

    Labels near the plot's edges are anchored inwards. Later labels that would overlap the
    previous one (with ``X_LABEL_SPACING`` between their centres at least) are skipped; the
    last tick's label always shows, replacing earlier ones it would overlap.
    """
    plot_left, plot_right = LEFT, WIDTH - RIGHT

    def place(value: float, label: str) -> tuple[float, str, str, float, float]:
        x = x_of(value, lo, hi)
        text = shorten(label, LABEL_CHARS)
        width = CHAR_WIDTH * len(text)
        if x - width / 2 < plot_left - 6:
            return x, text, "start", x, x + width
        if x + width / 2 > plot_right + 6:
            return x, text, "end", x - width, x
        return x, text, "middle", x - width / 2, x + width / 2

    def clash(a, b) -> bool:
        return b[3] < a[4] + 8 or b[0] - a[0] < X_LABEL_SPACING

    placed: list[tuple[float, str, str, float, float]] = []
    ordered = sorted(ticks, key=lambda t: t[0])
    for value, label in ordered:
        tick = place(value, label)
        if not placed or not clash(placed[-1], tick):
            placed.append(tick)
    if ordered:
        last = place(*ordered[-1])
        if placed[-1][:2] != last[:2]:
            while placed and clash(placed[-1], last):
                placed.pop()
            placed.append(last)
    return [(x, text, anchor) for x, text, anchor, _a, _b in placed]


def score_chart(series: Sequence[Series], *, chart_id: str, title: str, description: str,
                scale_min: float, scale_max: float, cutoff: float | None = None,
                x_ticks: Sequence[tuple[float, str]] = (), x_title: str = "",
                trend: Trend | None = None, described_by: str | None = None) -> Markup:
    """Scores over time on the instrument's scale, with the cut-off line.

    ``series``: one line each (a therapist's adherence; an audit's overall and level means).
    ``x_ticks``: (x, label) for the axis, thinned to fit. Points under ``cutoff`` are drawn
    as downward triangles with class ``below``. ``trend`` adds a dashed straight line.
    """
    if scale_max <= scale_min:
        raise ValueError(f"empty scale {scale_min}…{scale_max}")
    cid = _e(chart_id)
    xs = [p.x for s in series for p in s.points]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    plot_left, plot_right = LEFT, WIDTH - RIGHT
    plot_top, plot_bottom = TOP, HEIGHT - BOTTOM
    described = f"{cid}-desc" + (f" {_e(described_by)}" if described_by else "")
    out = [
        f'<svg xmlns="{SVG_NS}" class="fid-chart fid-line" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" id="{cid}" '
        f'aria-labelledby="{cid}-title" aria-describedby="{described}">',
        f'<title id="{cid}-title">{_e(title)}</title>',
        f'<desc id="{cid}-desc">{_e(description)}</desc>',
        f'<rect class="plot-area" x="{plot_left}" y="{plot_top}" width="{plot_right - plot_left}" '
        f'height="{plot_bottom - plot_top}" fill="#ffffff" stroke="#d9dde2"/>',
    ]
    # y axis: one tick per whole scale point
    out.append('<g class="y-axis">')
    value = scale_min
    while value <= scale_max + 1e-9:
        y = y_of(value, scale_min, scale_max)
        out.append(f'<line class="grid" x1="{plot_left}" y1="{_n(y)}" x2="{plot_right}" y2="{_n(y)}" '
                   f'stroke="#eceef0" stroke-width="1"/>')
        out.append(f'<text class="tick-label" x="{plot_left - 6}" y="{_n(y + 4)}" text-anchor="end" '
                   f'fill="#5b6570">{_e(_scale_label(value))}</text>')
        value += 1
    out.append("</g>")
    # x axis
    out.append(f'<g class="x-axis"><line class="axis" x1="{plot_left}" y1="{plot_bottom}" '
               f'x2="{plot_right}" y2="{plot_bottom}" stroke="#5b6570" stroke-width="1"/>')
    for x, label, anchor in _x_ticks(x_ticks, lo, hi):
        out.append(f'<line class="tick" x1="{_n(x)}" y1="{plot_bottom}" x2="{_n(x)}" '
                   f'y2="{plot_bottom + 4}" stroke="#5b6570" stroke-width="1"/>')
        out.append(f'<text class="tick-label" x="{_n(x)}" y="{plot_bottom + 16}" text-anchor="{anchor}" '
                   f'fill="#5b6570">{_e(label)}</text>')
    if x_title:
        out.append(f'<text class="axis-title" x="{_n((plot_left + plot_right) / 2)}" y="{HEIGHT - 6}" '
                   f'text-anchor="middle" fill="#5b6570">{_e(x_title)}</text>')
    out.append("</g>")
    # the cut-off
    if cutoff is not None and scale_min <= cutoff <= scale_max:
        y = y_of(cutoff, scale_min, scale_max)
        out.append(f'<g class="cutoff"><title>cut-off {_e(_scale_label(cutoff))}</title>'
                   f'<line class="cutoff-line" x1="{plot_left}" y1="{_n(y)}" x2="{plot_right}" y2="{_n(y)}" '
                   f'stroke="#8a4b00" stroke-width="1.5" stroke-dasharray="6 4"/>'
                   f'<text class="cutoff-label" x="{plot_right + 4}" y="{_n(y + 4)}" text-anchor="start" '
                   f'fill="#8a4b00">cut-off {_e(_scale_label(cutoff))}</text></g>')
    # the trend
    if trend is not None and xs:
        x1, x2 = lo, hi
        y1 = min(max(trend.intercept + trend.slope * x1, scale_min), scale_max)
        y2 = min(max(trend.intercept + trend.slope * x2, scale_min), scale_max)
        out.append(f'<g class="trend"><title>{_e(trend.label)}</title>'
                   f'<line class="trend-line" x1="{_n(x_of(x1, lo, hi))}" y1="{_n(y_of(y1, scale_min, scale_max))}" '
                   f'x2="{_n(x_of(x2, lo, hi))}" y2="{_n(y_of(y2, scale_min, scale_max))}" '
                   f'stroke="#5b6570" stroke-width="1.5" stroke-dasharray="2 3"/></g>')
    # the series
    for k, s in enumerate(series):
        colour, shape = PALETTE[k % len(PALETTE)], SHAPES[k % len(SHAPES)]
        points = sorted(s.points, key=lambda p: p.x)
        out.append(f'<g class="series series-{k}"><title>{_e(s.name)}</title>')
        if len(points) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{_n(x_of(p.x, lo, hi))} "
                            f"{_n(y_of(_clamp(p.y, scale_min, scale_max), scale_min, scale_max))}"
                            for i, p in enumerate(points))
            out.append(f'<path class="line" d="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        for p in points:
            x = x_of(p.x, lo, hi)
            y = y_of(_clamp(p.y, scale_min, scale_max), scale_min, scale_max)
            below = cutoff is not None and p.y < cutoff
            text = f"{p.label}: {s.name} {_number(p.y)}" + (
                f" (below the cut-off {_scale_label(cutoff)})" if below else "")
            if below:
                out.append(f'<g class="point below"><title>{_e(text)}</title>{_below_marker(x, y)} '
                           f'fill="{BELOW_FILL}" stroke="#ffffff" stroke-width="1"/></g>')
            else:
                extra = ' fill="none"' if shape == "cross" else f' fill="{colour}"'
                stroke = colour if shape == "cross" else "#ffffff"
                out.append(f'<g class="point"><title>{_e(text)}</title>{_marker(shape, x, y)}{extra} '
                           f'stroke="{stroke}"/></g>')
        out.append("</g>")
    height = HEIGHT
    if len(series) > 1:
        legend, rows = _legend([s.name for s in series], y=HEIGHT + 10)
        out.append(legend)
        height = HEIGHT + rows * LEGEND_ROW + 2
    if not xs:
        out.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                   f'fill="#5b6570">no scores yet</text>')
    out.append("</svg>")
    out[0] = out[0].replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height}"')
    return Markup("\n".join(out))


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


LEGEND_ROW = 16
#: Font size of legend labels (``svg.fid-chart text`` in app.css), in chart units.
LEGEND_FONT = 11
#: From an entry's left edge to its label (marker or swatch and a space), and the space after
#: the label before the next entry.
LEGEND_LABEL_OFFSET, LEGEND_GAP = 14, 12

#: Advance widths (thousandths of an em) of the printable ASCII characters in DejaVu Sans,
#: Debian's default sans-serif and wider than the other usual system fonts (Segoe UI,
#: Roboto, Noto Sans, Helvetica, Arial): a legend laid out for it fits in those too.
_ASCII_WIDTHS = (
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337,  # space … /
    636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531,  # 0 … ?
    1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863, 748, 787,  # @ … O
    603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500,  # P … _
    500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612,  # ` … o
    635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838,  # p … ~
)


def text_width(text: str, size: float = LEGEND_FONT) -> float:
    """A generous estimate of the width of ``text`` at ``size`` (chart units): DejaVu Sans'
    widths for ASCII, 0.8 em for other characters (ä, ß: about 0.63) and 1 em for wide ones."""
    total = 0.0
    for char in text:
        code = ord(char)
        if 32 <= code < 127:
            total += _ASCII_WIDTHS[code - 32] / 1000
        else:
            total += 1.0 if unicodedata.east_asian_width(char) in ("W", "F") else 0.8
    return total * size


def _legend_layout(names: Sequence[str], *, start: float, limit: float = WIDTH - RIGHT,
                   chars: int = 30) -> list[tuple[float, int, str]]:
    """(x, row, shortened name) of legend entries, wrapped onto new rows at ``limit``.

    Each entry is as wide as its marker, its label as DejaVu Sans sets it (see
    :func:`text_width`) and a gap, so that no label runs into the next entry's marker.
    """
    placed, x, row = [], start, 0
    for name in names:
        label = shorten(name, chars)
        width = LEGEND_LABEL_OFFSET + text_width(label) + LEGEND_GAP
        if placed and x + width > limit:
            x, row = start, row + 1
        placed.append((x, row, label))
        x += width
    return placed


def _legend(names: Sequence[str], *, y: float) -> tuple[str, int]:
    """The legend of a line chart (marker shape and name per series) and its number of rows."""
    layout = _legend_layout(names, start=LEFT)
    out = ['<g class="chart-legend">']
    for k, (x, row, label) in enumerate(layout):
        colour, shape = PALETTE[k % len(PALETTE)], SHAPES[k % len(SHAPES)]
        fill = "none" if shape == "cross" else colour
        stroke = colour if shape == "cross" else "#ffffff"
        yy = y + row * LEGEND_ROW
        out.append(f'{_marker(shape, x + 5, yy - 4, 4)} class="legend-marker series-{k}" fill="{fill}" '
                   f'stroke="{stroke}"/>')
        out.append(f'<text class="legend-label" x="{_n(x + 13)}" y="{_n(yy)}" fill="#1d232b">{_e(label)}</text>')
    out.append("</g>")
    return "".join(out), (layout[-1][1] + 1 if layout else 0)


def _text_colour(fill: str) -> str:
    """Dark or white text, whichever reads on ``fill`` (#rrggbb), by relative luminance."""
    try:
        r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    except ValueError:
        return "#1d232b"
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "#1d232b" if luminance > 0.25 else "#ffffff"


# ----------------------------------------------------------------------------- stacked bars


@dataclass(frozen=True)
class Segment:
    label: str
    share: float
    #: The (weighted) count behind the share, for the tooltip.
    count: float


@dataclass(frozen=True)
class Bar:
    label: str
    #: One segment per legend entry, in legend order (a share of 0 draws nothing).
    segments: Sequence[Segment]
    #: Written right of the bar, e.g. "n = 41.5".
    note: str = ""


def stacked_bars(bars: Sequence[Bar], legend: Sequence[str], *, chart_id: str, title: str,
                 description: str, described_by: str | None = None,
                 colours: Sequence[str] | None = None) -> Markup:
    """Horizontal bars of shares that add up to 1, one per row, with a legend on top."""
    cid = _e(chart_id)
    colours = list(colours or PALETTE)
    for bar in bars:
        if len(bar.segments) != len(legend):
            raise ValueError(f"bar '{bar.label}' has {len(bar.segments)} segments for {len(legend)} legend entries")
    left, right = BAR_LABEL_WIDTH, WIDTH - BAR_NOTE_WIDTH
    layout = _legend_layout(legend, start=left, limit=WIDTH)
    legend_height = (layout[-1][1] + 1 if layout else 0) * LEGEND_ROW + BAR_LEGEND - LEGEND_ROW
    bars_top = BAR_TOP + legend_height
    height = bars_top + len(bars) * (BAR_HEIGHT + BAR_GAP) + 4
    described = f"{cid}-desc" + (f" {_e(described_by)}" if described_by else "")
    out = [
        f'<svg xmlns="{SVG_NS}" class="fid-chart fid-bars" role="img" viewBox="0 0 {WIDTH} {_n(height)}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" id="{cid}" '
        f'aria-labelledby="{cid}-title" aria-describedby="{described}">',
        f'<title id="{cid}-title">{_e(title)}</title>',
        f'<desc id="{cid}-desc">{_e(description)}</desc>',
    ]
    # legend: a swatch and a name per segment kind
    out.append('<g class="chart-legend">')
    for k, (x, row, label) in enumerate(layout):
        y = BAR_TOP + row * LEGEND_ROW
        out.append(f'<rect class="swatch seg-{k}" x="{_n(x)}" y="{_n(y)}" width="10" height="10" '
                   f'fill="{colours[k % len(colours)]}" stroke="#5b6570" stroke-width="0.5"/>')
        out.append(f'<text class="legend-label" x="{_n(x + 14)}" y="{_n(y + 9)}" fill="#1d232b">{_e(label)}</text>')
    out.append("</g>")
    for i, bar in enumerate(bars):
        y = bars_top + i * (BAR_HEIGHT + BAR_GAP)
        out.append(f'<g class="bar"><text class="bar-label" x="{left - 8}" y="{_n(y + BAR_HEIGHT - 5)}" '
                   f'text-anchor="end" fill="#1d232b">{_e(shorten(bar.label, 30))}'
                   + (f"<title>{_e(bar.label)}</title>" if shorten(bar.label, 30) != bar.label else "")
                   + "</text>")
        out.append(f'<rect class="bar-frame" x="{left}" y="{_n(y)}" width="{right - left}" '
                   f'height="{BAR_HEIGHT}" fill="#f2f4f6" stroke="#d9dde2"/>')
        total = sum(max(s.share, 0.0) for s in bar.segments)
        x = float(left)
        for k, seg in enumerate(bar.segments):
            share = max(seg.share, 0.0) / total if total > 1 + 1e-9 else max(seg.share, 0.0)
            w = share * (right - left)
            if w <= 0:
                continue
            text = f"{bar.label}: {legend[k]} {100 * seg.share:.0f}% ({seg.count:g})"
            out.append(f'<g class="segment seg-{k}"><title>{_e(text)}</title>'
                       f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{BAR_HEIGHT}" '
                       f'fill="{colours[k % len(colours)]}" stroke="#ffffff" stroke-width="1"/>')
            if w >= MIN_LABEL_WIDTH:
                out.append(f'<text class="segment-label" x="{_n(x + w / 2)}" y="{_n(y + BAR_HEIGHT - 5)}" '
                           f'text-anchor="middle" fill="{_text_colour(colours[k % len(colours)])}">'
                           f'{100 * seg.share:.0f}%</text>')
            out.append("</g>")
            x += w
        if bar.note:
            out.append(f'<text class="bar-note" x="{right + 6}" y="{_n(y + BAR_HEIGHT - 5)}" '
                       f'fill="#5b6570">{_e(bar.note)}</text>')
        out.append("</g>")
    if not bars:
        out.append(f'<text class="empty" x="{WIDTH / 2}" y="{height - 4}" text-anchor="middle" '
                   f'fill="#5b6570">nothing to show yet</text>')
    out.append("</svg>")
    return Markup("\n".join(out))
