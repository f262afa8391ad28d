"""Inter-rater reliability statistics on long-format rating data.

Every function takes a long-format :class:`pandas.DataFrame` with one row per
(unit, rater) rating and the names of the unit, rater and value columns (as
pingouin's ``intraclass_corr(data, targets, raters, ratings)``), and returns
frozen :class:`Estimate` records. Results never contain NaN or infinity: a
statistic that cannot be computed has ``estimate=None`` and a ``reason``.

Conventions (documented once, used throughout)
----------------------------------------------
* Missing ratings: rows whose value is NaN/None are treated as missing and
  dropped. A unit enters a statistic only if it has the ratings that statistic
  needs (>= 2 ratings for agreement, alpha and AC1; both raters for Cohen's
  kappa; the modal number of ratings for Fleiss' kappa; all raters for ICC).
* Bootstrap intervals resample units with replacement (``n_boot`` replicates,
  ``numpy.random.default_rng(seed)``) and take the 2.5 and 97.5 percentiles of
  the replicates for which the statistic is defined. Percent agreement,
  Krippendorff's alpha and Gwet's AC1 depend on a unit only through its
  *rating pattern* (its row of the units x categories count matrix), so units
  are collapsed into their distinct patterns with frequencies ``f`` (``n`` units
  in all). Drawing ``n`` units with replacement is then exactly a multinomial
  draw ``Multinomial(n, f/n)`` of pattern counts, and every replicate statistic
  is a weighted sum over patterns. This is the ordinary unit bootstrap (the same
  distribution, not an approximation); it only costs O(patterns) instead of
  O(units) per replicate. When there are nearly as many patterns as units
  (continuous interval/ratio data) units are drawn directly, O(units) per
  replicate; memory stays bounded either way (replicates are processed in chunks).
* Weighted kappa uses agreement weights on the *ranks* of the sorted
  categories: linear ``1 - |i-j|/(K-1)`` (Cicchetti & Allison 1971) and
  quadratic ``1 - (i-j)^2/(K-1)^2`` (Fleiss & Cohen 1973), the convention of
  ``sklearn.metrics.cohen_kappa_score`` and R ``irr::kappa2``.
* Asymptotic intervals are ``estimate +/- 1.96 SE``, clipped to [-1, 1].

Scale: the work is linear in the number of ratings (integer encoding with
``bincount``; no units x categories^2 temporaries). On the 2-core reference
machine the whole nominal :func:`irr_summary` (all statistics with bootstrap
intervals) of 1,000,000 units x 3 raters x 10 codes takes well under a second
(see ``bench/reliability_stats.py``).

This module imports only numpy, pandas, scipy and krippendorff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

import krippendorff
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from scipy import stats as sps

__all__ = [
    "Estimate",
    "Level",
    "Weights",
    "cohen_kappa",
    "fleiss_kappa",
    "gwet_ac1",
    "icc",
    "irr_summary",
    "irr_summary_one_vs_rest",
    "krippendorff_alpha",
    "percent_agreement",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"] | None
_WEIGHTS: tuple[str | None, ...] = (None, "linear", "quadratic")

_LEVELS: tuple[str, ...] = get_args(Level)
_Z975 = float(sps.norm.ppf(0.975))
# The krippendorff package (the reference implementation) computes the point estimate while
# units x categories^2 and raters x units stay at most this (its temporaries are that many
# float64s, several times over); above it the same coincidence-matrix formula is evaluated
# here from rating patterns (tested to agree with the package), in memory linear in the data.
_KRIPPENDORFF_PACKAGE_MAX_CELLS = 250_000
# Cap on the number of cells (replicates x patterns, replicates x features) held at once.
_BOOT_CHUNK_CELLS = 4_000_000
# Feature matrices (patterns x features) are dense up to this many cells (and while at
# least a quarter full), else sparse.
_DENSE_FEATURE_CELLS = 4_000_000
# Pattern keys below this are counted with one bincount; larger ones with a hash table.
_KEY_BINCOUNT_MAX = 1 << 22
# Count-row keys are summed exactly in float64 (integers below 2**53).
_FLOAT_EXACT = 1 << 52


@dataclass(frozen=True)
class Estimate:
    """One reliability coefficient.

    Attributes
    ----------
    name : str
        Statistic name as used in the ``mbtcode irr`` JSON (e.g. ``"icc2"``).
    estimate : float or None
        Point estimate; None when not computable (see ``reason``).
    ci_low, ci_high : float or None
        95% confidence limits; None when not computable.
    reason : str or None
        Why the estimate (or its interval) is missing.
    n_units : int
        Number of units that entered the computation.
    note : str or None
        Extra information, e.g. how many units were dropped.
    """

    name: str
    estimate: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    reason: str | None = None
    n_units: int = 0
    note: str | None = None


# --------------------------------------------------------------------------- helpers


def _finite(x: Any) -> float | None:
    """Return ``float(x)`` if finite, else None."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _make(
    name: str,
    est: Any,
    lo: Any = None,
    hi: Any = None,
    *,
    n_units: int = 0,
    note: str | None = None,
    ci_reason: str | None = None,
    clip: tuple[float, float] | None = None,
) -> Estimate:
    e, l_, h = _finite(est), _finite(lo), _finite(hi)
    if e is None:
        return Estimate(
            name, None, None, None, "not computable (non-finite result)", n_units, note
        )
    if l_ is None or h is None:
        l_ = h = None
    elif clip is not None:
        l_, h = max(clip[0], l_), min(clip[1], h)
    reason = (
        None if l_ is not None else (ci_reason or "confidence interval not computable")
    )
    return Estimate(name, e, l_, h, reason, n_units, note)


def _none(
    name: str, reason: str, n_units: int = 0, note: str | None = None
) -> Estimate:
    return Estimate(name, None, None, None, reason, n_units, note)


def _percentile_ci(reps: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return None, None
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def _check_boot(n_boot: int) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")


def _safe_div(
    num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Elementwise num/den with NaN (never a warning) where den is ~0."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    ok = np.abs(den) > 1e-12
    np.divide(num, den, out=out, where=ok)
    return out


def _wald(name: str, kappa: float, se: float, **kwargs: Any) -> Estimate:
    """A kappa with its asymptotic 95% interval, kappa ± 1.96·SE, clipped to [-1, 1]."""
    return _make(name, kappa, kappa - _Z975 * se, kappa + _Z975 * se, clip=(-1.0, 1.0), **kwargs)


def _ci_reason(nu: int) -> str:
    return "fewer than two units" if nu < 2 else "no bootstrap"


# --------------------------------------------------------------------------- encoding


def _factorize(
    s: pd.Series, *, sort: bool, dtype: type[np.integer] = np.int32
) -> tuple[npt.NDArray[np.integer], npt.NDArray[Any]]:
    """Integer codes (-1 for missing) and the distinct values (sorted when ``sort``).

    Integer columns with a compact range (ids, codes) are encoded with one bincount, in
    linear time; anything else goes through :func:`pandas.factorize`.
    """
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iu" and len(s):
        arr = s.to_numpy()
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo <= 2 * len(arr) + 1024:
            if 0 <= lo and hi <= 2 * len(arr) + 1024:  # index by the values themselves
                lo, ix = 0, arr.astype(np.intp, copy=False)
            else:
                ix = (arr - arr.dtype.type(lo)).astype(np.intp, copy=False)
            present = np.bincount(ix, minlength=hi - lo + 1) > 0
            if lo == 0 and present.all():  # already 0 .. n-1
                return ix.astype(dtype, copy=False), np.arange(hi + 1).astype(dt)
            lut = (np.cumsum(present) - 1).astype(dtype)
            return lut[ix], (np.flatnonzero(present) + lo).astype(dt)
    codes, uniques = pd.factorize(s, sort=sort)
    return np.asarray(codes).astype(dtype, copy=False), np.asarray(uniques)


@dataclass(frozen=True)
class _Index:
    """Units and raters of the non-missing ratings of a validated long-format frame."""

    unit_idx: npt.NDArray[np.intp]  # per non-missing rating
    rater_idx: npt.NDArray[np.int32]  # per non-missing rating
    n_units: int
    n_raters: int
    rater_labels: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_] | None  # rows with a value; None when all rows have one


def _duplicated(
    u: npt.NDArray[np.intp], r: npt.NDArray[np.int32], n_u: int, n_r: int
) -> npt.NDArray[np.bool_] | None:
    """Mask of the rows in duplicate (unit, rater) pairs, or None if there are none."""
    key = u * n_r
    key += r
    if n_u * n_r <= max(8 * len(key), 1 << 20):
        seen = np.zeros(n_u * n_r, dtype=bool)
        seen[key] = True
        if np.count_nonzero(seen) == len(key):
            return None
        del seen
    else:
        key = np.asarray(pd.factorize(key)[0])
        if len(key) == 0 or key.max() + 1 == len(key):
            return None
    return np.bincount(key)[key] > 1


def _prepare_index(data: pd.DataFrame, unit: str, rater: str, value: str) -> _Index:
    """Validate the frame, encode units and raters, reject duplicate (unit, rater) pairs."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in (unit, rater, value) if c not in data.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; columns are {list(data.columns)}"
        )
    if len({unit, rater, value}) != 3:
        raise ValueError("unit, rater and value must be three different columns")
    u_codes, _ = _factorize(data[unit], sort=False, dtype=np.intp)
    if (u_codes < 0).any():
        raise ValueError(f"column {unit!r} has missing unit identifiers")
    r_codes, r_labels = _factorize(data[rater], sort=True)
    if (r_codes < 0).any():
        raise ValueError(f"column {rater!r} has missing rater identifiers")
    n_u = int(u_codes.max()) + 1 if len(u_codes) else 0
    n_r = len(r_labels)
    dup = _duplicated(u_codes, r_codes, n_u, n_r)
    if dup is not None:
        first = data.loc[dup, [unit, rater]].iloc[0]
        raise ValueError(
            f"duplicate (unit, rater) pairs: {int(dup.sum())} rows, e.g. "
            f"{unit}={first[unit]!r}, {rater}={first[rater]!r}"
        )
    valid = data[value].notna().to_numpy()
    if valid.all():
        return _Index(u_codes, r_codes, n_u, n_r, r_labels, None)
    u, r = u_codes[valid], r_codes[valid]
    present_u = np.bincount(u, minlength=n_u) > 0
    present_r = np.bincount(r, minlength=n_r) > 0
    lut_u = np.cumsum(present_u) - 1
    lut_r = (np.cumsum(present_r) - 1).astype(np.int32)
    return _Index(
        lut_u[u],
        lut_r[r],
        int(present_u.sum()),
        int(present_r.sum()),
        r_labels[present_r],
        valid,
    )


def _values(data: pd.DataFrame, value: str, idx: _Index) -> pd.Series:
    vals = data[value]
    return vals if idx.valid is None else vals[idx.valid]


def _encode_values(
    vals: pd.Series, value: str, *, numeric: bool, ordered: bool
) -> dict[str, Any]:
    """Validated encoding of the values: ``numeric`` (per rating) and, for an ordered
    categorical, its category ``labels``; or, nominal, the ``code`` of each rating into the
    (sorted when orderable) ``categories``. Numeric values get their codes on first use."""
    num: npt.NDArray[np.float64] | None = None
    if numeric:
        ordered_cat = isinstance(vals.dtype, pd.CategoricalDtype) and bool(vals.cat.ordered)
        if ordered_cat and not ordered:
            raise ValueError(
                f"column {value!r} must be numeric for this level of measurement"
            )
        if ordered_cat:
            num = vals.cat.codes.to_numpy(dtype=np.float64)
        else:
            if vals.dtype == bool or not pd.api.types.is_numeric_dtype(vals.dtype):
                conv = pd.to_numeric(vals, errors="coerce")
                bad = conv.isna()
                if bad.any():
                    raise ValueError(
                        f"column {value!r} has non-numeric values (e.g. {vals[bad].iloc[0]!r}); "
                        "ordinal, interval and ratio statistics need numbers"
                    )
                vals = conv
            num = vals.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(num)):
            raise ValueError(f"column {value!r} has infinite values")
        labels = np.asarray(vals.cat.categories) if ordered_cat else None
        return {"numeric": num, "labels": labels}
    try:
        codes, cats = _factorize(vals, sort=True)
    except TypeError:  # mixed, unorderable types: order is irrelevant for nominal data
        codes, cats = _factorize(vals.astype(str), sort=True)
    return {"numeric": None, "code": codes, "categories": cats}


def _same_partition_as_nominal(vals: pd.Series, level: str) -> bool:
    """Whether the numeric encoding of ``vals`` groups values exactly as the nominal one."""
    dt = vals.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return bool(dt.ordered) and level == "ordinal"
    return pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)


@dataclass(frozen=True)
class _Prepared:
    """Encoded ratings; ``cache`` holds the codes and everything derived from them."""

    unit_idx: npt.NDArray[np.intp]  # per rating
    rater_idx: npt.NDArray[np.int32]  # per rating
    numeric: npt.NDArray[np.float64] | None  # per rating values, when numeric
    n_units: int
    n_raters: int
    rater_labels: npt.NDArray[Any]
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def _numeric_codes(self) -> None:
        assert self.numeric is not None
        codes, cats = pd.factorize(self.numeric, sort=True)
        cats = np.asarray(cats)
        labels = self.cache.get("labels")
        if labels is not None:  # ordered categorical: numbers are its codes
            cats = labels[cats.astype(np.intp)]
        self.cache["code"] = np.asarray(codes).astype(np.int32, copy=False)
        self.cache["categories"] = cats

    @property
    def code(self) -> npt.NDArray[np.int32]:
        """Per rating: index into ``categories``."""
        if "code" not in self.cache:
            self._numeric_codes()
        return self.cache["code"]

    @property
    def categories(self) -> npt.NDArray[Any]:
        """Distinct values, sorted when orderable."""
        if "categories" not in self.cache:
            self._numeric_codes()
        return self.cache["categories"]

    @property
    def n_ratings(self) -> int:
        return len(self.unit_idx)

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def counts(self) -> npt.NDArray[np.float64]:
        """Units x categories matrix of rating counts (dense; for small data only)."""
        k = self.n_categories
        flat = np.bincount(
            self.unit_idx.astype(np.int64) * k + self.code, minlength=self.n_units * k
        )
        return flat.reshape(self.n_units, k).astype(np.float64)

    def ratings_per_unit(self) -> npt.NDArray[np.int64]:
        if "m" not in self.cache:
            self.cache["m"] = np.bincount(self.unit_idx, minlength=self.n_units)
        return self.cache["m"]

    def patterns(self) -> _Patterns:
        """Distinct rating patterns of all units."""
        if "patterns" not in self.cache:
            self.cache["patterns"] = _unit_patterns(
                self.unit_idx, self.code, self.ratings_per_unit(), self.n_categories
            )
        return self.cache["patterns"]

    def pairable(self) -> _Patterns:
        """Distinct rating patterns of the units with two or more ratings."""
        if "pairable" not in self.cache:
            pats = self.patterns()
            self.cache["pairable"] = pats.select(pats.m >= 2)
        return self.cache["pairable"]


def _with_values(
    idx: _Index, vals: pd.Series, value: str, *, numeric: bool, ordered: bool
) -> _Prepared:
    enc = _encode_values(vals, value, numeric=numeric, ordered=ordered)
    return _Prepared(
        unit_idx=idx.unit_idx,
        rater_idx=idx.rater_idx,
        numeric=enc.pop("numeric"),
        n_units=idx.n_units,
        n_raters=idx.n_raters,
        rater_labels=idx.rater_labels,
        cache=enc,
    )


def _prepare(
    data: pd.DataFrame,
    unit: str,
    rater: str,
    value: str,
    *,
    numeric: bool,
    ordered: bool = False,
) -> _Prepared:
    """Validate long-format data and encode it as integer arrays."""
    idx = _prepare_index(data, unit, rater, value)
    return _with_values(idx, _values(data, value, idx), value, numeric=numeric, ordered=ordered)


# --------------------------------------------------------------------------- rating patterns


@dataclass(frozen=True)
class _Patterns:
    """Distinct rows of a units x categories count matrix, with how many units have each.

    The rows are stored sparsely: entry ``e`` says pattern ``row[e]`` has ``cnt[e]`` ratings
    in category ``col[e]``; entries are sorted by row, then column. Patterns are in a
    canonical order (by their integer key), so the same units give the same patterns.
    """

    row: npt.NDArray[np.intp]
    col: npt.NDArray[np.intp]
    cnt: npt.NDArray[np.float64]
    freq: npt.NDArray[np.int64]
    n_cols: int

    @property
    def n_patterns(self) -> int:
        return len(self.freq)

    @cached_property
    def n_units(self) -> int:
        return int(self.freq.sum())

    @cached_property
    def m(self) -> npt.NDArray[np.float64]:
        """Ratings per pattern."""
        return self.rowsum(self.cnt)

    def rowsum(self, vals: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.bincount(self.row, weights=vals, minlength=self.n_patterns)

    def colsum(self, vals: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.bincount(self.col, weights=vals, minlength=self.n_cols)

    def marginals(self) -> npt.NDArray[np.float64]:
        """Ratings per category over all units (pattern counts times frequencies)."""
        return self.colsum(self.cnt * self.freq[self.row])

    def select(self, keep: npt.NDArray[np.bool_]) -> _Patterns:
        new = np.cumsum(keep) - 1
        e = keep[self.row]
        return _Patterns(new[self.row[e]], self.col[e], self.cnt[e], self.freq[keep], self.n_cols)

    def compact_columns(self) -> tuple[_Patterns, npt.NDArray[np.bool_]]:
        """Drop categories no unit of this set used; also return the mask of those kept."""
        present = np.bincount(self.col, minlength=self.n_cols) > 0
        new = np.cumsum(present) - 1
        return _Patterns(self.row, new[self.col], self.cnt, self.freq, int(present.sum())), present


def _count_keys(
    keys: npt.NDArray[np.int64], weights: npt.NDArray[np.int64] | None, max_key: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted distinct keys and their (weighted) counts."""
    if max_key <= max(_KEY_BINCOUNT_MAX, 2 * len(keys)):
        tally = np.bincount(keys, weights=weights, minlength=max_key)
        distinct = np.flatnonzero(tally)
        return distinct.astype(np.int64), tally[distinct].astype(np.int64)
    codes, uniq = pd.factorize(keys, sort=True)
    return np.asarray(uniq, dtype=np.int64), np.bincount(
        codes, weights=weights, minlength=len(uniq)
    ).astype(np.int64)


def _decode_keys(
    keys: npt.NDArray[np.int64], freq: npt.NDArray[np.int64], base: int, k: int
) -> _Patterns:
    """Patterns from count-row keys ``sum_c n_c base**c`` (decoded in bounded chunks)."""
    powers = np.array([base**c for c in range(k)], dtype=np.int64)
    step = max(1, _BOOT_CHUNK_CELLS // max(k, 1))
    rows, cols, cnts = [], [], []
    for start in range(0, len(keys), step):
        digits = (keys[start : start + step, None] // powers[None, :]) % base
        r, c = np.nonzero(digits)
        rows.append(r + start)
        cols.append(c)
        cnts.append(digits[r, c].astype(np.float64))
    cat = np.concatenate if rows else (lambda _: np.zeros(0))
    return _Patterns(
        cat(rows).astype(np.intp),
        cat(cols).astype(np.intp),
        cat(cnts).astype(np.float64),
        freq,
        k,
    )


def _unit_patterns(
    unit_idx: npt.NDArray[np.intp],
    code: npt.NDArray[np.int32],
    m_u: npt.NDArray[np.int64],
    k: int,
) -> _Patterns:
    """Collapse units into their distinct count rows.

    Each unit's count row is encoded as one integer ``sum_c n_c base**c`` (``base`` = most
    ratings of a unit + 1), summed exactly in float64 by one bincount, when that key fits in
    2**52; otherwise the rows are found from the ratings sorted by (unit, category), encoded
    as int64 keys or, if even those would overflow, by ``numpy.unique(axis=0)``.
    """
    n_units = len(m_u)
    if n_units == 0:
        z = np.zeros(0, dtype=np.intp)
        return _Patterns(z, z, np.zeros(0), np.zeros(0, dtype=np.int64), k)
    base = int(m_u.max()) + 1
    if base**k <= _FLOAT_EXACT:
        powers = np.array([float(base**c) for c in range(k)])
        keys = np.zeros(n_units)
        step = max(1 << 22, n_units)  # bounded temporaries
        for s in range(0, len(code), step):
            keys += np.bincount(
                unit_idx[s : s + step], weights=powers[code[s : s + step]], minlength=n_units
            )
        keys = keys.astype(np.int64)
        distinct, freq = _count_keys(keys, None, base**k)
        return _decode_keys(distinct, freq, base, k)
    # Many categories: run-length encode the ratings sorted by (unit, category).
    s = np.sort(unit_idx.astype(np.int64) * k + code)
    starts = np.flatnonzero(np.diff(s, prepend=-1))
    e_unit, e_col = np.divmod(s[starts], k)
    e_cnt = np.diff(np.append(starts, len(s)))
    del s, starts
    per_unit = np.bincount(e_unit, minlength=n_units)
    first = np.cumsum(per_unit) - per_unit
    pos = np.arange(len(e_unit)) - first[e_unit]
    entry = e_col * base + e_cnt  # 1 .. k*base-1, one per (category, count)
    big = k * base
    width = int(per_unit.max())
    if big**width < 2**63:
        powers = np.array([big**j for j in range(width)], dtype=np.int64)
        keys = np.add.reduceat(entry * powers[pos], first)
        codes_, _ = pd.factorize(keys, sort=True)
        codes = np.asarray(codes_)
    else:
        mat = np.zeros((n_units, width), dtype=np.int64)
        mat[e_unit, pos] = entry
        codes = np.unique(mat, axis=0, return_inverse=True)[1].reshape(-1)
        del mat
    n_pat = int(codes.max()) + 1
    freq = np.bincount(codes, minlength=n_pat).astype(np.int64)
    rep = np.full(n_pat, -1, dtype=np.int64)
    rep[codes[::-1]] = np.arange(n_units)[::-1]  # first unit of each pattern
    is_rep = np.zeros(n_units, dtype=bool)
    is_rep[rep] = True
    sel = is_rep[e_unit]
    rows = codes[e_unit[sel]]
    order = np.argsort(rows, kind="stable")
    return _Patterns(
        rows[order].astype(np.intp),
        e_col[sel][order].astype(np.intp),
        e_cnt[sel][order].astype(np.float64),
        freq,
        k,
    )


def _binary_patterns(pats: _Patterns, c: int) -> tuple[_Patterns, npt.NDArray[np.bool_]]:
    """Patterns of 'category c' vs 'any other category' derived from ``pats`` (all units).

    Columns are (other, c), restricted to those used; the result equals collapsing the
    binarised ratings from scratch. Also returns which of the two columns were kept.
    """
    m = pats.m.astype(np.int64)
    nc = np.zeros(pats.n_patterns, dtype=np.int64)
    hit = pats.col == c
    nc[pats.row[hit]] = pats.cnt[hit].astype(np.int64)
    two = np.stack([m - nc, nc], axis=1)
    present = two.sum(axis=0) > 0
    two = two[:, present]
    k = int(present.sum())
    base = int(m.max()) + 1
    keys = two @ np.array([base**j for j in range(k)], dtype=np.int64)
    distinct, freq = _count_keys(keys, pats.freq, base**k)
    return _decode_keys(distinct, freq, base, k), present


def _features(
    rows: npt.NDArray[np.integer],
    cols: npt.NDArray[np.integer],
    vals: npt.NDArray[np.float64],
    shape: tuple[int, int],
) -> npt.NDArray[np.float64] | sparse.csr_array:
    """Patterns x features matrix (duplicates summed): dense when small or full, else sparse."""
    n, d = shape
    if n * d <= min(_DENSE_FEATURE_CELLS, max(4 * len(vals), 1 << 16)):
        flat = np.bincount(
            np.asarray(rows, dtype=np.int64) * d + cols, weights=vals, minlength=n * d
        )
        return flat.reshape(n, d)
    return sparse.csr_array((vals, (rows, cols)), shape=shape)


def _matmul(w: npt.NDArray[np.float64], f: Any) -> npt.NDArray[np.float64]:
    """``w @ f`` for a dense (replicates x patterns) ``w`` and a dense or sparse ``f``."""
    if sparse.issparse(f):
        return np.asarray(f.T @ w.T).T
    return w @ f


def _pair_entries(
    pats: _Patterns,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[Any]]:
    """Nonzero coincidence contributions of each pattern.

    Pattern ``p`` with counts ``n`` and ``m`` ratings contributes
    ``(n_c n_k - [c = k] n_c) / (m - 1)`` to cell (c, k) of the coincidence matrix
    (Krippendorff 2011). Returns (pattern, c, k, value) for all pairs of its categories.
    """
    row, cnt = pats.row, pats.cnt
    per = np.bincount(row, minlength=pats.n_patterns)
    start = np.cumsum(per) - per
    partners = per[row]
    i = np.repeat(np.arange(len(row)), partners)
    off = np.arange(len(i)) - np.repeat(np.cumsum(partners) - partners, partners)
    j = start[row[i]] + off
    prow = row[i]
    val = (cnt[i] * cnt[j] - np.where(i == j, cnt[i], 0.0)) / (pats.m[prow] - 1.0)
    nz = val != 0
    return prow[nz], pats.col[i][nz], pats.col[j][nz], val[nz]


# --------------------------------------------------------------------------- bootstrap


def _pattern_weights(
    freq: npt.NDArray[np.int64], n_boot: int, chunk: int, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.float64]]:
    """Yield bootstrap replicates as pattern counts (replicates x patterns), in chunks.

    Resampling ``n`` units with replacement gives pattern counts ``Multinomial(n, freq/n)``;
    with few patterns they are drawn directly (O(patterns) per replicate), with about as
    many patterns as units the units are drawn (O(units) per replicate). The stream of
    replicates does not depend on ``chunk``.
    """
    n = int(freq.sum())
    n_pat = len(freq)
    done = 0
    if 8 * n_pat <= n:
        pvals = freq / n
        while done < n_boot:
            b = min(chunk, n_boot - done)
            yield rng.multinomial(n, pvals, size=b).astype(np.float64)
            done += b
    else:
        pattern_of_unit = np.repeat(np.arange(n_pat), freq)
        while done < n_boot:
            b = min(chunk, n_boot - done)
            w = np.empty((b, n_pat))
            for i in range(b):
                w[i] = np.bincount(pattern_of_unit[rng.integers(0, n, n)], minlength=n_pat)
            yield w
            done += b


@dataclass(frozen=True)
class _Stat:
    """A statistic as a function of pattern weights: (replicates x patterns) -> replicates.

    ``width`` is the number of cells it holds per replicate (to bound memory by chunking);
    ``features`` is the patterns x features matrix when the statistic is a function of
    ``W @ features``.
    """

    width: int
    of_weights: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
    features: Any = None

    def point(self, pats: _Patterns) -> float:
        """The estimate: every pattern at its frequency."""
        return float(self.of_weights(pats.freq.astype(np.float64)[None, :])[0])


def _linear(
    features: Any, fn: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
) -> _Stat:
    """The statistic ``fn(W @ features)``."""
    return _Stat(features.shape[1], lambda w: fn(_matmul(w, features)), features)


@dataclass(frozen=True)
class _Boot:
    """A statistic waiting for its bootstrap interval; ``finish(lo, hi)`` makes the Estimate."""

    pats: _Patterns
    stat: _Stat
    finish: Callable[[float | None, float | None], Estimate]


def _run(plans: list[Estimate | _Boot], n_boot: int, seed: int | None) -> list[Estimate]:
    """Finish every plan; bootstraps over the same patterns share one stream of replicates.

    Each group draws from ``default_rng(seed)`` in chunks that depend only on the number of
    patterns, so a statistic gets the same interval whether it is computed alone or with
    others.
    """
    out: list[Estimate | None] = [p if isinstance(p, Estimate) else None for p in plans]
    groups: dict[int, list[tuple[int, _Boot]]] = {}
    for i, p in enumerate(plans):
        if isinstance(p, _Boot):
            groups.setdefault(id(p.pats), []).append((i, p))
    for members in groups.values():
        boots = [b for _, b in members]
        pats = boots[0].pats
        chunk = max(1, min(n_boot, _BOOT_CHUNK_CELLS // max(pats.n_patterns, 1)))
        reps: list[list[npt.NDArray[np.float64]]] = [[] for _ in boots]
        rng = np.random.default_rng(seed)
        for w in _pattern_weights(pats.freq, n_boot, chunk, rng):
            for r, b in zip(reps, boots):
                step = max(1, _BOOT_CHUNK_CELLS // max(b.stat.width, 1))
                for i in range(0, len(w), step):
                    r.append(b.stat.of_weights(w[i : i + step]))
        for (i, b), r in zip(members, reps):
            out[i] = b.finish(*_percentile_ci(np.concatenate(r)))
    return [e for e in out if e is not None]


# --------------------------------------------------------------------------- percent agreement


def _plan_percent_agreement(p: _Prepared, n_boot: int) -> Estimate | _Boot:
    name = "percent_agreement"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    pats = p.pairable()
    if pats.n_patterns == 0:
        return _none(name, "no unit has two or more ratings")
    m = pats.m
    agree = pats.rowsum(pats.cnt * (pats.cnt - 1)) / (m * (m - 1))
    nu = pats.n_units
    est = float(pats.freq @ agree) / nu
    if nu < 2 or n_boot == 0:
        return _make(name, est, n_units=nu, ci_reason=_ci_reason(nu))
    return _Boot(
        pats,
        _linear(agree[:, None], lambda s: s[:, 0] / nu),
        lambda lo, hi: _make(name, est, lo, hi, n_units=nu),
    )


def percent_agreement(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Pairwise percent agreement, averaged over units with at least two ratings.

    For unit *i* with ``m_i`` ratings of which ``n_ik`` fall in category *k*, the
    agreement is ``sum_k n_ik (n_ik - 1) / (m_i (m_i - 1))`` (the share of agreeing
    rater pairs); the statistic is its mean over units. Values are compared for
    equality (nominal). The 95% CI is a percentile bootstrap over units (drawn
    exactly, as pattern counts; see the module notes).

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.
    n_boot : int
        Bootstrap replicates (0 = no interval).
    seed : int or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    Estimate

    References
    ----------
    .. [1] Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters.
       Psychological Bulletin, 76(5), 378-382 (the per-subject agreement ``P_i``).
    """
    _check_boot(n_boot)
    p = _prepare(data, unit, rater, value, numeric=False)
    return _run([_plan_percent_agreement(p, n_boot)], n_boot, seed)[0]


# --------------------------------------------------------------------------- Krippendorff's alpha


def _alpha_from_coincidences(
    o: npt.NDArray[np.float64], values: npt.NDArray[np.float64], level: str
) -> npt.NDArray[np.float64]:
    """Alpha for a stack of coincidence matrices ``o`` of shape (..., K, K)."""
    nc = o.sum(axis=-1)  # (..., K)
    ntot = nc.sum(axis=-1)  # (...)
    k = o.shape[-1]
    if level == "nominal":
        d2 = 1.0 - np.eye(k)
    elif level == "interval":
        d2 = (values[:, None] - values[None, :]) ** 2
    elif level == "ratio":
        d2 = _ratio_d2(values[:, None], values[None, :])
    else:  # ordinal: depends on the marginals of each replicate
        cs = np.cumsum(nc, axis=-1)
        # sum_{g=c..k} n_g - (n_c + n_k)/2 for c <= k, symmetric
        between = cs[..., None, :] - cs[..., :, None] + nc[..., :, None]
        d = between - (nc[..., :, None] + nc[..., None, :]) / 2.0
        d2 = (
            np.where(
                np.arange(k)[:, None] <= np.arange(k)[None, :],
                d,
                np.swapaxes(d, -1, -2),
            )
            ** 2
        )
    do = (o * d2).sum(axis=(-2, -1))
    de = (nc[..., :, None] * nc[..., None, :] * d2).sum(axis=(-2, -1))
    return 1.0 - _safe_div((ntot - 1.0) * do, de)


def _ratio_d2(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ratio metric ``((a - b) / (a + b))**2``, 0 where both are 0."""
    return np.nan_to_num(_safe_div((a - b) ** 2, (a + b) ** 2), nan=0.0)


def _ratio_expected(
    nc: npt.NDArray[np.float64], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``n^T D n`` per row of ``nc`` for the ratio metric D, in row blocks of D."""
    k = len(values)
    step = max(1, _BOOT_CHUNK_CELLS // max(k, 1))
    out = np.zeros(nc.shape[0])
    for s in range(0, k, step):
        d2 = _ratio_d2(values[s : s + step, None], values[None, :])
        out += ((nc[:, s : s + step] @ d2) * nc).sum(axis=1)
    return out


def _alpha_stat(pats: _Patterns, values: npt.NDArray[np.float64], level: str) -> _Stat:
    """Alpha as a function of pattern weights, from per-pattern sufficient statistics.

    With ``o`` the coincidence matrix, ``n_c`` its marginals and ``N`` their total,
    alpha = 1 - (N - 1) sum o_ck d2_ck / sum n_c n_k d2_ck (Krippendorff 2011). Per pattern
    (``m`` ratings, counts ``n``): nominal: the observed disagreement
    ``(m^2 - sum n_c^2) / (m - 1)`` and the counts; interval: the observed
    ``2m/(m-1) sum n_c (v_c - mean)^2``, ``m``, ``sum n v`` and ``sum n v^2`` (values centred;
    expected = 2 N sum n v^2 - 2 (sum n v)^2); ratio: the observed and the counts; ordinal:
    the pattern's coincidences, because the ordinal metric is the squared difference of the
    categories' mid-ranks ``sum_{g<c} n_g + n_c/2`` in each replicate's own marginals.
    Memory is linear in the patterns (the ratio metric needs categories^2 work per replicate).
    """
    n_pat, k = pats.n_patterns, pats.n_cols
    m, row, col, cnt = pats.m, pats.row, pats.col, pats.cnt
    idx = np.arange(n_pat)
    if level == "interval":
        marg = pats.marginals()
        v = values - (marg @ values) / marg.sum()  # alpha is shift invariant
        s1 = pats.rowsum(cnt * v[col])
        dev = v[col] - (s1 / m)[row]
        do = 2.0 * m / (m - 1.0) * pats.rowsum(cnt * dev**2)

        def interval(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            tot = s[:, 1]
            de = 2.0 * (tot * s[:, 3] - s[:, 2] ** 2)
            return 1.0 - _safe_div((tot - 1.0) * s[:, 0], de)

        return _linear(np.column_stack([do, m, s1, pats.rowsum(cnt * v[col] ** 2)]), interval)
    if level == "ordinal":
        pr, ci, cj, val = _pair_entries(pats)
        counts = _features(row, col, cnt, (n_pat, k))

        def ordinal(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            nc = _matmul(w, counts)  # replicates x categories: the marginals
            tot = nc.sum(axis=1)
            mid = np.cumsum(nc, axis=1) - nc / 2.0
            mid -= ((nc * mid).sum(axis=1) / tot)[:, None]  # centred mid-ranks
            do = ((mid[:, cj] - mid[:, ci]) ** 2 * val * w[:, pr]).sum(axis=1)
            return 1.0 - _safe_div((tot - 1.0) * do, 2.0 * tot * (nc * mid**2).sum(axis=1))

        return _Stat(max(len(val), k), ordinal)
    if level == "nominal":
        do = (m**2 - pats.rowsum(cnt**2)) / (m - 1.0)

        def expected(nc: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            return nc.sum(axis=1) ** 2 - (nc**2).sum(axis=1)
    else:
        pr, ci, cj, val = _pair_entries(pats)
        do = np.bincount(pr, weights=val * _ratio_d2(values[ci], values[cj]), minlength=n_pat)

        def expected(nc: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            return _ratio_expected(nc, values)

    f = _features(
        np.concatenate([idx, row]), np.concatenate([np.zeros(n_pat, np.intp), col + 1]),
        np.concatenate([do, cnt]), (n_pat, k + 1),
    )

    def from_counts(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        nc = s[:, 1:]
        return 1.0 - _safe_div((nc.sum(axis=1) - 1.0) * s[:, 0], expected(nc))

    return _linear(f, from_counts)


def _plan_alpha(p: _Prepared, level: str, n_boot: int) -> Estimate | _Boot:
    name = "krippendorff_alpha"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    if level == "ratio" and p.numeric is not None and (p.numeric < 0).any():
        raise ValueError("ratio level needs non-negative values")
    pats = p.pairable()
    nu = pats.n_units
    if nu == 0:
        return _none(name, "no unit has two or more ratings (no pairable values)")
    if nu < 2:
        return _none(name, "a single unit: reliability not estimable", nu)
    cpats, present = pats.compact_columns()
    k = cpats.n_cols
    if k < 2:
        return _none(name, "all pairable ratings are the same value (no variation)", nu)
    cat_values = (
        p.categories[present].astype(np.float64)
        if level in ("interval", "ratio")
        else np.arange(k, dtype=np.float64)
    )
    stat = _alpha_stat(cpats, cat_values, level)
    if max(nu * k * k, p.n_raters * nu) <= _KRIPPENDORFF_PACKAGE_MAX_CELLS:
        # the reference implementation on a raters x units matrix (codes for nominal/ordinal)
        keep = p.ratings_per_unit() >= 2
        remap = np.cumsum(keep) - 1
        sel = keep[p.unit_idx]
        mat = np.full((p.n_raters, nu), np.nan)
        cols = remap[p.unit_idx[sel]]
        if level in ("interval", "ratio"):
            vals = p.numeric if p.numeric is not None else p.code.astype(np.float64)
            mat[p.rater_idx[sel], cols] = vals[sel]
        else:
            mat[p.rater_idx[sel], cols] = p.code[sel]
        est = float(krippendorff.alpha(reliability_data=mat, level_of_measurement=level))
    else:
        est = stat.point(cpats)
    if n_boot == 0:
        return _make(name, est, n_units=nu, ci_reason=_ci_reason(nu))
    # the uncompacted patterns: the same order (and replicates) as the other statistics
    return _Boot(
        pats, stat, lambda lo, hi: _make(name, est, lo, hi, n_units=nu, clip=(-1.0, 1.0))
    )


def krippendorff_alpha(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    level: Level = "nominal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Krippendorff's alpha at the nominal, ordinal, interval or ratio level.

    The point estimate is computed by the ``krippendorff`` package (reliability
    data matrix raters x units, NaN for missing) for small data; for larger data
    (units x categories^2 or raters x units above 250,000) the same coincidence-matrix
    formula is evaluated here from the distinct rating patterns (tested to agree
    with the package), in memory linear in the data. Units with fewer than two
    ratings are not pairable and do not count.

    The 95% CI is a percentile bootstrap over units (resampling units, drawn
    exactly as pattern counts, rebuilding the coincidence matrix from per-pattern
    contributions, and for the ordinal level recomputing the rank-based metric
    from each replicate's marginals). This is not Krippendorff's own bootstrap,
    which resamples pairable values.

    Cost: linear in the ratings for the point estimate; the bootstrap costs
    O(n_boot x patterns) (a few hundred patterns for nominal codes, up to one per
    unit for continuous values), in memory bounded by chunking; the ratio metric
    adds O(categories^2) time per replicate.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Level of measurement. Anything but nominal needs numeric values (or an
        ordered categorical for ordinal).
    n_boot : int
        Bootstrap replicates (0 = no interval).
    seed : int or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    Estimate

    References
    ----------
    .. [1] Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability.
       https://repository.upenn.edu/asc_papers/43
    .. [2] Hayes, A. F., & Krippendorff, K. (2007). Answering the call for a standard
       reliability measure for coding data. Communication Methods and Measures, 1(1), 77-89.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    _check_boot(n_boot)
    p = _prepare(
        data, unit, rater, value, numeric=level != "nominal", ordered=level == "ordinal"
    )
    return _run([_plan_alpha(p, level, n_boot)], n_boot, seed)[0]


# --------------------------------------------------------------------------- Cohen's kappa


def _kappa_table(
    table: npt.NDArray[np.float64], weights: str | None
) -> tuple[float, float] | str:
    """Kappa and its asymptotic SE (Fleiss, Cohen & Everitt 1969) from a K x K count table."""
    n = table.sum()
    k = table.shape[0]
    idx = np.arange(k, dtype=np.float64)
    if weights is None:
        w = np.eye(k)
    elif weights == "linear":
        w = 1.0 - np.abs(idx[:, None] - idx[None, :]) / (k - 1)
    else:
        w = 1.0 - (idx[:, None] - idx[None, :]) ** 2 / (k - 1) ** 2
    pij = table / n
    pi, pj = pij.sum(axis=1), pij.sum(axis=0)
    po = float((w * pij).sum())
    pe = float((w * np.outer(pi, pj)).sum())
    if 1.0 - pe <= 1e-12:
        return "chance agreement is 1 (both raters used a single category): kappa undefined"
    kappa = (po - pe) / (1.0 - pe)
    wi = w @ pj  # weighted mean over columns, for each row category
    wj = pi @ w  # for each column category
    inner = (pij * (w - (wi[:, None] + wj[None, :]) * (1.0 - kappa)) ** 2).sum()
    var = (inner - (kappa - pe * (1.0 - kappa)) ** 2) / (n * (1.0 - pe) ** 2)
    return kappa, float(np.sqrt(max(var, 0.0)))


def _cohen(p: _Prepared, weights: str | None) -> Estimate:
    name = "cohen_kappa" if weights is None else f"weighted_kappa_{weights}"
    if p.n_raters != 2:
        if p.n_raters < 2:
            return _none(name, "one rater only")
        raise ValueError(f"cohen_kappa needs exactly two raters, got {p.n_raters}")
    k = p.n_categories
    pair = np.full((2, p.n_units), -1, dtype=np.int64)
    pair[p.rater_idx, p.unit_idx] = p.code
    both = (pair >= 0).all(axis=0)
    nu = int(both.sum())
    if nu < 2:
        return _none(name, "fewer than two units rated by both raters", nu)
    table = np.bincount(pair[0, both] * k + pair[1, both], minlength=k * k).reshape(k, k)
    used = (table.sum(axis=0) + table.sum(axis=1)) > 0  # the union of both raters' values
    if used.sum() < 2:
        return _none(name, "both raters used a single category: kappa undefined", nu)
    res = _kappa_table(table[np.ix_(used, used)].astype(float), weights)
    if isinstance(res, str):
        return _none(name, res, nu)
    kappa, se = res
    return _wald(name, kappa, se, n_units=nu)


def cohen_kappa(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    weights: Weights = None,
) -> Estimate:
    """Cohen's kappa (unweighted, linear or quadratic weights) for exactly two raters.

    Only units rated by both raters count. The categories are the union of the
    values both raters used on those units; for weighted kappa they are sorted
    and weights are agreement weights on category ranks: linear
    ``1 - |i-j|/(K-1)``, quadratic ``1 - (i-j)^2/(K-1)^2`` (the convention of
    ``sklearn.metrics.cohen_kappa_score``; weights do not depend on the numeric
    spacing of the values). The 95% CI is ``kappa +/- 1.96 SE`` (clipped to
    [-1, 1]) with the large-sample (non-null) SE of Fleiss, Cohen & Everitt
    (1969), which covers the unweighted case with identity weights.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating, exactly two distinct raters.
    unit, rater, value : str
        Column names.
    weights : {None, "linear", "quadratic"}
        Weighting scheme; weighted kappa needs numeric (or ordered categorical) values.

    Returns
    -------
    Estimate

    References
    ----------
    .. [1] Cohen, J. (1960). A coefficient of agreement for nominal scales.
       Educational and Psychological Measurement, 20(1), 37-46.
    .. [2] Cohen, J. (1968). Weighted kappa. Psychological Bulletin, 70(4), 213-220.
    .. [3] Fleiss, J. L., Cohen, J., & Everitt, B. S. (1969). Large sample standard errors
       of kappa and weighted kappa. Psychological Bulletin, 72(5), 323-327.
    """
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    p = _prepare(data, unit, rater, value, numeric=weights is not None, ordered=True)
    return _cohen(p, weights)


# --------------------------------------------------------------------------- Fleiss' kappa


def _fleiss(p: _Prepared) -> Estimate:
    name = "fleiss_kappa"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    pats = p.patterns()
    m_p = pats.m.astype(np.int64)
    elig = m_p >= 2
    if not elig.any():
        return _none(name, "no unit has two or more ratings")
    bc = np.bincount(m_p[elig], weights=pats.freq[elig])
    m = int(np.flatnonzero(bc == bc.max())[-1])
    x = pats.select(m_p == m)
    nu = x.n_units
    dropped = p.n_units - nu
    note = f"{dropped} unit(s) without exactly {m} ratings dropped" if dropped else None
    if nu < 2:
        return _none(
            name, "fewer than two units with the same number of ratings", nu, note
        )
    pj = x.marginals() / (nu * m)
    pbar = float(x.freq @ x.rowsum(x.cnt * (x.cnt - 1))) / (m * (m - 1)) / nu
    pe = float((pj**2).sum())
    if 1.0 - pe <= 1e-12:
        return _none(name, "all ratings are in one category: kappa undefined", nu, note)
    kappa = (pbar - pe) / (1.0 - pe)
    pq = pj * (1.0 - pj)
    spq = pq.sum()
    var = 2.0 / (spq**2 * nu * m * (m - 1)) * (spq**2 - (pq * (1.0 - 2.0 * pj)).sum())
    se = np.sqrt(max(var, 0.0))
    return _wald(name, kappa, se, n_units=nu, note=note)


def fleiss_kappa(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
) -> Estimate:
    """Fleiss' kappa for many raters (nominal categories).

    Fleiss' kappa needs the same number of ratings ``m`` per unit. ``m`` is the
    most common number of ratings among units with at least two (ties: the larger);
    other units are dropped and counted in ``note``. The 95% CI is
    ``kappa +/- 1.96 SE`` (clipped to [-1, 1]) with the asymptotic SE of Fleiss,
    Nee & Landis (1979), which is derived under the hypothesis kappa = 0 (as in
    most software) and is therefore approximate for large kappa.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.

    Returns
    -------
    Estimate

    References
    ----------
    .. [1] Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters.
       Psychological Bulletin, 76(5), 378-382.
    .. [2] Fleiss, J. L., Nee, J. C. M., & Landis, J. R. (1979). Large sample variance of
       kappa in the case of different sets of raters. Psychological Bulletin, 86(5), 974-977.
    """
    return _fleiss(_prepare(data, unit, rater, value, numeric=False))


# --------------------------------------------------------------------------- Gwet's AC1


def _plan_ac1(p: _Prepared, n_boot: int) -> Estimate | _Boot:
    name = "gwet_ac1"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    pats = p.pairable()
    nu = pats.n_units
    if nu == 0:
        return _none(name, "no unit has two or more ratings")
    if nu < 2:
        return _none(name, "a single unit: reliability not estimable", nu)
    cpats, _ = pats.compact_columns()
    k = cpats.n_cols
    if k < 2:
        return _none(name, "only one category was used: AC1 undefined", nu)
    n_pat, m = cpats.n_patterns, cpats.m
    agree = cpats.rowsum(cpats.cnt * (cpats.cnt - 1)) / (m * (m - 1))
    f = _features(
        np.concatenate([np.arange(n_pat), cpats.row]),
        np.concatenate([np.zeros(n_pat, np.intp), cpats.col + 1]),
        np.concatenate([agree, cpats.cnt / m[cpats.row]]),
        (n_pat, k + 1),
    )

    def ac1(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        pa = s[:, 0] / nu
        pik = s[:, 1:] / nu
        pe = (pik * (1.0 - pik)).sum(axis=-1) / (k - 1)
        return _safe_div(pa - pe, 1.0 - pe)

    stat = _linear(f, ac1)
    est = stat.point(cpats)
    if n_boot == 0:
        return _make(name, est, n_units=nu, ci_reason=_ci_reason(nu))
    return _Boot(
        pats, stat, lambda lo, hi: _make(name, est, lo, hi, n_units=nu, clip=(-1.0, 1.0))
    )


def gwet_ac1(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Gwet's first-order agreement coefficient AC1 (nominal), any number of raters.

    With ``r_ik`` raters putting unit *i* in category *k*, ``r_i`` ratings of unit
    *i* and ``K`` categories observed: ``p_a`` is the mean over units with
    ``r_i >= 2`` of ``sum_k r_ik (r_ik - 1) / (r_i (r_i - 1))``;
    ``pi_k`` is the mean over units with ``r_i >= 2`` of ``r_ik / r_i``;
    ``p_e = sum_k pi_k (1 - pi_k) / (K - 1)``; ``AC1 = (p_a - p_e) / (1 - p_e)``.
    (Gwet 2014 averages ``pi_k`` over all rated units; here units that cannot
    contribute to agreement are excluded throughout, so the result is the same
    for complete data.) The 95% CI is a percentile bootstrap over units (drawn
    exactly, as pattern counts; see the module notes).

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.
    n_boot : int
        Bootstrap replicates (0 = no interval).
    seed : int or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    Estimate

    References
    ----------
    .. [1] Gwet, K. L. (2008). Computing inter-rater reliability and its variance in the
       presence of high agreement. British Journal of Mathematical and Statistical
       Psychology, 61(1), 29-48.
    .. [2] Gwet, K. L. (2014). Handbook of Inter-Rater Reliability (4th ed.), ch. 4.
    """
    _check_boot(n_boot)
    p = _prepare(data, unit, rater, value, numeric=False)
    return _run([_plan_ac1(p, n_boot)], n_boot, seed)[0]


# --------------------------------------------------------------------------- ICC

_ICC_NAMES = ("icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k")


def icc(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
) -> dict[str, Estimate]:
    """The six Shrout-Fleiss intraclass correlations with F-based 95% CIs.

    Computed from a two-way ANOVA (vectorised sums of squares of the units x raters
    matrix, linear in the data) on the fully crossed units only: units missing
    any rater's rating are dropped (counted in each Estimate's ``note``).
    ``icc1``: one-way random, single rater; ``icc2``: two-way random, absolute
    agreement, single rater; ``icc3``: two-way mixed, consistency, single rater;
    ``*k``: the same for the mean of the k raters. CIs follow Shrout & Fleiss
    (1979) and McGraw & Wong (1996) (ICC(2,1) with Satterthwaite-type df), as in
    R ``psych::ICC`` and pingouin ``intraclass_corr``.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating; numeric values.
    unit, rater, value : str
        Column names.

    Returns
    -------
    dict of str to Estimate
        Keys ``icc1, icc2, icc3, icc1k, icc2k, icc3k``.

    References
    ----------
    .. [1] Shrout, P. E., & Fleiss, J. L. (1979). Intraclass correlations: Uses in
       assessing rater reliability. Psychological Bulletin, 86(2), 420-428.
    .. [2] McGraw, K. O., & Wong, S. P. (1996). Forming inferences about some intraclass
       correlation coefficients. Psychological Methods, 1(1), 30-46.
    """
    return _icc(_prepare(data, unit, rater, value, numeric=True, ordered=True))


def _icc(p: _Prepared) -> dict[str, Estimate]:
    # A zero denominator (e.g. ICC(2,k) when MSR + (MSC - MSE)/n = 0) gives inf/NaN, which
    # _make turns into "not computable"; no warning escapes to the caller.
    with np.errstate(divide="ignore", invalid="ignore"):
        return _icc_unguarded(p)


def _icc_unguarded(p: _Prepared) -> dict[str, Estimate]:
    num = p.numeric if p.numeric is not None else p.code.astype(np.float64)
    k = p.n_raters
    if k < 2:
        return {n: _none(n, "one rater only") for n in _ICC_NAMES}
    # units x raters matrix of the fully crossed units only (no duplicates: k ratings = all raters)
    full = p.ratings_per_unit() == k
    n = int(full.sum())
    sel = full[p.unit_idx]
    y = np.empty((n, k))
    y[(np.cumsum(full) - 1)[p.unit_idx[sel]], p.rater_idx[sel]] = num[sel]
    dropped = p.n_units - n
    note = f"{dropped} unit(s) not rated by all {k} raters dropped" if dropped else None
    if n < 2:
        return {
            nm: _none(nm, "fewer than two units rated by all raters", n, note)
            for nm in _ICC_NAMES
        }
    gm = y.mean()
    rows = y.mean(axis=1)
    cols = y.mean(axis=0)
    sst = ((y - gm) ** 2).sum()
    ssr = k * ((rows - gm) ** 2).sum()
    ssc = n * ((cols - gm) ** 2).sum()
    sse = max(sst - ssr - ssc, 0.0)
    ssw = max(sst - ssr, 0.0)
    msr, msc = ssr / (n - 1), ssc / (k - 1)
    mse, msw = sse / ((n - 1) * (k - 1)), ssw / (n * (k - 1))
    scale = max(sst / (n * k), 1e-300)
    if msr <= 1e-12 * scale or sst <= 0:
        reason = "no variance between units: ICC undefined"
        return {nm: _none(nm, reason, n, note) for nm in _ICC_NAMES}

    out: dict[str, Estimate] = {}
    f = sps.f.ppf
    # ICC(1) family
    icc1 = (msr - msw) / (msr + (k - 1) * msw)
    icc1k = (msr - msw) / msr
    if msw > 1e-12 * scale:
        f1 = msr / msw
        df1, df2 = n - 1, n * (k - 1)
        f1l, f1u = f1 / f(0.975, df1, df2), f1 * f(0.975, df2, df1)
        out["icc1"] = _make(
            "icc1",
            icc1,
            (f1l - 1) / (f1l + k - 1),
            (f1u - 1) / (f1u + k - 1),
            n_units=n,
            note=note,
        )
        out["icc1k"] = _make(
            "icc1k", icc1k, 1 - 1 / f1l, 1 - 1 / f1u, n_units=n, note=note
        )
    else:
        cr = "no within-unit variance: F-based interval undefined"
        out["icc1"] = _make("icc1", icc1, n_units=n, note=note, ci_reason=cr)
        out["icc1k"] = _make("icc1k", icc1k, n_units=n, note=note, ci_reason=cr)
    # ICC(2) and ICC(3) families
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc2k = (msr - mse) / (msr + (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    icc3k = (msr - mse) / msr
    if mse > 1e-12 * scale:
        f3 = msr / mse
        df1, df2 = n - 1, (n - 1) * (k - 1)
        f3l, f3u = f3 / f(0.975, df1, df2), f3 * f(0.975, df2, df1)
        out["icc3"] = _make(
            "icc3",
            icc3,
            (f3l - 1) / (f3l + k - 1),
            (f3u - 1) / (f3u + k - 1),
            n_units=n,
            note=note,
        )
        out["icc3k"] = _make(
            "icc3k", icc3k, 1 - 1 / f3l, 1 - 1 / f3u, n_units=n, note=note
        )
        fc = msc / mse
        vn = (
            (k - 1)
            * (n - 1)
            * (k * icc2 * fc + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        )
        vd = (n - 1) * k**2 * icc2**2 * fc**2 + (
            n * (1 + (k - 1) * icc2) - k * icc2
        ) ** 2
        v = vn / vd if vd > 0 else np.nan
        if np.isfinite(v) and v > 0:
            f2u, f2l = f(0.975, n - 1, v), f(0.975, v, n - 1)
            c = k * msc + (k * n - k - n) * mse
            lb2 = n * (msr - f2u * mse) / (f2u * c + n * msr)
            ub2 = n * (f2l * msr - mse) / (c + n * f2l * msr)
            out["icc2"] = _make("icc2", icc2, lb2, ub2, n_units=n, note=note)
            # Spearman-Brown step-up of the ICC(2,1) limits (as R psych::ICC). It is
            # increasing only above -1/(k-1): a lower limit at or below that makes the
            # ICC(2,k) interval unbounded below, which is reported, not a wrong number.
            if 1 + lb2 * (k - 1) > 1e-12:
                out["icc2k"] = _make(
                    "icc2k",
                    icc2k,
                    lb2 * k / (1 + lb2 * (k - 1)),
                    ub2 * k / (1 + ub2 * (k - 1)),
                    n_units=n,
                    note=note,
                )
            else:
                out["icc2k"] = _make(
                    "icc2k", icc2k, n_units=n, note=note,
                    ci_reason="the ICC(2,1) lower limit is at or below -1/(k-1): "
                    "the ICC(2,k) interval is unbounded below",
                )
        else:
            out["icc2"] = _make("icc2", icc2, n_units=n, note=note)
            out["icc2k"] = _make("icc2k", icc2k, n_units=n, note=note)
    else:
        cr = "no residual variance: F-based interval undefined"
        for nm, est in (
            ("icc2", icc2),
            ("icc3", icc3),
            ("icc2k", icc2k),
            ("icc3k", icc3k),
        ):
            out[nm] = _make(nm, est, n_units=n, note=note, ci_reason=cr)
    return {nm: out[nm] for nm in _ICC_NAMES}




# --------------------------------------------------------------------------- summary


def _summary(
    p: _Prepared, nom: _Prepared, level: str, n_boot: int, seed: int | None
) -> dict[str, Any]:
    """The summary of prepared data: ``p`` encoded for ``level``, ``nom`` nominally."""
    pa, alpha, ac1 = _run(
        [
            _plan_percent_agreement(nom, n_boot),
            _plan_alpha(p, level, n_boot),
            _plan_ac1(nom, n_boot),
        ],
        n_boot,
        seed,
    )
    ests: list[Estimate] = [pa, alpha, _fleiss(nom), ac1]
    if p.n_raters == 2:
        ests.append(_cohen(nom, None))
        if level != "nominal":
            ests.append(_cohen(p, "linear"))
            ests.append(_cohen(p, "quadratic"))
    if level != "nominal":
        ests.extend(_icc(p).values())
    statistics: dict[str, dict[str, Any]] = {}
    for e in ests:
        d: dict[str, Any] = {
            "estimate": e.estimate,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
        }
        if e.estimate is None:
            d["reason"] = e.reason
        statistics[e.name] = d
    return {
        "n_units": p.n_units,
        "n_raters": p.n_raters,
        "n_ratings": p.n_ratings,
        "level": level,
        "statistics": statistics,
    }


def irr_summary(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    level: Level = "nominal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> dict[str, Any]:
    """All applicable statistics in the fixed ``mbtcode irr --json`` shape.

    Returns ``{"n_units", "n_raters", "n_ratings", "level", "statistics": {NAME:
    {"estimate", "ci_low", "ci_high"}}}``; a statistic whose estimate is null also
    has ``"reason"``. Cohen's kappas appear only for exactly two raters; ICCs and
    weighted kappas only for ordinal, interval or ratio levels. Counts are over
    non-missing ratings.

    The data are validated and encoded once and shared by all statistics; the
    bootstrap statistics share one stream of replicates. Every value equals what
    the individual function returns for the same arguments.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Level of measurement.
    n_boot : int
        Bootstrap replicates for the bootstrap intervals.
    seed : int or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    dict
        JSON-serialisable; never contains NaN or infinity.

    References
    ----------
    .. [1] See the individual functions of this module.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    idx = _prepare_index(data, unit, rater, value)
    vals = _values(data, value, idx)
    p = _with_values(
        idx, vals, value, numeric=level != "nominal", ordered=level == "ordinal"
    )
    _check_boot(n_boot)
    if level == "nominal" or _same_partition_as_nominal(vals, level):
        nom = p  # the same categories: share the rating patterns
    else:
        nom = _with_values(idx, vals, value, numeric=False, ordered=True)
    return _summary(p, nom, level, n_boot, seed)


def _label(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def irr_summary_one_vs_rest(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    *,
    n_boot: int = 1000,
    seed: int | None = 0,
) -> dict[Any, dict[str, Any]]:
    """Nominal :func:`irr_summary` of "this code vs any other code", for every code.

    For each distinct value ``c`` of the value column, the result is exactly
    ``irr_summary`` of the data with each non-missing value replaced by
    ``value == c`` (missing ratings stay missing), in the same shape. The data are
    validated and encoded once, and the binary rating patterns are derived from
    the full ones, so all codes together cost little more than one summary.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per rating.
    unit, rater, value : str
        Column names.
    n_boot : int
        Bootstrap replicates for the bootstrap intervals.
    seed : int or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    dict
        Code (as in the data; numpy scalars as Python scalars) to summary, codes in
        sorted order when they are orderable.
    """
    _check_boot(n_boot)
    idx = _prepare_index(data, unit, rater, value)
    p = _with_values(idx, _values(data, value, idx), value, numeric=False, ordered=False)
    out: dict[Any, dict[str, Any]] = {}
    for c, label in enumerate(p.categories):
        pats, present = _binary_patterns(p.patterns(), c)
        is_c = p.code == c
        code = is_c.astype(np.int32) if present.all() else np.zeros(len(is_c), np.int32)
        b = _Prepared(
            unit_idx=p.unit_idx,
            rater_idx=p.rater_idx,
            numeric=None,
            n_units=p.n_units,
            n_raters=p.n_raters,
            rater_labels=p.rater_labels,
            cache={
                "code": code,
                "categories": np.array([False, True])[present],
                "m": p.ratings_per_unit(),
                "patterns": pats,
            },
        )
        out[_label(label)] = _summary(b, b, "nominal", n_boot, seed)
    return out
