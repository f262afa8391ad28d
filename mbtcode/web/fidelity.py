"""Fidelity dashboards: the study's scores, each therapist over time (coordinators, analysts).

The dashboard shows the study means per dimension, every therapist's mean, trend and drift
flags (flagged therapists first), team and site means, the spectrum level profile and the
mode-contingent responsiveness, and which source each session's scores come from. The
therapist page shows one therapist's scores session by session against the cut-off. Every
figure comes from ``services/fidelity.py`` (which reads only submitted work and final
consensuses); this module only turns frames into rows and charts. Raters never reach these
pages (403), non-members get a 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from flask import Blueprint, abort
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db
from ..io.schemes import Scheme
from ..models import Participant, SessionParticipant, Study
from ..services import fidelity as fidelity_service
from ..services.permissions import can
from ..stats import fidelity as fs
from . import fidelity_charts as fc
from .access import load_study_or_404, require
from .rendering import render

bp = Blueprint("fidelity", __name__, url_prefix="/studies/<int:study_id>/fidelity")

#: How the page names each counting source, and what it means (docs/fidelity.md).
SOURCE_LABELS = {
    "consensus": ("Adjudicated consensus", "a final consensus of the raters' codings"),
    "gold": ("Gold standard", "the expert's coding of a gold-standard session"),
    "single_rater": ("Single rater", "the one submitted coding"),
    "mean_of_raters": ("Mean of raters", "several submitted codings and no consensus: the mean of "
                                         "the raters' values"),
    "none": ("Not scored", "no submitted coding yet"),
}
FLAG_LABELS = {"below_cutoff": "below cut-off", "trending_down": "trending down"}
OUTSIDE_LABEL = "Outside the levels (non-MBT)"
#: Fill colours of the spectrum levels (light to dark with intensity) and of non-MBT moves.
LEVEL_COLOURS = ("#c6dbef", "#6baed6", "#2171b5", "#08306b", "#1f3b57", "#0b1f33")
OUTSIDE_COLOUR = "#bdbdbd"
#: Recommended, neither, iatrogenic.
RESPONSE_COLOURS = ("#1b6e3a", "#d9dde2", "#a4161a")
RESPONSE_LEGEND = ("Recommended", "Neither", "Iatrogenic")


def nav(study: Study) -> list[tuple[str, str]]:
    """(endpoint, title) of the fidelity pages the current user may open."""
    if not can(current_user, "view_fidelity", study):
        return []
    return [("fidelity.dashboard", "Fidelity dashboard"), ("quality.index", "Program quality audits")]


# ----------------------------------------------------------------------------- formatting


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return "—"
    return f"{float(value):.{digits}f}"


def _signed(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:+.{digits}f}".replace("-", "−")


def _pct(value: float | None) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.0f}%"


def _count(value: float) -> str:
    """A (weighted) count: whole numbers as such, means over raters to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"num": _num, "dim_labels": _dim_labels, "signed": _signed, "pct": _pct, "count": _count,
            "SOURCE_LABELS": SOURCE_LABELS, "FLAG_LABELS": FLAG_LABELS}


def _value(x: Any) -> float | None:
    """A cell as a float, or None for NaN/NA/None."""
    if x is None or x is pd.NA:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _flag(x: Any) -> bool | None:
    return None if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)) else bool(x)


def _date(x: Any) -> date | None:
    if x is None or x is pd.NA or x is pd.NaT or (isinstance(x, float) and np.isnan(x)):
        return None
    return x


# ----------------------------------------------------------------------------- view models


@dataclass(frozen=True)
class Dim:
    id: str
    label: str


@dataclass
class TherapistRow:
    code: str
    #: Scored sessions, and when the last one was.
    n_sessions: int
    last_date: date | None
    summary: fidelity_service.TherapistSummary | None
    #: All the therapist's sessions in the study, scored or not.
    n_linked: int = 0

    @property
    def flagged(self) -> bool:
        return self.summary is not None and self.summary.flagged

    @property
    def flags(self) -> list[tuple[str, fs.DriftFlag]]:
        """(dimension, flag) of every drift flag."""
        if self.summary is None:
            return []
        return [(dim, f) for dim, flags in self.summary.flags.items() for f in flags]


@dataclass
class BarsView:
    """A stacked bar chart and the rows of its table (the same figures as text)."""

    chart: Any
    chart_id: str
    title: str
    legend: list[str]
    #: (label, [share per legend entry], total n, extra cells)
    rows: list[tuple[str, list[float], float, list[str]]] = field(default_factory=list)


def _dim_labels(dims: list[Dim]) -> dict[str, str]:
    return {d.id: d.label for d in dims}


def _dimensions(data: fidelity_service.FidelityData) -> list[Dim]:
    return [Dim(d.id, d.label) for d in data.instrument.dimensions] if data.instrument else []


def _study_therapists(study: Study) -> list[str]:
    return list(db.session.scalars(
        select(Participant.code).where(Participant.study_id == study.id, Participant.kind == "therapist")
        .order_by(Participant.code)))


def _therapist_rows(study: Study, data: fidelity_service.FidelityData) -> list[TherapistRow]:
    """Every therapist of the study: scored ones with their summary (flagged first), then
    therapists without a scored session."""
    summaries = {s.therapist: s for s in fidelity_service.therapist_summaries(data)}
    linked = data.therapists.groupby("therapist_code")["session_id"].nunique().to_dict() \
        if len(data.therapists) else {}
    rows = []
    for code in sorted(set(_study_therapists(study)) | set(summaries)):
        s = summaries.get(code)
        rows.append(TherapistRow(code, s.n_sessions if s else 0, s.last_date if s else None, s,
                                 int(linked.get(code, 0))))
    rows.sort(key=lambda r: (not r.flagged, r.summary is None, r.code))
    return rows


def _group_rows(data: fidelity_service.FidelityData, by: str, dims: list[Dim]) -> list[dict]:
    """Per value of ``by``: ``{"key", dim: {"n", "mean", "low", "high"}}`` for the table."""
    if by not in data.sessions or not data.sessions[by].notna().any():
        return []
    frame = fidelity_service.group_means(data, by)
    rows: dict[str, dict] = {}
    for rec in frame.to_dict("records"):
        row = rows.setdefault(str(rec[by]), {"key": str(rec[by])})
        row[rec["dimension"]] = {"n": int(rec["n"]), "mean": _value(rec["mean"]),
                                 "low": _value(rec["ci_low"]), "high": _value(rec["ci_high"])}
    return list(rows.values())


def _sources(data: fidelity_service.FidelityData) -> list[tuple[str, int]]:
    counts = data.sessions["source"].value_counts().to_dict()
    return [(s, int(counts.get(s, 0))) for s in (*fs.SOURCES, "none")]


def _levelled_sets(scheme: Scheme):
    return [cs for cs in scheme.code_sets if cs.levels]


def level_bars(scheme: Scheme, levels: pd.DataFrame, key: str, keys: list[tuple[str, str]], *,
               chart_id: str, title: str) -> list[BarsView]:
    """One stacked bar chart per levelled code set: a bar per (key value, label) in ``keys``."""
    views = []
    for cs in _levelled_sets(scheme):
        ids = [lv.id for lv in cs.levels] + [fs.OUTSIDE_LEVELS]
        legend = [f"{lv.id} {lv.label}" if lv.label != lv.id else lv.label for lv in cs.levels] + [OUTSIDE_LABEL]
        colours = [LEVEL_COLOURS[i % len(LEVEL_COLOURS)] for i in range(len(cs.levels))] + [OUTSIDE_COLOUR]
        sub = levels[levels["code_set"].astype(str) == cs.id] if len(levels) else levels
        bars, rows = [], []
        for value, label in keys:
            mine = sub[sub[key].astype(str) == value] if len(sub) else sub
            if not len(mine):
                continue
            counts = {str(r["level"]): float(r["count"]) for r in mine.to_dict("records")}
            total = sum(counts.values())
            shares = [counts.get(i, 0.0) / total if total else 0.0 for i in ids]
            bars.append(fc.Bar(label, [fc.Segment(legend[k], shares[k], counts.get(ids[k], 0.0))
                                       for k in range(len(ids))], note=f"n = {_count(total)}"))
            rows.append((label, shares, total, []))
        if not bars:
            continue
        cid = f"{chart_id}-{len(views) + 1}"
        chart = fc.stacked_bars(
            bars, legend, chart_id=cid, title=f"{title}: {cs.title}",
            description=(f"One bar per row: the share of the coded {', '.join(cs.applies_to_roles)} turns "
                         f"at each level of {cs.title}; n is the number of coded turns."),
            described_by=f"{cid}-table", colours=colours)
        views.append(BarsView(chart, cid, cs.title, legend, rows))
    return views


def responsiveness_bars(scheme: Scheme, resp: pd.DataFrame, *, chart_id: str, title: str) -> BarsView | None:
    """Per nonmentalizing mode (and all together): shares recommended / neither / iatrogenic."""
    if resp is None or not len(resp):
        return None
    modes = [c for cs in scheme.code_sets for c in cs.codes if c.nonmentalizing and c.responses_code_set]
    order = [(c.id, c.label, c) for c in modes] + [("all", "All nonmentalizing modes", None)]
    by_mode = {str(r["mode"]): r for r in resp.to_dict("records")}
    bars, rows = [], []
    for mode, label, code in order:
        r = by_mode.get(mode)
        if r is None or not r["n_responses"]:
            continue
        n = float(r["n_responses"])
        rec, iat = float(r["n_recommended"]) / n, float(r["n_iatrogenic"]) / n
        neither = max(0.0, 1 - rec - iat)
        shares = [rec, neither, iat]
        counts = [float(r["n_recommended"]), n - float(r["n_recommended"]) - float(r["n_iatrogenic"]),
                  float(r["n_iatrogenic"])]
        bars.append(fc.Bar(label, [fc.Segment(RESPONSE_LEGEND[k], shares[k], counts[k]) for k in range(3)],
                           note=f"n = {_count(n)}"))
        extra = ([", ".join(code.recommended) or "—", ", ".join(code.iatrogenic) or "—"]
                 if code is not None else ["", ""])
        rows.append((label, shares, n, extra))
    if not bars:
        return None
    chart = fc.stacked_bars(
        bars, list(RESPONSE_LEGEND), chart_id=chart_id, title=title,
        description=("One bar per nonmentalizing patient mode: of the coded therapist answers to "
                     "patient turns in that mode, the share the scheme marks recommended, "
                     "iatrogenic, or neither; n is the number of answers."),
        described_by=f"{chart_id}-table", colours=RESPONSE_COLOURS)
    return BarsView(chart, chart_id, title, list(RESPONSE_LEGEND), rows)


# ----------------------------------------------------------------------------- dashboard


@bp.get("")
@login_required
def dashboard(study_id: int):
    """The study's fidelity: means, therapists (flagged first), groups, profiles, sources."""
    study = load_study_or_404(study_id)
    require("view_fidelity", study)
    data = fidelity_service.load(study)
    dims = _dimensions(data)
    therapists = _therapist_rows(study, data)
    context: dict[str, Any] = {
        "study": study, "nav": nav(study), "current": "fidelity.dashboard",
        "instrument": data.instrument, "dims": dims, "therapists": therapists,
        "n_sessions": len(data.sessions), "n_scored": int((data.sessions["source"] != "none").sum()),
        "sources": _sources(data), "study_means": fidelity_service.study_means(data),
        "groups": [(by, title, _group_rows(data, by, dims)) for by, title in
                   (("team", "Team"), ("site", "Site"))],
        "n_flagged": sum(1 for t in therapists if t.flagged),
    }
    context["groups"] = [g for g in context["groups"] if g[2]]
    if len(data.codes):
        overall = fidelity_service.profile(data, None)
        per_therapist = fidelity_service.profile(data, "therapist_code")
        levels = pd.concat([
            overall.levels.rename(columns={"all": "key"}).assign(key="__study__"),
            per_therapist.levels.rename(columns={"therapist_code": "key"}),
        ], ignore_index=True)
        keys = [("__study__", "Whole study")] + [(t.code, t.code) for t in therapists]
        context["level_views"] = level_bars(data.scheme, levels, "key", keys,
                                            chart_id="levels", title="Spectrum level profile")
        context["responsiveness"] = responsiveness_bars(
            data.scheme, overall.responsiveness, chart_id="responsiveness",
            title="Mode-contingent responsiveness, whole study")
    else:
        context["level_views"], context["responsiveness"] = [], None
    return render("fidelity/dashboard.html", **context)


# ----------------------------------------------------------------------------- therapist


def _therapist_session_ids(study: Study, code: str) -> list[int] | None:
    """Ids of the therapist's sessions, or None when the study has no such therapist."""
    participant = db.session.scalar(select(Participant.id).where(
        Participant.study_id == study.id, Participant.kind == "therapist", Participant.code == code))
    if participant is None:
        return None
    return list(db.session.scalars(
        select(SessionParticipant.session_id).where(SessionParticipant.participant_id == participant)))


def _session_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sessions in the order ``ordered_scores`` uses: date, session number, label."""
    frame = frame.assign(_date=pd.to_datetime(frame["session_date"]))
    return frame.sort_values(["_date", "session_number", "session"], kind="stable",
                             na_position="last").drop(columns="_date")


def score_charts(rows: pd.DataFrame, dims: list[Dim], instrument, summary, *, chart_id: str,
                 who: str) -> list[tuple[Dim, Any, list[dict]]]:
    """Per dimension: the chart of the session means in order, and its points for the table."""
    out = []
    for dim in dims:
        column = f"{dim.id}_mean"
        scored = rows[rows[column].notna()] if column in rows else rows.iloc[0:0]
        points, ticks, table = [], [], []
        for order, rec in enumerate(scored.to_dict("records"), start=1):
            d = _date(rec["session_date"])
            when = d.isoformat() if d else f"#{order}"
            y = float(rec[column])
            points.append(fc.Point(order, y, f"{rec['session']}, {d.isoformat() if d else 'no date'}"))
            ticks.append((order, when))
            table.append({"order": order, "date": d, "session": rec["session"], "value": y,
                          "below": instrument.cutoff is not None and y < instrument.cutoff})
        trend_line = None
        t = summary.trends.get(dim.id) if summary else None
        if t is not None and t.slope is not None and points:
            xs = np.arange(1, len(points) + 1, dtype=float)
            ys = np.array([p.y for p in points])
            intercept = float(ys.mean() - t.slope * xs.mean())
            trend_line = fc.Trend(t.slope, intercept, f"trend {_signed(t.slope)} per session "
                                                      f"(95% CI {_signed(t.low)} to {_signed(t.high)})")
        cid = f"{chart_id}-{dim.id}"
        cutoff_text = (f" The dashed line is the cut-off {instrument.cutoff:g}; triangles pointing down "
                       "mark sessions below it." if instrument.cutoff is not None else "")
        chart = fc.score_chart(
            [fc.Series(dim.label, points)], chart_id=cid,
            title=f"{dim.label} of {who} per session",
            description=(f"Mean {dim.label.lower()} item rating of each scored session in time order, "
                         f"on the scale {instrument.scale_min}–{instrument.scale_max}.{cutoff_text}"
                         + (" The dotted line is the least-squares trend." if trend_line else "")),
            scale_min=instrument.scale_min, scale_max=instrument.scale_max, cutoff=instrument.cutoff,
            x_ticks=ticks, x_title="scored sessions in time order", trend=trend_line,
            described_by=f"{cid}-table")
        out.append((dim, chart, table))
    return out


@bp.get("/therapists/<path:code>")
@login_required
def therapist(study_id: int, code: str):
    """One therapist's scores session by session, against the cut-off, with drift flags."""
    study = load_study_or_404(study_id)
    require("view_fidelity", study)
    session_ids = _therapist_session_ids(study, code)
    if session_ids is None:
        abort(404)
    data = fidelity_service.load(study, session_ids=session_ids)
    dims = _dimensions(data)
    summary = next((s for s in fidelity_service.therapist_summaries(data) if s.therapist == code), None)
    sessions = _session_order(data.scores) if len(data.scores) else data.scores
    scored = fidelity_service.ordered_scores(data)
    scored = scored[scored["therapist_code"] == code] if len(scored) else scored
    context: dict[str, Any] = {
        "study": study, "nav": nav(study), "current": None, "code": code,
        "instrument": data.instrument, "dims": dims, "summary": summary,
        "sessions": sessions.to_dict("records") if len(sessions) else [],
        "overall": list(data.instrument.overall) if data.instrument else [],
        "charts": score_charts(scored, dims, data.instrument, summary, chart_id="scores", who=code)
        if data.instrument is not None else [],
        "can_read": can(current_user, "read_transcripts", study),
        "level_views": [], "responsiveness": None,
        "value": _value, "flag": _flag, "as_date": _date,
        "flag_pairs": lambda dim, flags: [(dim, f) for f in flags],
    }
    if len(data.codes):
        prof = fidelity_service.profile(data, "therapist_code")
        mine = prof.levels[prof.levels["therapist_code"] == code] if len(prof.levels) else prof.levels
        context["level_views"] = level_bars(data.scheme, mine, "therapist_code", [(code, code)],
                                            chart_id="levels", title=f"Spectrum level profile of {code}")
        resp = prof.responsiveness
        resp = resp[resp["therapist_code"] == code] if len(resp) else resp
        context["responsiveness"] = responsiveness_bars(
            data.scheme, resp, chart_id="responsiveness", title=f"Mode-contingent responsiveness of {code}")
    return render("fidelity/therapist.html", **context)
