"""The study's reliability report: utterance codes, session tallies and item ratings.

Conventions (also in the README and on the report page):

* Only submitted assignments of sessions with two or more of them count; gold-standard
  sessions are left out (they measure training), and so are consensus codings (they are not
  independent).
* Codes are nominal; an utterance a rater left uncoded is a missing rating for that rater.
* Item ratings are ordinal (1–7); N/A is a missing rating. Item means and the session tallies
  of each code are interval.
* Raters usually differ from session to session. Statistics for "any raters" (percent
  agreement, Krippendorff's alpha, Fleiss' kappa, Gwet's AC1) use the actual raters. ICCs and
  two-rater kappas need the same raters on every unit: when they are not, the report uses rater
  *slots* (the first, second … assignment of each session) and says so, and ICC(1) is the
  form to cite (Shrout & Fleiss 1979, case 1). Cohen's kappa per actual rater pair is listed
  separately.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from ..extensions import db
from ..models import Study, TherapySession, User
from ..stats.reliability import Estimate, cohen_kappa, icc, irr_summary, krippendorff_alpha
from .assignments import required_ratings
from .double_coding import gold_session_ids
from .frames import code_frame, rating_frame
from .schemes import as_scheme

FORMAT_VERSION = 1


def _estimate_json(e: Estimate) -> dict[str, Any]:
    d: dict[str, Any] = {"estimate": e.estimate, "ci_low": e.ci_low, "ci_high": e.ci_high}
    if e.estimate is None:
        d["reason"] = e.reason
    elif e.ci_low is None and e.reason:
        d["ci_reason"] = e.reason
    return d


def _with_bands(statistics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add the named interpretation band to every statistic that has one."""
    from ..stats.bands import band_for

    for name, d in statistics.items():
        scale_band = band_for(name, d.get("estimate"))
        if scale_band is not None and scale_band[1] is not None:
            d["scale"], d["band"] = scale_band
    return statistics


def _summary(frame: pd.DataFrame, unit: str, rater: str, value: str, level: str,
             n_boot: int, seed: int) -> dict[str, Any]:
    result = irr_summary(frame, unit, rater, value, level=level, n_boot=n_boot, seed=seed)
    _with_bands(result["statistics"])
    return result


def _slots(frame: pd.DataFrame, unit: str) -> pd.Series:
    """1, 2, … for the first, second … assignment of each unit (rater slots)."""
    return frame.groupby(unit, sort=False)["assignment_id"].rank(method="dense").astype(int)


def _crossed(frame: pd.DataFrame, unit: str) -> bool:
    """True if every unit was rated by the same set of raters."""
    if frame.empty:
        return True
    sets = frame.groupby(unit, sort=False)["rater_id"].agg(frozenset)
    return sets.nunique() == 1


def _rater_codes(rater_ids) -> dict[int, str]:
    """Rater pseudonyms used in the report (``R<id>``); names only on the page."""
    return {int(r): f"R{int(r)}" for r in rater_ids}


# ----------------------------------------------------------------------------- codes


def _coincidences(frame: pd.DataFrame, codes: list[str]) -> list[list[float]]:
    """Krippendorff's coincidence matrix: pairs of codes given to one utterance (symmetric).

    Each utterance coded by m raters contributes its m(m-1) ordered pairs of codes weighted
    1/(m-1), so the matrix total is the number of pairable codes.
    """
    if frame.empty:
        return [[0.0] * len(codes) for _ in codes]
    unit_idx, _ = pd.factorize(frame["utterance_id"])
    code_idx = pd.Categorical(frame["code"].astype(str), categories=codes).codes
    ok = code_idx >= 0
    k = len(codes)
    counts = np.bincount(unit_idx[ok] * k + code_idx[ok], minlength=(unit_idx.max() + 1) * k)
    counts = counts.reshape(-1, k).astype(np.float64)
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    scaled = counts / (m - 1)[:, None]
    o = scaled.T @ counts - np.diag(scaled.sum(axis=0))
    return [[round(float(v), 6) for v in row] for row in o]


def _pairs(frame: pd.DataFrame, unit: str, value: str, weights=None) -> list[dict[str, Any]]:
    """Cohen's kappa and percent agreement for every pair of actual raters sharing units."""
    if frame.empty:
        return []
    by_rater = {r: g.set_index(unit)[value] for r, g in frame.groupby("rater_id", sort=True)}
    rows = []
    for a, b in combinations(sorted(by_rater), 2):
        joined = pd.concat([by_rater[a], by_rater[b]], axis=1, join="inner", keys=["a", "b"]).dropna()
        if joined.empty:
            continue
        long = pd.DataFrame({
            "unit": np.concatenate([joined.index.to_numpy()] * 2),
            "rater": np.repeat([0, 1], len(joined)),
            "value": np.concatenate([joined["a"].to_numpy(), joined["b"].to_numpy()]),
        })
        if weights is None:
            long["value"] = long["value"].astype(str)
        stat = cohen_kappa(long, "unit", "rater", "value", weights=weights)
        row: dict[str, Any] = {
            "raters": [f"R{int(a)}", f"R{int(b)}"],
            "n_units": int(len(joined)),
            "percent_agreement": float((joined["a"] == joined["b"]).mean()),
            "statistics": _with_bands({stat.name: _estimate_json(stat)}),
        }
        if weights is not None:
            row["within_one"] = float(((joined["a"] - joined["b"]).abs() <= 1).mean())
        rows.append(row)
    return rows


def _tally_icc(frame: pd.DataFrame, code: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Session-level reliability of how often each rater used ``code`` (counts per session)."""
    per = frame.assign(hit=(frame["code"].astype(str) == code).astype(int))
    tally = per.groupby(["session_id", "assignment_id", "rater_id"], observed=True)["hit"].sum().reset_index()
    if tally.empty:
        return {"n_units": 0, "statistics": {}}
    crossed = _crossed(tally, "session_id")
    tally["slot"] = _slots(tally, "session_id")
    rater = "rater_id" if crossed else "slot"
    stats = {name: _estimate_json(e) for name, e in icc(tally, "session_id", rater, "hit").items()}
    alpha = krippendorff_alpha(tally, "session_id", rater, "hit", level="interval", n_boot=n_boot, seed=seed)
    stats["krippendorff_alpha"] = _estimate_json(alpha)
    return {
        "n_units": int(tally["session_id"].nunique()),
        "rater_design": "crossed" if crossed else "slots",
        "mean_per_session": float(tally["hit"].mean()),
        "statistics": _with_bands(stats),
    }


def _code_sets(study: Study, codes: pd.DataFrame, n_boot: int, seed: int) -> list[dict[str, Any]]:
    scheme = as_scheme(study.scheme_version)
    result = []
    for code_set in scheme.code_sets:
        frame = codes[codes["code_set"] == code_set.id]
        frame = frame.assign(code=frame["code"].astype(str))
        labels = [c.id for c in code_set.codes]
        entry: dict[str, Any] = {
            "id": code_set.id,
            "title": code_set.title,
            "roles": list(code_set.applies_to_roles),
            "n_sessions": int(frame["session_id"].nunique()),
            "overall": _summary(frame, "utterance_id", "rater_id", "code", "nominal", n_boot, seed),
            "codes": [],
            "confusion": {"labels": labels, "matrix": _coincidences(frame, labels)},
            "pairs": _pairs(frame, "utterance_id", "code"),
        }
        n_ratings = len(frame)
        for code in code_set.codes:
            binary = frame.assign(hit=(frame["code"] == code.id).astype(int))
            prevalence = float(binary["hit"].mean()) if n_ratings else None
            entry["codes"].append({
                "code": code.id,
                "label": code.label,
                "prevalence": prevalence,
                "utterance": _summary(binary, "utterance_id", "rater_id", "hit", "nominal", n_boot, seed),
                "session_tally": _tally_icc(frame, code.id, n_boot, seed),
            })
        result.append(entry)
    return result


# ----------------------------------------------------------------------------- ratings


def _rating_entry(frame: pd.DataFrame, level: str, n_boot: int, seed: int) -> dict[str, Any]:
    # The design and the slots follow who rated each session, N/A included: dropping N/A first
    # would turn a crossed design into slots (pairing different raters) after one N/A.
    crossed = _crossed(frame, "session_id")
    frame = frame.assign(slot=_slots(frame, "session_id")) if not frame.empty else frame.assign(slot=[])
    frame = frame[frame["value"].notna()]
    rater = "rater_id" if crossed else "slot"
    summary = _summary(frame, "session_id", rater, "value", level, n_boot, seed)
    summary["rater_design"] = "crossed" if crossed else "slots"
    return summary


def _ratings(study: Study, ratings: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    scheme = as_scheme(study.scheme_version)
    instruments = {i.id: i for i in scheme.instruments}
    items, means, pairs = [], [], []
    for instrument_id, item_id, dimension in required_ratings(study):
        instrument = instruments[instrument_id]
        item = next((i for i in instrument.items if i.id == item_id), None)
        overall = next((o for o in instrument.overall if o.id == item_id), None)
        frame = ratings[(ratings["instrument"] == instrument_id) & (ratings["item"] == item_id)
                        & (ratings["dimension"] == dimension)]
        entry = _rating_entry(frame, "ordinal", n_boot, seed)
        entry.update({
            "instrument": instrument_id, "item": item_id, "dimension": dimension,
            "label": f"{item.number}. {item.name}" if item else overall.label,
            "kind": "item" if item else "overall",
            "not_applicable": int(frame["not_applicable"].sum()),
        })
        items.append(entry)
    for instrument in scheme.instruments:
        if instrument.target != "session":
            continue
        item_ids = {i.id for i in instrument.items}
        for dim in instrument.dimensions:
            frame = ratings[(ratings["instrument"] == instrument.id) & ratings["item"].isin(item_ids)
                            & (ratings["dimension"] == dim.id) & ratings["value"].notna()]
            if frame.empty:
                continue
            mean = frame.groupby(["session_id", "assignment_id", "rater_id"])["value"].mean().reset_index()
            entry = _rating_entry(mean.assign(not_applicable=False), "interval", n_boot, seed)
            entry.update({"instrument": instrument.id, "dimension": dim.id,
                          "label": f"Mean {dim.label.lower()} over items"})
            means.append(entry)
            pooled = frame.assign(unit=frame["session_id"].astype(str) + ":" + frame["item"].astype(str))
            for row in _pairs(pooled, "unit", "value", weights="quadratic"):
                row.update({"instrument": instrument.id, "dimension": dim.id})
                pairs.append(row)
    return {"items": items, "means": means, "pairs": pairs}


# ----------------------------------------------------------------------------- report


def reliability_report(study: Study, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The whole report as JSON-serialisable data (no NaN, no infinity)."""
    codes = code_frame(study, min_raters=2)
    ratings = rating_frame(study, min_raters=2)
    double_coded = set(codes["session_id"].unique()) | set(ratings["session_id"].unique())
    rater_ids = sorted(set(codes["rater_id"].unique()) | set(ratings["rater_id"].unique()))
    total = db.session.scalar(
        select(func.count()).select_from(TherapySession).where(TherapySession.study_id == study.id))
    version = study.scheme_version
    return {
        "format": FORMAT_VERSION,
        "study": study.name,
        "scheme": f"{version.key}@{version.revision}",
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "conventions": {
            "counted": "submitted assignments of sessions with two or more; gold sessions and "
                       "consensus codings excluded",
            "missing": "uncoded utterances and N/A ratings are missing values",
            "slots": "when raters differ across units, ICCs and two-rater kappas use rater slots "
                     "(first, second … assignment); cite ICC(1) then",
            "ci": "95% intervals: F-based for ICC, asymptotic for kappas, percentile bootstrap "
                  f"over units ({n_boot} replicates, seed {seed}) for agreement, alpha and AC1",
        },
        "sessions": {
            "total": int(total or 0),
            "double_coded": len(double_coded),
            "gold_excluded": len(gold_session_ids(study)),
        },
        "raters": [_rater_codes(rater_ids)[r] for r in rater_ids],
        "code_sets": _code_sets(study, codes, n_boot, seed),
        "ratings": _ratings(study, ratings, n_boot, seed),
    }


def rater_names(study: Study, report: dict[str, Any]) -> dict[str, str]:
    """Rater code → name, for the page (coordinators and analysts of the study only)."""
    ids = [int(code[1:]) for code in report["raters"]]
    return {f"R{u.id}": u.name for u in db.session.scalars(select(User).where(User.id.in_(ids)))}
