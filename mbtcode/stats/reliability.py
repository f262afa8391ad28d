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
  the replicates for which the statistic is defined.
* Weighted kappa uses agreement weights on the *ranks* of the sorted
  categories: linear ``1 - |i-j|/(K-1)`` (Cicchetti & Allison 1971) and
  quadratic ``1 - (i-j)^2/(K-1)^2`` (Fleiss & Cohen 1973), the convention of
  ``sklearn.metrics.cohen_kappa_score`` and R ``irr::kappa2``.
* Asymptotic intervals are ``estimate +/- 1.96 SE``, clipped to [-1, 1].

This module imports only numpy, pandas, scipy and krippendorff.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

import krippendorff
import numpy as np
import numpy.typing as npt
import pandas as pd
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
    "krippendorff_alpha",
    "percent_agreement",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"] | None
_WEIGHTS: tuple[str | None, ...] = (None, "linear", "quadratic")

_LEVELS: tuple[str, ...] = get_args(Level)
_Z975 = float(sps.norm.ppf(0.975))
# Above this many cells (units x categories^2) the krippendorff package's temporaries
# get large; the point estimate then comes from the equivalent coincidence matrix here.
_KRIPPENDORFF_PACKAGE_MAX_CELLS = 20_000_000
# Cap on the number of bootstrap weights held in memory at once.
_BOOT_CHUNK_CELLS = 4_000_000


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


@dataclass(frozen=True)
class _Prepared:
    unit_idx: npt.NDArray[np.intp]  # per rating
    rater_idx: npt.NDArray[np.intp]  # per rating
    code: npt.NDArray[np.intp]  # per rating: index into categories
    categories: npt.NDArray[Any]  # sorted when orderable
    numeric: npt.NDArray[np.float64] | None  # per rating values, when numeric
    n_units: int
    n_raters: int
    rater_labels: npt.NDArray[Any]

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def counts(self) -> npt.NDArray[np.float64]:
        """Units x categories matrix of rating counts."""
        k = self.n_categories
        flat = np.bincount(self.unit_idx * k + self.code, minlength=self.n_units * k)
        return flat.reshape(self.n_units, k).astype(np.float64)


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
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in (unit, rater, value) if c not in data.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; columns are {list(data.columns)}"
        )
    if len({unit, rater, value}) != 3:
        raise ValueError("unit, rater and value must be three different columns")
    if data[unit].isna().any():
        raise ValueError(f"column {unit!r} has missing unit identifiers")
    if data[rater].isna().any():
        raise ValueError(f"column {rater!r} has missing rater identifiers")
    dup = data.duplicated(subset=[unit, rater], keep=False)
    if dup.any():
        first = data.loc[dup, [unit, rater]].iloc[0]
        raise ValueError(
            f"duplicate (unit, rater) pairs: {int(dup.sum())} rows, e.g. "
            f"{unit}={first[unit]!r}, {rater}={first[rater]!r}"
        )
    d = data.loc[data[value].notna(), [unit, rater, value]]
    vals = d[value]
    num: npt.NDArray[np.float64] | None = None
    if numeric:
        if (
            isinstance(vals.dtype, pd.CategoricalDtype)
            and vals.cat.ordered
            and not ordered
        ):
            raise ValueError(
                f"column {value!r} must be numeric for this level of measurement"
            )
        if isinstance(vals.dtype, pd.CategoricalDtype) and vals.cat.ordered:
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
        codes, cats = np.unique(num, return_inverse=True)[1], np.unique(num)
        if isinstance(d[value].dtype, pd.CategoricalDtype) and d[value].cat.ordered:
            cats = np.asarray(d[value].cat.categories)[cats.astype(np.intp)]
    else:
        try:
            codes, cats = pd.factorize(vals, sort=True)
        except (
            TypeError
        ):  # mixed, unorderable types: order is irrelevant for nominal data
            codes, cats = pd.factorize(vals.astype(str), sort=True)
        cats = np.asarray(cats)
    u_codes, u_labels = pd.factorize(d[unit], sort=False)
    r_codes, r_labels = pd.factorize(d[rater], sort=True)
    return _Prepared(
        unit_idx=np.asarray(u_codes, dtype=np.intp),
        rater_idx=np.asarray(r_codes, dtype=np.intp),
        code=np.asarray(codes, dtype=np.intp),
        categories=np.asarray(cats),
        numeric=num,
        n_units=len(u_labels),
        n_raters=len(r_labels),
        rater_labels=np.asarray(r_labels),
    )


def _boot_weights(
    n: int, n_boot: int, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.float64]]:
    """Yield bootstrap resampling weights (counts of each unit) in memory-bounded chunks."""
    chunk = max(1, min(n_boot, _BOOT_CHUNK_CELLS // max(n, 1)))
    done = 0
    p = np.full(n, 1.0 / n)
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.multinomial(n, p, size=b).astype(np.float64)
        done += b


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


# --------------------------------------------------------------------------- percent agreement


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
    equality (nominal). The 95% CI is a percentile bootstrap over units.

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
    name = "percent_agreement"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    n = p.counts()
    m = n.sum(axis=1)
    keep = m >= 2
    if not keep.any():
        return _none(name, "no unit has two or more ratings")
    n, m = n[keep], m[keep]
    agree = (n * (n - 1)).sum(axis=1) / (m * (m - 1))
    est = agree.mean()
    nu = len(agree)
    if nu < 2 or n_boot == 0:
        return _make(
            name,
            est,
            n_units=nu,
            ci_reason="fewer than two units" if nu < 2 else "no bootstrap",
        )
    rng = np.random.default_rng(seed)
    reps = np.concatenate([w @ agree / nu for w in _boot_weights(nu, n_boot, rng)])
    lo, hi = _percentile_ci(reps)
    return _make(name, est, lo, hi, n_units=nu)


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
        s = values[:, None] + values[None, :]
        d2 = _safe_div((values[:, None] - values[None, :]) ** 2, s**2)
        d2 = np.nan_to_num(d2, nan=0.0)  # 0/0 only when both values are 0
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
    data matrix raters x units, NaN for missing) for small and medium data; for
    very large data (units x categories^2 > 2e7) the same coincidence-matrix
    formula is evaluated here (tested to agree with the package) so memory stays
    bounded. Units with fewer than two ratings are not pairable and do not count.

    The 95% CI is a percentile bootstrap over units (resampling units, rebuilding
    the coincidence matrix from per-unit contributions, and for the ordinal level
    recomputing the rank-based metric from each replicate's marginals). This is
    not Krippendorff's own bootstrap, which resamples pairable values.

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
    name = "krippendorff_alpha"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    if level == "ratio" and p.numeric is not None and (p.numeric < 0).any():
        raise ValueError("ratio level needs non-negative values")
    counts = p.counts()
    m = counts.sum(axis=1)
    keep = m >= 2
    nu = int(keep.sum())
    if nu == 0:
        return _none(name, "no unit has two or more ratings (no pairable values)")
    if nu < 2:
        return _none(name, "a single unit: reliability not estimable", nu)
    counts, m = counts[keep], m[keep]
    present = counts.sum(axis=0) > 0
    counts = counts[:, present]
    k = counts.shape[1]
    if k < 2:
        return _none(name, "all pairable ratings are the same value (no variation)", nu)
    cat_values = (
        p.categories[present].astype(np.float64)
        if level in ("interval", "ratio")
        else np.arange(k, dtype=np.float64)
    )
    # per-unit coincidence contributions: (n_u n_u^T - diag(n_u)) / (m_u - 1)
    if nu * k * k <= _KRIPPENDORFF_PACKAGE_MAX_CELLS:
        # package point estimate on a raters x units matrix (codes for nominal/ordinal)
        keep_units = np.flatnonzero(keep)
        remap = np.full(p.n_units, -1, dtype=np.intp)
        remap[keep_units] = np.arange(nu)
        sel = remap[p.unit_idx] >= 0
        mat = np.full((p.n_raters, nu), np.nan)
        if level in ("interval", "ratio"):
            vals = p.numeric if p.numeric is not None else p.code.astype(np.float64)
            mat[p.rater_idx[sel], remap[p.unit_idx[sel]]] = vals[sel]
        else:
            mat[p.rater_idx[sel], remap[p.unit_idx[sel]]] = p.code[sel]
        est = float(
            krippendorff.alpha(reliability_data=mat, level_of_measurement=level)
        )
    else:
        o = (counts / (m - 1)[:, None]).T @ counts - np.diag(
            (counts / (m - 1)[:, None]).sum(axis=0)
        )
        est = float(_alpha_from_coincidences(o, cat_values, level))
    if nu < 2 or n_boot == 0:
        return _make(
            name,
            est,
            n_units=nu,
            ci_reason="fewer than two units" if nu < 2 else "no bootstrap",
        )
    rng = np.random.default_rng(seed)
    scaled = counts / (m - 1)[:, None]
    reps: list[npt.NDArray[np.float64]] = []
    # per-unit flattened contributions would be nu x k^2; instead form each replicate's
    # coincidence matrix as N^T diag(w/(m-1)) N - diag(w^T N/(m-1)) in chunks.
    for w in _boot_weights(nu, n_boot, rng):
        o = np.einsum("bu,uk,ul->bkl", w, scaled, counts, optimize=True)
        diag = w @ scaled  # (b, k)
        o[:, np.arange(k), np.arange(k)] -= diag
        reps.append(_alpha_from_coincidences(o, cat_values, level))
    lo, hi = _percentile_ci(np.concatenate(reps))
    return _make(name, est, lo, hi, n_units=nu, clip=(-1.0, 1.0))


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
    name = "cohen_kappa" if weights is None else f"weighted_kappa_{weights}"
    if p.n_raters != 2:
        if p.n_raters < 2:
            return _none(name, "one rater only")
        raise ValueError(f"cohen_kappa needs exactly two raters, got {p.n_raters}")
    pair = np.full((p.n_units, 2), -1, dtype=np.intp)
    pair[p.unit_idx, p.rater_idx] = p.code
    pair = pair[(pair >= 0).all(axis=1)]
    nu = len(pair)
    if nu < 2:
        return _none(name, "fewer than two units rated by both raters", nu)
    used, pair = np.unique(pair, return_inverse=True)
    pair = pair.reshape(-1, 2)
    k = len(used)
    if k < 2:
        return _none(name, "both raters used a single category: kappa undefined", nu)
    table = (
        np.bincount(pair[:, 0] * k + pair[:, 1], minlength=k * k)
        .reshape(k, k)
        .astype(float)
    )
    res = _kappa_table(table, weights)
    if isinstance(res, str):
        return _none(name, res, nu)
    kappa, se = res
    return _wald(name, kappa, se, n_units=nu)


# --------------------------------------------------------------------------- Fleiss' kappa


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
    p = _prepare(data, unit, rater, value, numeric=False)
    name = "fleiss_kappa"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    counts = p.counts()
    m_u = counts.sum(axis=1).astype(np.int64)
    eligible = m_u[m_u >= 2]
    if eligible.size == 0:
        return _none(name, "no unit has two or more ratings")
    bc = np.bincount(eligible)
    m = int(np.flatnonzero(bc == bc.max())[-1])
    keep = m_u == m
    dropped = p.n_units - int(keep.sum())
    note = f"{dropped} unit(s) without exactly {m} ratings dropped" if dropped else None
    x = counts[keep]
    nu = len(x)
    if nu < 2:
        return _none(
            name, "fewer than two units with the same number of ratings", nu, note
        )
    pj = x.sum(axis=0) / (nu * m)
    pbar = ((x * (x - 1)).sum(axis=1) / (m * (m - 1))).mean()
    pe = float((pj**2).sum())
    if 1.0 - pe <= 1e-12:
        return _none(name, "all ratings are in one category: kappa undefined", nu, note)
    kappa = (pbar - pe) / (1.0 - pe)
    pq = pj * (1.0 - pj)
    spq = pq.sum()
    var = 2.0 / (spq**2 * nu * m * (m - 1)) * (spq**2 - (pq * (1.0 - 2.0 * pj)).sum())
    se = np.sqrt(max(var, 0.0))
    return _wald(name, kappa, se, n_units=nu, note=note)


# --------------------------------------------------------------------------- Gwet's AC1


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
    for complete data.) The 95% CI is a percentile bootstrap over units.

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
    name = "gwet_ac1"
    if p.n_raters < 2:
        return _none(name, "one rater only")
    counts = p.counts()
    r = counts.sum(axis=1)
    keep = r >= 2
    nu = int(keep.sum())
    if nu == 0:
        return _none(name, "no unit has two or more ratings")
    if nu < 2:
        return _none(name, "a single unit: reliability not estimable", nu)
    counts, r = counts[keep], r[keep]
    counts = counts[:, counts.sum(axis=0) > 0]
    k = counts.shape[1]
    if k < 2:
        return _none(name, "only one category was used: AC1 undefined", nu)
    agree = (counts * (counts - 1)).sum(axis=1) / (r * (r - 1))
    share = counts / r[:, None]

    def ac1(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        tot = w.sum(axis=-1)
        pa = (w @ agree) / tot
        pik = (w @ share) / np.asarray(tot)[..., None]
        pe = (pik * (1.0 - pik)).sum(axis=-1) / (k - 1)
        return _safe_div(pa - pe, 1.0 - pe)

    est = float(ac1(np.ones(nu)))
    if nu < 2 or n_boot == 0:
        return _make(
            name,
            est,
            n_units=nu,
            ci_reason="fewer than two units" if nu < 2 else "no bootstrap",
        )
    rng = np.random.default_rng(seed)
    reps = np.concatenate([ac1(w) for w in _boot_weights(nu, n_boot, rng)])
    lo, hi = _percentile_ci(reps)
    return _make(name, est, lo, hi, n_units=nu, clip=(-1.0, 1.0))


# --------------------------------------------------------------------------- ICC

_ICC_NAMES = ("icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k")


def icc(
    data: pd.DataFrame,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
) -> dict[str, Estimate]:
    """The six Shrout-Fleiss intraclass correlations with F-based 95% CIs.

    Computed from a two-way ANOVA on the fully crossed units only: units missing
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
    p = _prepare(data, unit, rater, value, numeric=True, ordered=True)
    num = p.numeric if p.numeric is not None else p.code.astype(np.float64)
    k = p.n_raters
    if k < 2:
        return {n: _none(n, "one rater only") for n in _ICC_NAMES}
    y = np.full((p.n_units, k), np.nan)
    y[p.unit_idx, p.rater_idx] = num
    full = ~np.isnan(y).any(axis=1)
    y = y[full]
    n = len(y)
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
            out["icc2k"] = _make(
                "icc2k",
                icc2k,
                lb2 * k / (1 + lb2 * (k - 1)),
                ub2 * k / (1 + ub2 * (k - 1)),
                n_units=n,
                note=note,
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
    p = _prepare(
        data, unit, rater, value, numeric=level != "nominal", ordered=level == "ordinal"
    )
    args = (data, unit, rater, value)
    ests: list[Estimate] = [
        percent_agreement(*args, n_boot=n_boot, seed=seed),
        krippendorff_alpha(*args, level=level, n_boot=n_boot, seed=seed),
        fleiss_kappa(*args),
        gwet_ac1(*args, n_boot=n_boot, seed=seed),
    ]
    if p.n_raters == 2:
        ests.append(cohen_kappa(*args))
        if level != "nominal":
            ests.append(cohen_kappa(*args, weights="linear"))
            ests.append(cohen_kappa(*args, weights="quadratic"))
    if level != "nominal":
        ests.extend(icc(*args).values())
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
        "n_ratings": len(p.code),
        "level": level,
        "statistics": statistics,
    }
