"""The study's reliability report: utterance codes, session tallies and item ratings.

Conventions (also in the README and on the report page):

* Only submitted assignments of sessions with two or more of them count; gold-standard
  sessions are left out (they measure training), and so are consensus codings (they are not
  independent).
* Codes are nominal; an utterance a rater left uncoded is a missing rating for that rater.
* Item ratings are ordinal (1–7); N/A is a missing rating. Item means and the session tallies
  of each code are interval, and continuous: they get the ICCs and Krippendorff's alpha
  (interval) only, not percent agreement, kappas or AC1 (which would count every distinct
  value as a category).
* Raters usually differ from session to session. Statistics for "any raters" (percent
  agreement, Krippendorff's alpha, Fleiss' kappa, Gwet's AC1) use the actual raters. ICCs and
  two-rater kappas need the same raters on every unit: when they are not, the report uses rater
  *slots* (the first, second … assignment of each session) and says so, and ICC(1) is the
  form to cite (Shrout & Fleiss 1979, case 1). Cohen's kappa per actual rater pair is listed
  separately.

How it is computed. A large study (``bench/reliability.py``: a million double-coded
utterances, 10,000 double-rated sessions, 20 raters) must give its report in seconds, so the
work is done on integer arrays, once, and shared:

* the frames (``frames.py``) hold integer ids and categorical codes; each code set is encoded
  once into integer arrays (utterance, assignment, rater, code number) and everything about it
  is derived from those: no string comparison over a million rows, no copy of the frame per
  code;
* the per-code "this code vs the rest" summaries come from one
  :func:`~mbtcode.stats.reliability.irr_summary_one_vs_rest` (one validation and one set of
  rating patterns for all codes);
* the session tallies of all codes come from one assignments × codes ``bincount``, and the
  rater design (crossed or slots) is decided once per code set;
* every pair of ratings of a unit is listed once (:func:`_pair_expansion`); the coincidence
  matrix and the tables of every pair of actual raters are ``bincount``\\ s over those pairs,
  and each pair's kappa comes from its table (no join per pair of raters);
* crossed designs and rater slots come from sorting integer keys (not from a set of raters
  per unit); ratings are split by (instrument, item, dimension) once, with the designs and
  slots of every item from one sort; the pooled unit "session × item" is an integer.

The statistics are exactly those of the functions in :mod:`mbtcode.stats.reliability`
applied to the same data (the tests check them against independent computations).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from ..extensions import db
from ..models import Study, TherapySession, User

# _kappa_table, _wald and _none: the kappa of one K × K table with its Wald interval, as
# cohen_kappa computes it, for the rater-pair tables (one bincount, not one cohen_kappa call
# per pair). Private to the stats module; to be replaced by a public helper
# (kappa_from_table) when it has one.
from ..stats.reliability import (
    Estimate,
    _kappa_table,
    _none,
    _wald,
    icc,
    irr_summary,
    irr_summary_one_vs_rest,
    krippendorff_alpha,
)
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


def _rater_codes(rater_ids) -> dict[int, str]:
    """Rater pseudonyms used in the report (``R<id>``); names only on the page."""
    return {int(r): f"R{int(r)}" for r in rater_ids}


# ----------------------------------------------------------------------------- designs


def _dense(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids → (0 … n−1 in sorted order, the n distinct ids sorted).

    One bincount when the ids are compact (database ids), else a hash factorization.
    """
    arr = np.asarray(arr)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64), arr[:0]
    lo, hi = int(arr.min()), int(arr.max())
    if arr.dtype.kind in "iu" and hi - lo <= 2 * len(arr) + 1024:
        shifted = arr - lo
        present = np.bincount(shifted, minlength=hi - lo + 1) > 0
        lut = np.cumsum(present) - 1
        return lut[shifted], (np.flatnonzero(present) + lo).astype(arr.dtype)
    codes, uniques = pd.factorize(arr, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _designs(group: np.ndarray, unit: np.ndarray, rater: np.ndarray,
             assignment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: is the design crossed; per row: its rater slot. One sort for everything.

    Groups are numbered 0 … n−1 (the result is indexed by them). A group is crossed when
    every unit has every rater that occurs in the group (then every unit has the same set of
    raters). The slot of a row is the dense rank of its assignment among the assignments of
    its (group, unit): 1, 2 … for the first, second … assignment. A rater has one assignment
    per session (a unique constraint), so the distinct assignments of a unit are its
    distinct raters.
    """
    if len(group) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    n_g = int(group.max()) + 1
    u, u_ids = _dense(unit)
    r, r_ids = _dense(rater)
    n_u, n_r = len(u_ids), len(r_ids)
    gu = group * n_u + u
    order = np.lexsort((assignment, gu))
    gu_s, a_s = gu[order], assignment[order]
    new_gu = np.r_[True, gu_s[1:] != gu_s[:-1]]
    new_a = new_gu | np.r_[True, a_s[1:] != a_s[:-1]]
    dense = np.cumsum(new_a)
    first = np.flatnonzero(new_gu)
    start = dense[first][np.cumsum(new_gu) - 1]
    slots = np.empty(len(group), dtype=np.int64)
    slots[order] = dense - start + 1
    raters_per_unit = np.add.reduceat(new_a.astype(np.int64), first)  # per (group, unit)
    raters_per_group = (np.bincount(group * n_r + r, minlength=n_g * n_r).reshape(n_g, n_r) > 0).sum(axis=1)
    group_of_unit = gu_s[first] // n_u
    crossed = np.bincount(group_of_unit[raters_per_unit != raters_per_group[group_of_unit]],
                          minlength=n_g) == 0
    return crossed, slots


def _design(frame: pd.DataFrame, unit: str) -> tuple[bool, np.ndarray]:
    """Crossed or not, and the rater slot of every row, for one frame."""
    if frame.empty:
        return True, np.zeros(0, dtype=np.int64)
    crossed, slots = _designs(np.zeros(len(frame), dtype=np.int64), frame[unit].to_numpy(),
                              frame["rater_id"].to_numpy(), frame["assignment_id"].to_numpy())
    return bool(crossed[0]), slots


# ----------------------------------------------------------------------------- pairs of ratings


def _pair_expansion(unit: np.ndarray, rater: np.ndarray, value: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
    """(rater a, rater b, value a, value b, 1/(m−1)) for every pair of ratings of a unit.

    ``unit`` are non-negative integers, ``rater`` numbered 0 … n−1, and ``unit × n + rater``
    fits in 64 bits (database ids do). Only ratings with ``value >= 0`` count;
    ``m`` is the unit's number of such ratings, and rater a < rater b (ratings sorted by
    unit, then rater). Units are grouped by their size, so the loops run over the sizes and
    the positions in a unit, not over units.
    """
    ok = value >= 0
    if not ok.all():
        unit, rater, value = unit[ok], rater[ok], value[ok]
    if len(unit) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e, np.zeros(0)
    n_r = int(rater.max()) + 1
    order = np.argsort(unit * n_r + rater, kind="stable")
    u, r, v = unit[order], rater[order], value[order]
    new_unit = np.empty(len(u), dtype=bool)
    new_unit[0] = True
    np.not_equal(u[1:], u[:-1], out=new_unit[1:])
    starts = np.flatnonzero(new_unit)
    sizes = np.diff(starts, append=len(u))
    parts = []
    for m in np.unique(sizes):
        if m < 2:
            continue
        s = starts[sizes == m]
        for i in range(m):
            for j in range(i + 1, m):
                parts.append((r[s + i], r[s + j], v[s + i], v[s + j],
                              np.full(len(s), 1.0 / (m - 1))))
    if not parts:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e, np.zeros(0)
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _coincidences(pairs: tuple[np.ndarray, ...], k: int,
                  numbers: np.ndarray | None = None) -> list[list[float]]:
    """Krippendorff's coincidence matrix: pairs of codes given to one utterance (symmetric).

    Each utterance coded by m raters contributes its m(m−1) ordered pairs of codes weighted
    1/(m−1), so the matrix total is the number of pairable codes. The pairs' values are code
    numbers 0 … k−1; ``numbers[i]`` is the value of the matrix's i-th code (default: i).
    """
    _ra, _rb, va, vb, w = pairs
    half = np.bincount(va * k + vb, weights=w, minlength=k * k).reshape(k, k)
    o = half + half.T
    if numbers is not None:
        o = o[np.ix_(numbers, numbers)]
    return [[round(float(v), 6) for v in row] for row in o]


def _pair_rows(pairs: tuple[np.ndarray, ...], rater_labels: np.ndarray, categories: np.ndarray,
               weights: str | None, within_one: bool) -> list[dict[str, Any]]:
    """Cohen's kappa and percent agreement for every pair of actual raters sharing units.

    One bincount into (rater pairs that occur) × K × K tables; each pair's kappa is that of
    ``cohen_kappa`` on the units both rated (categories: the values either used there, in
    sorted order for the weights). ``categories`` are the values of the category numbers.
    """
    ra, rb, va, vb, _w = pairs
    if len(ra) == 0:
        return []
    n_r, k = len(rater_labels), len(categories)
    pair_no, pair_keys = _dense(ra * n_r + rb)  # sorted: rater a, then rater b
    tables = np.bincount((pair_no * k + va) * k + vb,
                         minlength=len(pair_keys) * k * k).reshape(-1, k, k)
    name = "cohen_kappa" if weights is None else f"weighted_kappa_{weights}"
    close = np.abs(categories[:, None] - categories[None, :]) <= 1 if within_one else None
    rows = []
    for key, table in zip(pair_keys, tables, strict=True):
        a, b = divmod(int(key), n_r)
        nu = int(table.sum())
        used = (table.sum(axis=0) + table.sum(axis=1)) > 0
        if nu < 2:
            stat = _none(name, "fewer than two units rated by both raters", nu)
        elif used.sum() < 2:
            stat = _none(name, "both raters used a single category: kappa undefined", nu)
        else:
            res = _kappa_table(table[np.ix_(used, used)].astype(float), weights)
            stat = _none(name, res, nu) if isinstance(res, str) else _wald(name, *res, n_units=nu)
        row: dict[str, Any] = {
            "raters": [f"R{int(rater_labels[a])}", f"R{int(rater_labels[b])}"],
            "n_units": nu,
            "percent_agreement": float(np.trace(table) / nu),
            "statistics": _with_bands({stat.name: _estimate_json(stat)}),
        }
        if within_one:
            row["within_one"] = float(table[close].sum() / nu)
        rows.append(row)
    return rows


def _interval_statistics(frame: pd.DataFrame, unit: str, rater: str, value: str, n_boot: int,
                         seed: int) -> dict[str, dict[str, Any]]:
    """The six ICCs and Krippendorff's alpha (interval): the statistics of continuous values."""
    stats = {name: _estimate_json(e) for name, e in icc(frame, unit, rater, value).items()}
    alpha = krippendorff_alpha(frame, unit, rater, value, level="interval", n_boot=n_boot, seed=seed)
    stats["krippendorff_alpha"] = _estimate_json(alpha)
    return _with_bands(stats)


# ----------------------------------------------------------------------------- codes


def _code_numbers(codes: pd.Series, labels: list[str]) -> np.ndarray:
    """Index of each code in ``labels`` (−1: not in the code set), through the categories."""
    if isinstance(codes.dtype, pd.CategoricalDtype):
        lut = pd.Index(labels).get_indexer(codes.cat.categories.astype(str))
        cat = codes.cat.codes.to_numpy()
        return np.where(cat >= 0, lut[cat], -1).astype(np.int64)
    return pd.Index(labels).get_indexer(codes.astype(str)).astype(np.int64)


def _tallies(asg: np.ndarray, asg_ids: np.ndarray, asg_session: np.ndarray,
             asg_rater: np.ndarray, code: np.ndarray, k: int, n_boot: int,
             seed: int) -> list[dict[str, Any]]:
    """Session-level reliability of how often each rater used each code (counts per session).

    ``asg`` numbers each code's assignment (0 … n−1 for ``asg_ids``); one assignments × codes
    count matrix gives every code's tallies, and the design is decided once.
    """
    n_a = len(asg_ids)
    if n_a == 0:
        return [{"n_units": 0, "n_raters": 0, "statistics": {}} for _ in range(k)]
    ok = code >= 0
    counts = np.bincount(asg[ok] * k + code[ok], minlength=n_a * k).reshape(n_a, k)
    order = np.lexsort((asg_ids, asg_session))  # as groupby([session, assignment, rater])
    base = pd.DataFrame({"session_id": asg_session[order], "assignment_id": asg_ids[order],
                         "rater_id": asg_rater[order]})
    crossed, slots = _design(base, "session_id")
    base["slot"] = slots
    rater = "rater_id" if crossed else "slot"
    n_units = int(len(np.unique(asg_session)))
    n_raters = int(base[rater].nunique())
    out = []
    for c in range(k):
        tally = base.assign(hit=counts[order, c])
        out.append({
            "n_units": n_units,
            "n_raters": n_raters,
            "rater_design": "crossed" if crossed else "slots",
            "mean_per_session": float(tally["hit"].mean()),
            "statistics": _interval_statistics(tally, "session_id", rater, "hit", n_boot, seed),
        })
    return out


def _code_set(code_set, codes: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    rows = np.flatnonzero((codes["code_set"] == code_set.id).to_numpy())
    utt, a_ids, rater_ids, session = (codes[c].to_numpy().take(rows) for c in
                                      ("utterance_id", "assignment_id", "rater_id", "session_id"))
    labels = [c.id for c in code_set.codes]
    k = len(labels)
    code_strings = codes["code"].iloc[rows]
    code = _code_numbers(code_strings, labels)  # −1: a code this code set does not have
    unknown = code < 0
    n_ratings = len(rows)

    rater, rater_labels = _dense(rater_ids)
    asg, asg_ids = _dense(a_ids)
    asg_session = np.zeros(len(asg_ids), dtype=np.int64)
    asg_session[asg] = session  # every row of an assignment has its session and rater
    asg_rater = np.zeros(len(asg_ids), dtype=np.int64)
    asg_rater[asg] = rater_ids

    # The statistics see the codes as a categorical column whose categories are sorted as the
    # strings would be: the same category numbers, hence the same rating patterns and
    # bootstrap draws as a column of strings, without a million Python strings. The rater
    # pairs number the codes in that order too (as cohen_kappa would: the same sums), and
    # count codes the code set does not have (from older revisions of the scheme).
    ordered = sorted(labels)
    to_sorted = np.array([ordered.index(x) for x in labels], dtype=np.int64)
    if unknown.any():
        values = code_strings.astype(str).to_numpy()
        extra_labels = sorted(set(values[unknown]) - set(labels))
        pair_labels = sorted(labels + extra_labels)
        pair_code = pd.Index(pair_labels).get_indexer(values).astype(np.int64)
        known_pairs = _pair_expansion(utt, rater, code)
        all_pairs = _pair_expansion(utt, rater, pair_code)
        coincidences = _coincidences(known_pairs, k)
    else:
        sorted_code = to_sorted[code]
        used = np.bincount(sorted_code, minlength=k) > 0
        values = pd.Categorical.from_codes((np.cumsum(used) - 1)[sorted_code],
                                           categories=[c for c, u in zip(ordered, used, strict=True) if u])
        pair_labels = ordered
        all_pairs = _pair_expansion(utt, rater, sorted_code)
        coincidences = _coincidences(all_pairs, k, to_sorted)
    long = pd.DataFrame({"utterance_id": utt, "rater_id": rater_ids, "code": values})
    overall = _summary(long, "utterance_id", "rater_id", "code", "nominal", n_boot, seed)
    per_code = (irr_summary_one_vs_rest(long, "utterance_id", "rater_id", "code",
                                        n_boot=n_boot, seed=seed) if n_ratings else {})
    tallies = _tallies(asg, asg_ids, asg_session, asg_rater, code, k, n_boot, seed)
    hits = np.bincount(code[~unknown], minlength=k)
    entry: dict[str, Any] = {
        "id": code_set.id,
        "title": code_set.title,
        "roles": list(code_set.applies_to_roles),
        "n_sessions": int(len(np.unique(session))),
        "overall": overall,
        "codes": [],
        "confusion": {"labels": labels, "matrix": coincidences},
        "pairs": _pair_rows(all_pairs, rater_labels, np.arange(len(pair_labels)), None, False),
    }
    for c, code_def in enumerate(code_set.codes):
        summary = per_code.get(code_def.id)
        if summary is None:  # a code nobody used: every rating is "not this code"
            binary = pd.DataFrame({"utterance_id": utt, "rater_id": rater_ids,
                                   "hit": (code == c).astype(int)})
            summary = irr_summary(binary, "utterance_id", "rater_id", "hit", level="nominal",
                                  n_boot=n_boot, seed=seed)
        _with_bands(summary["statistics"])
        entry["codes"].append({
            "code": code_def.id,
            "label": code_def.label,
            "prevalence": float(hits[c] / n_ratings) if n_ratings else None,
            "utterance": summary,
            "session_tally": tallies[c],
        })
    return entry


def _code_sets(study: Study, codes: pd.DataFrame, n_boot: int, seed: int) -> list[dict[str, Any]]:
    scheme = as_scheme(study.scheme_version)
    return [_code_set(code_set, codes, n_boot, seed) for code_set in scheme.code_sets]


# ----------------------------------------------------------------------------- ratings


def _column_codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A string column as (integer codes, labels), through its categories when it has them."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return (column.cat.codes.to_numpy().astype(np.int64),
                [str(c) for c in column.cat.categories])
    codes, uniques = pd.factorize(column)
    return np.asarray(codes).astype(np.int64), [str(u) for u in uniques]


class _Ratings:
    """The rating frame as arrays, split once by (instrument, item, dimension).

    ``groups[key]`` are the positions of that key's rows (in frame order) and whether its
    design is crossed; ``slots`` are the rater slots of every row within its key and session.
    The design and the slots follow who rated each session, N/A included: dropping N/A first
    would turn a crossed design into slots (pairing different raters) after one N/A.
    """

    def __init__(self, ratings: pd.DataFrame) -> None:
        self.session = ratings["session_id"].to_numpy().astype(np.int64)
        self.assignment = ratings["assignment_id"].to_numpy().astype(np.int64)
        self.rater = ratings["rater_id"].to_numpy().astype(np.int64)
        self.value = ratings["value"].to_numpy(dtype=np.float64)
        self.na = ratings["not_applicable"].to_numpy(dtype=bool)
        self.groups: dict[tuple[str, str, str], tuple[np.ndarray, bool]] = {}
        self.slots = np.zeros(0, dtype=np.int64)
        if not len(ratings):
            return
        (ci, li), (cj, lj), (ck, lk) = (_column_codes(ratings[c])
                                        for c in ("instrument", "item", "dimension"))
        group, keys = _dense((ci * len(lj) + cj) * len(lk) + ck)
        crossed, self.slots = _designs(group, self.session, self.rater, self.assignment)
        order = np.argsort(group, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(group, minlength=len(keys)))]
        for g, key in enumerate(keys):
            i, rest = divmod(int(key), len(lj) * len(lk))
            j, k = divmod(rest, len(lk))
            self.groups[(li[i], lj[j], lk[k])] = (order[bounds[g]:bounds[g + 1]], bool(crossed[g]))

    def get(self, key: tuple[str, str, str]) -> tuple[np.ndarray, bool]:
        return self.groups.get(key, (np.zeros(0, dtype=np.int64), True))


def _rating_entry(r: _Ratings, pos: np.ndarray, crossed: bool, n_boot: int,
                  seed: int) -> dict[str, Any]:
    """The ordinal summary of one item's ratings (rows ``pos``); N/A ratings are missing."""
    pos = pos[~np.isnan(r.value[pos])]
    frame = pd.DataFrame({"session_id": r.session[pos], "rater_id": r.rater[pos],
                          "slot": r.slots[pos], "value": r.value[pos]})
    rater = "rater_id" if crossed else "slot"
    summary = _summary(frame, "session_id", rater, "value", "ordinal", n_boot, seed)
    summary["rater_design"] = "crossed" if crossed else "slots"
    return summary


def _mean_entry(r: _Ratings, pos: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Each rater's mean over the items of a session (rows ``pos``, no N/A), interval.

    Means are continuous: only the ICCs and Krippendorff's alpha (interval) describe their
    agreement. Percent agreement, kappas and AC1 would treat every distinct mean as a
    category of its own, and are not given.
    """
    asg, asg_ids = _dense(r.assignment[pos])
    mean = np.bincount(asg, weights=r.value[pos]) / np.bincount(asg)
    session = np.zeros(len(asg_ids), dtype=np.int64)
    session[asg] = r.session[pos]
    rater = np.zeros(len(asg_ids), dtype=np.int64)
    rater[asg] = r.rater[pos]
    order = np.lexsort((asg_ids, session))
    frame = pd.DataFrame({"session_id": session[order], "assignment_id": asg_ids[order],
                          "rater_id": rater[order], "value": mean[order]})
    crossed, slots = _design(frame, "session_id")
    frame["slot"] = slots
    column = "rater_id" if crossed else "slot"
    return {
        "n_units": int(len(np.unique(session))),
        "n_raters": int(frame[column].nunique()),
        "n_ratings": len(frame),
        "level": "interval",
        "statistics": _interval_statistics(frame, "session_id", column, "value", n_boot, seed),
        "rater_design": "crossed" if crossed else "slots",
    }


def _ratings(study: Study, ratings: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    scheme = as_scheme(study.scheme_version)
    instruments = {i.id: i for i in scheme.instruments}
    r = _Ratings(ratings)
    items, means, pairs = [], [], []
    for instrument_id, item_id, dimension in required_ratings(study):
        instrument = instruments[instrument_id]
        item = next((i for i in instrument.items if i.id == item_id), None)
        overall = next((o for o in instrument.overall if o.id == item_id), None)
        pos, crossed = r.get((instrument_id, item_id, dimension))
        entry = _rating_entry(r, pos, crossed, n_boot, seed)
        entry.update({
            "instrument": instrument_id, "item": item_id, "dimension": dimension,
            "label": f"{item.number}. {item.name}" if item else overall.label,
            "kind": "item" if item else "overall",
            "not_applicable": int(r.na[pos].sum()),
        })
        items.append(entry)
    for instrument in scheme.instruments:
        if instrument.target != "session":
            continue
        item_ids = [i.id for i in instrument.items]
        for dim in instrument.dimensions:
            parts = [(n, r.get((instrument.id, i, dim.id))[0]) for n, i in enumerate(item_ids)]
            pos = np.concatenate([p for _, p in parts])
            item_no = np.concatenate([np.full(len(p), n, dtype=np.int64) for n, p in parts])
            rated = ~np.isnan(r.value[pos])
            pos, item_no = pos[rated], item_no[rated]
            if not len(pos):
                continue
            entry = _mean_entry(r, pos, n_boot, seed)
            entry.update({"instrument": instrument.id, "dimension": dim.id,
                          "label": f"Mean {dim.label.lower()} over items"})
            means.append(entry)
            # pooled units (session, item) as one integer; values numbered in sorted order
            unit = r.session[pos] * len(item_ids) + item_no
            categories, value_no = np.unique(r.value[pos], return_inverse=True)
            rater, rater_labels = _dense(r.rater[pos])
            for row in _pair_rows(_pair_expansion(unit, rater, value_no.ravel()), rater_labels,
                                  categories, "quadratic", True):
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
