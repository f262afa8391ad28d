"""Geometry of the server-rendered SVG charts: pure functions, no Flask, no drawing.

The report page draws forest plots: one row per label (a code, an item), one or more panels
side by side (say, the utterance-level alpha and the session-tally ICC(1) of each code). In
each panel a dot marks the estimate and a whisker its 95% interval, on a fixed axis with
vertical reference lines at the interpretation thresholds. Everything here is numbers and
short strings; ``templates/reliability/_charts.html`` turns them into SVG elements with
presentation attributes only (the CSP forbids inline styles).

An estimate that is None is left out of the plot and reported in ``ForestPlot.notes``; an
interval reaching beyond the axis is cut at the axis and flagged (``clipped_low`` /
``clipped_high``), so the template can draw an arrow there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Krippendorff (2004): .667 the lowest tolerable, .800 reliable.
ALPHA_THRESHOLDS = (0.667, 0.800)
#: Koo & Li (2016): .50 moderate, .75 good, .90 excellent.
ICC_THRESHOLDS = (0.50, 0.75, 0.90)

#: Layout in SVG user units (the SVG scales to its container).
WIDTH = 760
LABEL_WIDTH = 240
PANEL_GAP = 30
RIGHT_MARGIN = 14
TOP = 44  # below the panel titles and the (two lines of) threshold labels
ROW_HEIGHT = 22
AXIS_GAP = 6  # between the last row and the axis line
BOTTOM = 26  # tick labels under the axis
LABEL_MAX_CHARS = 36
LABEL_SPACING = 24  # least horizontal distance between two threshold labels on one line


@dataclass(frozen=True)
class PanelSpec:
    """What to plot in one panel: a value per row (``None`` or a statistic dict per row).

    A value is a dict as in the report JSON: ``estimate``, ``ci_low``, ``ci_high`` and,
    when the estimate is null, ``reason``. ``lo`` None picks the axis: 0…1 unless an
    estimate is negative, then −1…1.
    """

    title: str
    values: Sequence[Mapping[str, Any] | None]
    thresholds: Sequence[float] = ()
    lo: float | None = None
    hi: float = 1.0
    #: Short name of the statistic for texts ("α", "ICC(1)").
    symbol: str = ""


@dataclass(frozen=True)
class Tick:
    x: float
    value: float
    label: str
    #: Threshold labels closer than ``LABEL_SPACING`` to the previous one go up a line.
    level: int = 0


@dataclass(frozen=True)
class Mark:
    """One estimate: a dot at ``cx`` and a whisker from ``x_low`` to ``x_high`` (or none)."""

    row: int
    y: float
    cx: float
    x_low: float | None
    x_high: float | None
    clipped_low: bool
    clipped_high: bool
    estimate: float
    ci_low: float | None
    ci_high: float | None
    #: For the mark's <title>: "Validate, α 0.712 [0.551, 0.840]".
    text: str


@dataclass(frozen=True)
class Omission:
    """An estimate that is not plotted (None), with where to write "n/a" and why."""

    row: int
    y: float
    x: float
    label: str
    reason: str


@dataclass(frozen=True)
class Panel:
    title: str
    symbol: str
    left: float
    right: float
    lo: float
    hi: float
    ticks: list[Tick]
    thresholds: list[Tick]
    marks: list[Mark]
    omitted: list[Omission]
    #: The x of the zero line when the axis crosses zero (−1…1), else None.
    zero: float | None

    @property
    def center(self) -> float:
        return (self.left + self.right) / 2


@dataclass(frozen=True)
class Row:
    label: str  # shortened for the chart
    full_label: str
    y: float


@dataclass(frozen=True)
class ForestPlot:
    width: float
    height: float
    label_width: float
    top: float
    axis_y: float
    rows: list[Row]
    panels: list[Panel]
    #: "ICC(1), Validate: not estimable (too few sessions)" for every estimate left out.
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(p.marks for p in self.panels)


def x_of(value: float, lo: float, hi: float, left: float, right: float) -> float:
    """The x coordinate of ``value`` on an axis from ``lo`` (at ``left``) to ``hi`` (``right``)."""
    if hi <= lo:
        raise ValueError(f"empty axis {lo}…{hi}")
    return round(left + (value - lo) / (hi - lo) * (right - left), 2)


def clip(value: float, lo: float, hi: float) -> tuple[float, bool]:
    """``value`` cut to ``[lo, hi]``, and whether it was cut."""
    if value < lo:
        return lo, True
    if value > hi:
        return hi, True
    return value, False


def shorten(label: str, limit: int = LABEL_MAX_CHARS) -> str:
    """``label`` cut to ``limit`` characters with an ellipsis (the full label goes in a title)."""
    label = " ".join(str(label).split())
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "…"


def number(value: float | None, digits: int = 3) -> str:
    """A number for charts and tables: fixed decimals, "—" for None."""
    return "—" if value is None else f"{value:.{digits}f}"


def _tick_label(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _threshold_labels(values: Sequence[float]) -> list[str]:
    """Thresholds written the conventional way, with one number of decimals per panel:
    (.667, .8) → ".667", ".800"; (.5, .75, .9) → ".50", ".75", ".90"."""
    decimals = max([2] + [len(f"{v:.3f}".rstrip("0").split(".")[1]) for v in values])
    labels = []
    for v in values:
        text = f"{v:.{decimals}f}"
        labels.append(text[1:] if text.startswith("0.") else text.replace("-0.", "-.", 1))
    return labels


def _estimate(value: Mapping[str, Any] | None) -> float | None:
    if not value:
        return None
    estimate = value.get("estimate")
    return None if estimate is None else float(estimate)


def _axis_lo(spec: PanelSpec) -> float:
    if spec.lo is not None:
        return spec.lo
    estimates = [e for e in (_estimate(v) for v in spec.values) if e is not None]
    return -1.0 if any(e < 0 for e in estimates) else 0.0


def _ticks(lo: float, hi: float, left: float, right: float) -> list[Tick]:
    step = 0.5 if hi - lo > 1 else 0.25
    ticks, value = [], lo
    while value <= hi + 1e-9:
        v = round(value, 6)
        ticks.append(Tick(x_of(v, lo, hi, left, right), v, _tick_label(v)))
        value += step
    return ticks


def forest_plot(labels: Sequence[str], panels: Sequence[PanelSpec], *,
                titles: Sequence[str] | None = None,
                width: float = WIDTH, label_width: float = LABEL_WIDTH) -> ForestPlot:
    """Lay out a forest plot of ``labels`` (one row each) over the given panels.

    Every panel's ``values`` has one entry per label. Values whose estimate is None are
    omitted and listed in ``notes`` with their reason. Labels longer than
    ``LABEL_MAX_CHARS`` are shortened; ``titles`` (default: the labels) are the full names
    used in tooltips and notes.
    """
    if not panels:
        raise ValueError("a forest plot needs at least one panel")
    titles = list(labels) if titles is None else list(titles)
    if len(titles) != len(labels):
        raise ValueError(f"{len(titles)} titles for {len(labels)} rows")
    for spec in panels:
        if len(spec.values) != len(labels):
            raise ValueError(f"panel '{spec.title}' has {len(spec.values)} values for {len(labels)} rows")
    rows = [Row(shorten(label), str(title), TOP + ROW_HEIGHT * i + ROW_HEIGHT / 2)
            for i, (label, title) in enumerate(zip(labels, titles, strict=True))]
    axis_y = TOP + ROW_HEIGHT * len(labels) + AXIS_GAP
    panel_width = (width - label_width - RIGHT_MARGIN - PANEL_GAP * (len(panels) - 1)) / len(panels)
    built, notes = [], []
    for p, spec in enumerate(panels):
        left = label_width + p * (panel_width + PANEL_GAP)
        right = left + panel_width
        lo, hi = _axis_lo(spec), spec.hi
        symbol = spec.symbol or spec.title
        marks, omitted = [], []
        for i, (row, value) in enumerate(zip(rows, spec.values, strict=True)):
            estimate = _estimate(value)
            if estimate is None:
                reason = (value or {}).get("reason") or "no data"
                omitted.append(Omission(i, row.y, left + 4, row.full_label, reason))
                notes.append(f"{symbol}, {row.full_label}: not estimable ({reason})")
                continue
            point, _ = clip(estimate, lo, hi)
            ci_low, ci_high = value.get("ci_low"), value.get("ci_high")
            x_low = x_high = None
            clipped_low = clipped_high = False
            if ci_low is not None and ci_high is not None:
                low, clipped_low = clip(float(ci_low), lo, hi)
                high, clipped_high = clip(float(ci_high), lo, hi)
                x_low, x_high = x_of(low, lo, hi, left, right), x_of(high, lo, hi, left, right)
            interval = f" [{number(ci_low)}, {number(ci_high)}]" if x_low is not None else ", no interval"
            marks.append(Mark(
                row=i, y=row.y, cx=x_of(point, lo, hi, left, right), x_low=x_low, x_high=x_high,
                clipped_low=clipped_low, clipped_high=clipped_high, estimate=estimate,
                ci_low=None if ci_low is None else float(ci_low),
                ci_high=None if ci_high is None else float(ci_high),
                text=f"{row.full_label}, {symbol} {number(estimate)}{interval}",
            ))
        thresholds: list[Tick] = []
        shown = [t for t in sorted(spec.thresholds) if lo <= t <= hi]
        for t, text in zip(shown, _threshold_labels(shown), strict=True):
            x = x_of(t, lo, hi, left, right)
            crowded = bool(thresholds) and x - thresholds[-1].x < LABEL_SPACING
            level = (1 - thresholds[-1].level) if crowded else 0
            thresholds.append(Tick(x, t, text, level))
        built.append(Panel(
            title=spec.title, symbol=symbol, left=round(left, 2), right=round(right, 2), lo=lo, hi=hi,
            ticks=_ticks(lo, hi, left, right), thresholds=thresholds, marks=marks, omitted=omitted,
            zero=x_of(0.0, lo, hi, left, right) if lo < 0 < hi else None,
        ))
    return ForestPlot(width=width, height=axis_y + BOTTOM, label_width=label_width, top=TOP,
                      axis_y=axis_y, rows=rows, panels=built, notes=notes)
