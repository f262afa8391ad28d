"""The large-data paths of mbtcode.stats.reliability against references.

* rating patterns (units collapsed into distinct count rows) against a plain
  ``numpy.unique`` of the dense units x categories matrix, for all three encodings;
* point estimates of the pattern path against the ``krippendorff`` package and loop
  implementations, on random data of many shapes (missing ratings, 1-5 ratings per unit,
  2-5 raters, 2-40 categories, all four levels);
* the pattern bootstrap against a naive loop bootstrap that resamples units (the same
  distribution: intervals agree within Monte Carlo error);
* a 200,000-unit study (must finish; speed is measured in bench/reliability_stats.py);
* degenerate data still give None with a reason, never NaN.
"""

from __future__ import annotations

import json
import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mbtcode.stats import reliability as rel

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def random_study(
    seed: int,
    n_units: int = 80,
    n_raters: int = 4,
    k: int = 5,
    p_missing: float = 0.2,
    p_agree: float = 0.7,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Raters x units matrix (NaN = missing) and its long format; values 1..k, some units
    rated by one rater only, some by all."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, k + 1, n_units)
    m = np.where(
        rng.random((n_raters, n_units)) < p_agree,
        truth,
        rng.integers(1, k + 1, (n_raters, n_units)),
    ).astype(float)
    m[rng.random(m.shape) < p_missing] = np.nan
    r, u = np.nonzero(~np.isnan(m))
    df = pd.DataFrame({"unit": u, "rater": r, "value": m[r, u]})
    return m, df


def counts_matrix(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Units x categories counts (categories = sorted distinct values) from a raters x units matrix."""
    cats = np.unique(m[~np.isnan(m)])
    return np.stack([(m == c).sum(axis=0) for c in cats], axis=1).astype(float), cats


# --------------------------------------------------------------------------- loop references


def pa_loop(counts: np.ndarray) -> float:
    vals = []
    for row in counts:
        mi = row.sum()
        if mi >= 2:
            vals.append(sum(c * (c - 1) for c in row) / (mi * (mi - 1)))
    return sum(vals) / len(vals)


def ac1_loop(counts: np.ndarray) -> float:
    """Gwet (2014) eq. 4.1-4.4 restricted to units with >= 2 ratings (module convention)."""
    rows = [row for row in counts if row.sum() >= 2]
    used = [j for j in range(counts.shape[1]) if any(row[j] for row in rows)]
    pa = sum(sum(c * (c - 1) for c in row) / (row.sum() * (row.sum() - 1)) for row in rows) / len(rows)
    pi = [sum(row[j] / row.sum() for row in rows) / len(rows) for j in used]
    pe = sum(p * (1 - p) for p in pi) / (len(used) - 1)
    return (pa - pe) / (1 - pe)


def fleiss_loop(counts: np.ndarray) -> float:
    """Fleiss (1971) on the units with the modal number of ratings (ties: the larger)."""
    ms = [int(row.sum()) for row in counts if row.sum() >= 2]
    m = max(set(ms), key=lambda v: (ms.count(v), v))
    rows = [row for row in counts if row.sum() == m]
    n = len(rows)
    pj = [sum(row[j] for row in rows) / (n * m) for j in range(counts.shape[1])]
    pbar = sum(sum(c * (c - 1) for c in row) / (m * (m - 1)) for row in rows) / n
    pe = sum(p * p for p in pj)
    return (pbar - pe) / (1 - pe)


# --------------------------------------------------------------------------- rating patterns


def naive_patterns(counts: np.ndarray) -> dict[tuple[int, ...], int]:
    rows, freq = np.unique(counts.astype(int), axis=0, return_counts=True)
    return {tuple(r): int(f) for r, f in zip(rows, freq)}


def patterns_as_dict(pats: rel._Patterns) -> dict[tuple[int, ...], int]:
    dense = np.zeros((pats.n_patterns, pats.n_cols), dtype=int)
    dense[pats.row, pats.col] = pats.cnt.astype(int)
    assert np.all(np.diff(pats.row) >= 0), "entries sorted by pattern"
    return {tuple(r): int(f) for r, f in zip(dense, pats.freq)}


@pytest.mark.parametrize(
    ("n_raters", "k", "encoding"),
    [
        (3, 5, "count key"),  # base**k fits in 2**52: one bincount
        (5, 12, "count key"),
        (3, 40, "sorted int64 key"),  # 4**40 > 2**52
        (30, 60, "numpy.unique"),  # (60 * 31)**width overflows int64
    ],
)
def test_patterns_equal_numpy_unique_of_the_count_matrix(n_raters: int, k: int, encoding: str) -> None:
    m, df = random_study(11, n_units=400, n_raters=n_raters, k=k, p_missing=0.3, p_agree=0.3)
    p = rel._prepare(df, "unit", "rater", "value", numeric=False)
    counts = p.counts()
    pats = p.patterns()
    base = int(counts.sum(axis=1).max()) + 1
    width = int((counts > 0).sum(axis=1).max())
    taken = (
        "count key" if base**k <= 2**52
        else "sorted int64 key" if (k * base) ** width < 2**63
        else "numpy.unique"
    )  # fmt: skip
    assert taken == encoding
    assert patterns_as_dict(pats) == naive_patterns(counts)
    assert pats.n_units == p.n_units


def test_patterns_do_not_depend_on_the_order_of_the_rows() -> None:
    _, df = random_study(4, n_units=300, k=6)
    shuffled = df.sample(frac=1.0, random_state=1)
    a = rel._prepare(df, "unit", "rater", "value", numeric=False).patterns()
    b = rel._prepare(shuffled, "unit", "rater", "value", numeric=False).patterns()
    assert np.array_equal(a.freq, b.freq) and np.array_equal(a.cnt, b.cnt)
    assert rel.irr_summary(df, n_boot=200) == rel.irr_summary(shuffled, n_boot=200)


def test_binary_patterns_equal_patterns_of_the_binarised_data() -> None:
    m, df = random_study(8, n_units=300, n_raters=5, k=6)
    p = rel._prepare(df, "unit", "rater", "value", numeric=False)
    for c in range(p.n_categories):
        derived, _ = rel._binary_patterns(p.patterns(), c)
        binary = df.assign(value=(df["value"] == p.categories[c]).astype(float))
        direct = rel._prepare(binary, "unit", "rater", "value", numeric=False).patterns()
        assert np.array_equal(derived.freq, direct.freq)
        assert np.array_equal(derived.row, direct.row)
        assert np.array_equal(derived.col, direct.col)
        assert np.array_equal(derived.cnt, direct.cnt)


# --------------------------------------------------------------------------- point estimates

SHAPES = [
    # seed, units, raters, categories, share missing
    (0, 60, 2, 2, 0.0),
    (1, 60, 2, 3, 0.3),
    (2, 80, 3, 5, 0.2),
    (3, 50, 4, 12, 0.4),
    (4, 120, 5, 7, 0.25),
    (5, 40, 5, 2, 0.5),
    (6, 200, 3, 40, 0.1),  # many categories: the sorted-key pattern encoding
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("seed", "n_units", "n_raters", "k", "p_missing"), SHAPES)
def test_alpha_pattern_path_equals_krippendorff_package(
    level: str, seed: int, n_units: int, n_raters: int, k: int, p_missing: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    m, df = random_study(seed, n_units, n_raters, k, p_missing)
    if level == "ratio":
        m = m * 0.5  # non-integer ratio values, with zeros below
        m[m == 0.5] = 0.0
        df = df.assign(value=df["value"] * 0.5).replace({"value": {0.5: 0.0}})
    ref = krippendorff.alpha(reliability_data=m, level_of_measurement=level)
    assert rel.krippendorff_alpha(df, level=level, n_boot=0).estimate == pytest.approx(ref, abs=1e-10)
    monkeypatch.setattr(rel, "_KRIPPENDORFF_PACKAGE_MAX_CELLS", 0)
    assert rel.krippendorff_alpha(df, level=level, n_boot=0).estimate == pytest.approx(ref, abs=1e-10)
    monkeypatch.setattr(rel, "_DENSE_FEATURE_CELLS", 0)  # sparse feature matrices
    assert rel.krippendorff_alpha(df, level=level, n_boot=0).estimate == pytest.approx(ref, abs=1e-10)


def test_interval_alpha_is_stable_for_large_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values around 1e6 with unit spread 0.1: the centred sums keep full precision."""
    m, _ = random_study(9, n_units=150, n_raters=3, k=7)
    m = 1e6 + 0.1 * m
    r, u = np.nonzero(~np.isnan(m))
    df = pd.DataFrame({"unit": u, "rater": r, "value": m[r, u]})
    ref = krippendorff.alpha(reliability_data=m, level_of_measurement="interval")
    monkeypatch.setattr(rel, "_KRIPPENDORFF_PACKAGE_MAX_CELLS", 0)
    assert rel.krippendorff_alpha(df, level="interval", n_boot=0).estimate == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize(("seed", "n_units", "n_raters", "k", "p_missing"), SHAPES)
def test_agreement_ac1_fleiss_equal_loop_implementations(
    seed: int, n_units: int, n_raters: int, k: int, p_missing: float
) -> None:
    m, df = random_study(seed, n_units, n_raters, k, p_missing)
    counts, _ = counts_matrix(m)
    assert rel.percent_agreement(df, n_boot=0).estimate == pytest.approx(pa_loop(counts), abs=1e-12)
    assert rel.gwet_ac1(df, n_boot=0).estimate == pytest.approx(ac1_loop(counts), abs=1e-12)
    assert rel.fleiss_kappa(df).estimate == pytest.approx(fleiss_loop(counts), abs=1e-12)


def test_icc_equals_a_two_way_anova_written_out() -> None:
    """ICC(2,1) and ICC(3,1) from sums of squares computed with pandas group means, on the
    fully crossed units of data with incomplete units."""
    rng = np.random.default_rng(2)
    n, k = 300, 4
    y = rng.normal(size=(n, 1)) + rng.normal(scale=0.7, size=(n, k)) + np.arange(k) * 0.2
    long = pd.DataFrame({"unit": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "value": y.ravel()})  # fmt: skip
    long = long.drop(index=rng.choice(len(long), 40, replace=False))
    full = long.groupby("unit")["value"].transform("size") == k
    c = long[full]
    nn = c["unit"].nunique()
    gm = c["value"].mean()
    ssr = k * ((c.groupby("unit")["value"].mean() - gm) ** 2).sum()
    ssc = nn * ((c.groupby("rater")["value"].mean() - gm) ** 2).sum()
    sse = ((c["value"] - gm) ** 2).sum() - ssr - ssc
    msr, msc, mse = ssr / (nn - 1), ssc / (k - 1), sse / ((nn - 1) * (k - 1))
    res = rel.icc(long)
    assert res["icc2"].estimate == pytest.approx((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / nn))
    assert res["icc3"].estimate == pytest.approx((msr - mse) / (msr + (k - 1) * mse))
    assert res["icc2"].n_units == nn


def test_unit_and_rater_labels_do_not_matter() -> None:
    """Integer ids with offsets and gaps, negative ids, strings: the same statistics."""
    _, df = random_study(3, n_units=100, n_raters=3, k=4)
    variants = [
        df.assign(unit=df["unit"] * 7 + 10**9, rater=df["rater"] - 5),
        df.assign(unit="u" + df["unit"].astype(str), rater=df["rater"].map({0: "c", 1: "a", 2: "b"})),
        df.assign(unit=df["unit"].astype(np.uint32), rater=df["rater"].astype(np.int8)),
        df.assign(unit=df["unit"].astype(float) + 0.5),
    ]
    ref = rel.irr_summary(df, level="ordinal", n_boot=300)
    for v in variants:
        out = rel.irr_summary(v, level="ordinal", n_boot=300)
        for name, stat in ref["statistics"].items():
            for key in ("estimate", "ci_low", "ci_high"):
                assert out["statistics"][name][key] == pytest.approx(stat[key], abs=1e-12), name


def test_duplicates_are_found_with_many_raters() -> None:
    """The hash-table duplicate check (units x raters too large for a dense table)."""
    units = np.repeat(np.arange(20_000), 2)
    raters = np.random.default_rng(0).permutation(np.repeat(np.arange(100), 400))
    df = pd.DataFrame({"unit": units, "rater": raters, "value": 1})
    df = df[df.groupby(["unit", "rater"]).cumcount() == 0]
    rel.fleiss_kappa(df)  # no duplicates: fine
    bad = pd.concat([df, df.iloc[[7]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"duplicate \(unit, rater\) pairs: 2 rows"):
        rel.fleiss_kappa(bad)


# --------------------------------------------------------------------------- bootstrap


def pattern_replicates(plan: rel._Boot, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunk = max(1, rel._BOOT_CHUNK_CELLS // max(plan.pats.n_patterns, plan.stat.width))
    return np.concatenate(
        [plan.stat.of_weights(w) for w in rel._pattern_weights(plan.pats.freq, n_boot, chunk, rng)]
    )


def naive_replicates(m: np.ndarray, stat, n_boot: int, seed: int) -> np.ndarray:
    """Loop bootstrap: resample the units (columns of the raters x units matrix)."""
    pairable = m[:, (~np.isnan(m)).sum(axis=0) >= 2]
    n = pairable.shape[1]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        out.append(stat(pairable[:, rng.integers(0, n, n)]))
    return np.array(out)


def alpha_stat(level: str):
    return lambda mat: krippendorff.alpha(reliability_data=mat, level_of_measurement=level)


BOOT_CASES = [
    # name, level, data: (seed, units, raters, categories, missing), plan, naive statistic
    ("percent_agreement", "nominal", (1, 150, 3, 4, 0.15)),
    ("gwet_ac1", "nominal", (2, 150, 4, 3, 0.2)),
    ("alpha", "nominal", (3, 150, 3, 4, 0.15)),
    ("alpha", "ordinal", (4, 150, 3, 5, 0.1)),
    ("alpha", "interval", (5, 150, 3, 5, 0.1)),
    ("alpha", "ratio", (6, 150, 3, 5, 0.1)),
    ("alpha", "interval", (7, 60, 3, 40, 0.0)),  # about as many patterns as units: units drawn
]


@pytest.mark.parametrize(("stat", "level", "shape"), BOOT_CASES)
def test_pattern_bootstrap_has_the_unit_bootstrap_distribution(stat: str, level: str, shape: tuple) -> None:
    """Resampling units is a multinomial draw of pattern counts: replicates from the pattern
    bootstrap and from a loop that resamples units agree in distribution (two-sample KS test)
    and their 95% percentile intervals agree within Monte Carlo error (both with 2,000
    replicates the 2.5% and 97.5% quantiles have a standard error of about 0.06 SD each)."""
    seed, n_units, n_raters, k, p_missing = shape
    m, df = random_study(seed, n_units, n_raters, k, p_missing)
    p = rel._prepare(df, "unit", "rater", "value", numeric=level != "nominal", ordered=level == "ordinal")
    if stat == "percent_agreement":
        plan = rel._plan_percent_agreement(p, 1)

        def naive(mat: np.ndarray) -> float:
            c = counts_matrix(mat)[0]
            mi = c.sum(axis=1)
            return float(((c * (c - 1)).sum(axis=1) / (mi * (mi - 1))).mean())
    elif stat == "gwet_ac1":
        plan = rel._plan_ac1(p, 1)

        def naive(mat: np.ndarray) -> float:
            c = counts_matrix(mat)[0]
            mi = c.sum(axis=1)
            pa = ((c * (c - 1)).sum(axis=1) / (mi * (mi - 1))).mean()
            pi = (c / mi[:, None]).mean(axis=0)
            pe = (pi * (1 - pi)).sum() / (len(pi) - 1)
            return float((pa - pe) / (1 - pe))
    else:
        plan = rel._plan_alpha(p, level, 1)
        naive = alpha_stat(level)
    assert isinstance(plan, rel._Boot)
    if shape[3] == 40:
        assert 8 * plan.pats.n_patterns > plan.pats.n_units  # the unit-drawing branch
    b = 2000
    fast = pattern_replicates(plan, b, seed=10)
    slow = naive_replicates(m, naive, b, seed=20)
    fast, slow = fast[np.isfinite(fast)], slow[np.isfinite(slow)]
    sd = slow.std()
    assert fast.std() == pytest.approx(sd, rel=0.12)
    assert abs(fast.mean() - slow.mean()) < 0.15 * sd
    for q in (2.5, 97.5):
        assert abs(np.percentile(fast, q) - np.percentile(slow, q)) < 0.4 * sd, q
    assert sps.ks_2samp(fast, slow).pvalue > 1e-3


def test_pattern_weights_have_multinomial_moments() -> None:
    """Mean n p and covariance n (diag p - p p^T) of the pattern counts, in both branches."""
    for freq in (np.array([50, 30, 15, 5]), np.ones(40, dtype=np.int64)):
        n = freq.sum()
        pv = freq / n
        w = np.concatenate(list(rel._pattern_weights(freq, 20_000, 5000, np.random.default_rng(0))))
        assert w.sum(axis=1).min() == w.sum(axis=1).max() == n
        assert np.allclose(w.mean(axis=0), n * pv, atol=4 * np.sqrt(n * pv * (1 - pv) / 20_000).max())
        cov = n * (np.diag(pv) - np.outer(pv, pv))
        assert np.allclose(np.cov(w.T), cov, atol=0.05 * cov.max())


def test_intervals_do_not_depend_on_the_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same replicates in any chunking (up to rounding in the matrix products)."""
    _, df = random_study(12, n_units=120, n_raters=3, k=5)
    ref = rel.irr_summary(df, level="ordinal", n_boot=500)["statistics"]
    monkeypatch.setattr(rel, "_BOOT_CHUNK_CELLS", 37)
    out = rel.irr_summary(df, level="ordinal", n_boot=500)["statistics"]
    for name, stat in ref.items():
        for key in ("estimate", "ci_low", "ci_high"):
            assert out[name][key] == pytest.approx(stat[key], abs=1e-12), name


@pytest.mark.parametrize("level", LEVELS)
def test_summary_equals_the_individual_functions(level: str) -> None:
    """One preparation and one shared stream of replicates, but the same values as each
    function alone (same seed, same intervals)."""
    _, df = random_study(13, n_units=90, n_raters=2, k=5)
    out = rel.irr_summary(df, level=level, n_boot=400, seed=5)["statistics"]
    single = [
        rel.percent_agreement(df, n_boot=400, seed=5),
        rel.krippendorff_alpha(df, level=level, n_boot=400, seed=5),
        rel.fleiss_kappa(df),
        rel.gwet_ac1(df, n_boot=400, seed=5),
        rel.cohen_kappa(df),
    ]
    if level != "nominal":
        single += [rel.cohen_kappa(df, weights="linear"), rel.cohen_kappa(df, weights="quadratic")]
        single += list(rel.icc(df).values())
    assert [e.name for e in single] == list(out)
    for e in single:
        assert (out[e.name]["estimate"], out[e.name]["ci_low"], out[e.name]["ci_high"]) == (
            e.estimate, e.ci_low, e.ci_high,
        ), e.name  # fmt: skip


def test_string_values_at_ordinal_level_use_their_own_nominal_categories() -> None:
    """'1' and '1.0' are one number but two nominal codes: agreement statistics keep the
    nominal reading, alpha the numeric one (as the individual functions do)."""
    df = pd.DataFrame({"unit": np.repeat(range(6), 2), "rater": [0, 1] * 6,
                       "value": ["1", "1.0", "2", "2", "3", "3", "1", "2", "2", "2", "3", "1"]})  # fmt: skip
    out = rel.irr_summary(df, level="ordinal", n_boot=100)["statistics"]
    assert out["percent_agreement"]["estimate"] == rel.percent_agreement(df).estimate == pytest.approx(3 / 6)
    assert out["krippendorff_alpha"]["estimate"] == rel.krippendorff_alpha(df, level="ordinal").estimate


def test_one_vs_rest_equals_summaries_of_the_binarised_data() -> None:
    _, df = random_study(14, n_units=120, n_raters=3, k=4, p_missing=0.2)
    df.loc[df.index[::17], "value"] = np.nan  # missing ratings stay missing
    df["value"] = df["value"].map({1.0: "a", 2.0: "b", 3.0: "c", 4.0: "d"})
    out = rel.irr_summary_one_vs_rest(df, n_boot=300, seed=3)
    assert list(out) == ["a", "b", "c", "d"]
    for code, summary in out.items():
        binary = df.assign(value=(df["value"] == code).where(df["value"].notna()))
        assert summary == rel.irr_summary(binary, n_boot=300, seed=3), code
        json.dumps(summary, allow_nan=False)


def test_one_vs_rest_with_two_raters_and_a_code_everyone_uses() -> None:
    df = pd.DataFrame({"unit": np.repeat(range(8), 2), "rater": ["A", "B"] * 8,
                       "value": [1, 1, 1, 2, 2, 2, 1, 1, 3, 3, 1, 1, 2, 1, 1, 1]})  # fmt: skip
    out = rel.irr_summary_one_vs_rest(df, n_boot=200)
    assert list(out) == [1, 2, 3] and all(type(c) is int for c in out)
    for code, summary in out.items():
        binary = df.assign(value=(df["value"] == code))
        assert summary == rel.irr_summary(binary, n_boot=200), code
    single = pd.DataFrame({"unit": np.repeat(range(4), 2), "rater": ["A", "B"] * 4, "value": 7})
    only = rel.irr_summary_one_vs_rest(single, n_boot=50)[7]
    assert only == rel.irr_summary(single.assign(value=True), n_boot=50)
    assert only["statistics"]["krippendorff_alpha"]["estimate"] is None


# --------------------------------------------------------------------------- large data


def test_200k_units_finish_with_sane_values() -> None:
    """200,000 units x 3 raters x 10 codes, 80% agreement with a true code, a few missing
    ratings: the full summary (default 1,000 replicates) and one-vs-rest."""
    rng = np.random.default_rng(0)
    n, r, k = 200_000, 3, 10
    value = np.repeat(rng.integers(0, k, n), r)
    wrong = np.flatnonzero(rng.random(n * r) >= 0.8)
    value[wrong] = (value[wrong] + rng.integers(1, k, len(wrong))) % k
    df = pd.DataFrame({"unit": np.repeat(np.arange(n), r), "rater": np.tile(np.arange(r), n),
                       "value": value.astype(float)})  # fmt: skip
    df.loc[df.index[::1000], "value"] = np.nan
    out = rel.irr_summary(df)
    st = out["statistics"]
    assert out["n_units"] == n and out["n_ratings"] == n * r - n * r // 1000
    # expected agreement of two ratings: .8^2 + .2^2/9 (= .6444)
    assert st["percent_agreement"]["estimate"] == pytest.approx(0.64 + 0.04 / 9, abs=0.005)
    kappa = (0.64 + 0.04 / 9 - 0.1) / 0.9
    for name in ("krippendorff_alpha", "fleiss_kappa", "gwet_ac1"):
        s = st[name]
        assert s["estimate"] == pytest.approx(kappa, abs=0.005), name
        assert s["ci_low"] < s["estimate"] < s["ci_high"] and s["ci_high"] - s["ci_low"] < 0.01, name
    ovr = rel.irr_summary_one_vs_rest(df, n_boot=100)
    assert len(ovr) == k
    assert all(s["statistics"]["fleiss_kappa"]["estimate"] > 0.5 for s in ovr.values())


def test_continuous_interval_data_stay_sparse() -> None:
    """As many distinct values as ratings (6,000 categories): the feature matrices are
    sparse, the patterns are as many as the units, and alpha equals the written-out formula."""
    rng = np.random.default_rng(1)
    n = 2000
    m = rng.normal(size=(1, n)) + rng.normal(scale=0.5, size=(3, n))
    r, u = np.nonzero(np.ones_like(m, dtype=bool))
    df = pd.DataFrame({"unit": u, "rater": r, "value": m[r, u]})
    p = rel._prepare(df, "unit", "rater", "value", numeric=True)
    assert p.n_categories == 3 * n and p.pairable().n_patterns == n
    plan = rel._plan_ac1(p, 1)
    assert isinstance(plan, rel._Boot) and not isinstance(plan.stat.features, np.ndarray)
    est = rel.krippendorff_alpha(df, level="interval", n_boot=50)
    # Krippendorff (2011): 1 - D_o / D_e with squared differences, written out (the package
    # would need units x categories^2 floats here)
    d_o = sum(((col[:, None] - col[None, :]) ** 2).sum() / (len(col) - 1) for col in m.T)
    v = m.ravel()
    d_e = ((v[:, None] - v[None, :]) ** 2).sum() / (len(v) - 1)
    assert est.estimate == pytest.approx(1 - d_o / d_e, abs=1e-10)
    assert est.ci_low < est.estimate < est.ci_high


# --------------------------------------------------------------------------- degenerate data


def assert_clean(summary: dict) -> None:
    json.dumps(summary, allow_nan=False)
    for s in summary["statistics"].values():
        for key in ("estimate", "ci_low", "ci_high"):
            assert s[key] is None or math.isfinite(s[key])
        if s["estimate"] is None:
            assert s["reason"]


DEGENERATE = {
    "all the same": pd.DataFrame({"unit": np.repeat(range(50), 3), "rater": np.tile(range(3), 50), "value": 4}),
    "one rating per unit": pd.DataFrame({"unit": range(50), "rater": np.arange(50) % 3, "value": np.arange(50) % 4}),
    "one unit": pd.DataFrame({"unit": 0, "rater": range(4), "value": [1, 2, 2, 3]}),
    "one rater": pd.DataFrame({"unit": range(20), "rater": "r", "value": np.arange(20) % 3}),
    "two units, no variation within": pd.DataFrame({"unit": [0, 0, 1, 1], "rater": [0, 1, 0, 1], "value": [1, 1, 2, 2]}),
    "all missing but one": pd.DataFrame({"unit": [0, 0, 1, 1], "rater": [0, 1, 0, 1], "value": [1, np.nan, np.nan, np.nan]}),
    "zeros, ratio": pd.DataFrame({"unit": np.repeat(range(5), 2), "rater": [0, 1] * 5, "value": [0.0, 0.0] * 5}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(DEGENERATE))
@pytest.mark.parametrize("level", LEVELS)
def test_degenerate_data_give_reasons_never_nan(name: str, level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    df = DEGENERATE[name]
    ref = rel.irr_summary(df, level=level, n_boot=50)
    assert_clean(ref)
    monkeypatch.setattr(rel, "_KRIPPENDORFF_PACKAGE_MAX_CELLS", 0)
    monkeypatch.setattr(rel, "_DENSE_FEATURE_CELLS", 0)
    assert_clean(rel.irr_summary(df, level=level, n_boot=50))
    if level == "nominal":
        for summary in rel.irr_summary_one_vs_rest(df, n_boot=50).values():
            assert_clean(summary)


def test_no_variation_reasons() -> None:
    df = DEGENERATE["all the same"]
    st = rel.irr_summary(df, level="interval", n_boot=50)["statistics"]
    assert st["percent_agreement"]["estimate"] == 1.0
    assert st["krippendorff_alpha"]["reason"] == "all pairable ratings are the same value (no variation)"
    assert st["gwet_ac1"]["reason"] == "only one category was used: AC1 undefined"
    assert st["fleiss_kappa"]["reason"] == "all ratings are in one category: kappa undefined"
    assert st["icc2"]["reason"] == "no variance between units: ICC undefined"
    st = rel.irr_summary(DEGENERATE["one rating per unit"], n_boot=50)["statistics"]
    assert st["krippendorff_alpha"]["reason"] == "no unit has two or more ratings (no pairable values)"
