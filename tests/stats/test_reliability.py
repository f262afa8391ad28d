"""Tests for mbtcode.stats.reliability against published values and independent implementations."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import krippendorff
import numpy as np
import pandas as pd
import pytest

from mbtcode.stats import reliability as rel

NAN = np.nan


def long_from_matrix(
    mat: list[list[float]] | np.ndarray, raters_by_rows: bool = True
) -> pd.DataFrame:
    """Long format from a raters x units (or units x raters) matrix; NaN = missing."""
    m = np.asarray(mat, dtype=float)
    if not raters_by_rows:
        m = m.T
    r, u = np.nonzero(~np.isnan(m))
    return pd.DataFrame({"unit": u, "rater": r, "value": m[r, u]})


def long_from_table(table: np.ndarray) -> pd.DataFrame:
    """Two-rater long format from a K x K contingency table (rows rater A, cols rater B)."""
    rows, unit = [], 0
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            for _ in range(int(table[i, j])):
                rows += [(unit, "A", i), (unit, "B", j)]
                unit += 1
    return pd.DataFrame(rows, columns=["unit", "rater", "value"])


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 coders x 12 units.
KRIPP_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = np.array(
    [
        [9, 2, 5, 8],
        [6, 1, 3, 2],
        [8, 4, 6, 8],
        [7, 1, 2, 6],
        [10, 5, 6, 9],
        [6, 2, 4, 7],
    ],
    dtype=float,
)

# Fleiss (1971) as in Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def random_long(
    seed: int, n_units: int = 60, n_raters: int = 4, k: int = 5, p_missing: float = 0.2
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, k + 1, n_units)
    m = np.clip(truth[None, :] + rng.integers(-1, 2, (n_raters, n_units)), 1, k).astype(
        float
    )
    m[rng.random(m.shape) < p_missing] = np.nan
    return long_from_matrix(m)


# --------------------------------------------------------------------------- Krippendorff


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_alpha_krippendorff_2011_example(level: str, expected: float) -> None:
    """Krippendorff (2011) "Computing Krippendorff's alpha-reliability", 4 coders x 12 units with
    missing values: nominal .743, ordinal .815, interval .849, ratio .797 (also the `krippendorff`
    package doctests)."""
    est = rel.krippendorff_alpha(long_from_matrix(KRIPP_2011), level=level)
    assert est.estimate is not None and round(est.estimate, 3) == expected
    assert est.ci_low is not None and est.ci_high is not None
    assert -1 <= est.ci_low <= est.estimate <= est.ci_high <= 1


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_agrees_with_krippendorff_package(
    level: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second implementation: the `krippendorff` package (0.9) on random data with missing values;
    both the delegated point estimate and this module's own rating-pattern path (used for
    large data) must agree with it."""
    df = random_long(seed)
    mat = df.pivot(index="rater", columns="unit", values="value").to_numpy()
    ref = krippendorff.alpha(reliability_data=mat, level_of_measurement=level)
    est = rel.krippendorff_alpha(df, level=level, n_boot=0)
    assert est.estimate == pytest.approx(ref, abs=1e-10)
    monkeypatch.setattr(rel, "_KRIPPENDORFF_PACKAGE_MAX_CELLS", 0)
    own = rel.krippendorff_alpha(df, level=level, n_boot=0)
    assert own.estimate == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_bootstrap_replicate_matches_package(level: str) -> None:
    """The vectorised bootstrap builds each replicate's coincidence matrix from unit weights; a
    replicate with integer weights must equal the package's alpha on the data with units duplicated."""
    df = random_long(5, n_units=30)
    counts_df = df.pivot(index="rater", columns="unit", values="value")
    units = counts_df.columns.to_numpy()
    rng = np.random.default_rng(3)
    w = rng.integers(0, 3, len(units)).astype(float)
    w[0] = 1
    dup = np.repeat(counts_df.to_numpy(), w.astype(int), axis=1)
    ref = krippendorff.alpha(reliability_data=dup, level_of_measurement=level)
    mat = counts_df.to_numpy()
    cats = np.unique(mat[~np.isnan(mat)])
    counts = np.stack([(mat == c).sum(axis=0) for c in cats], axis=1).astype(
        float
    )  # units x K
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m, ww = counts[keep], m[keep], w[keep]
    vals = cats if level in ("interval", "ratio") else np.arange(len(cats), dtype=float)
    scaled = counts / (m - 1)[:, None]
    o = (scaled * ww[:, None]).T @ counts - np.diag(ww @ scaled)
    assert float(rel._alpha_from_coincidences(o, vals, level)) == pytest.approx(
        ref, abs=1e-10
    )


def test_alpha_bootstrap_is_seeded_and_fast_enough() -> None:
    """Same seed, same interval; 200 units x 3 raters with 1000 replicates runs (speed sanity)."""
    df = random_long(7, n_units=200, n_raters=3, p_missing=0.0)
    a = rel.krippendorff_alpha(df, level="ordinal", seed=11)
    b = rel.krippendorff_alpha(df, level="ordinal", seed=11)
    assert a == b
    assert (
        a.ci_low is not None
        and a.ci_high is not None
        and a.ci_low < a.estimate < a.ci_high
    )


# --------------------------------------------------------------------------- ICC

PSYCH_SF = {  # R psych::ICC on the Shrout & Fleiss data, as listed in pingouin tests/test_reliability.py
    "icc1": (0.17, -0.13, 0.72),
    "icc2": (0.29, 0.02, 0.76),
    "icc3": (0.71, 0.34, 0.95),
    "icc1k": (0.44, -0.88, 0.91),
    "icc2k": (0.62, 0.07, 0.93),
    "icc3k": (0.91, 0.68, 0.99),
}


def test_icc_shrout_fleiss_table2() -> None:
    """Shrout & Fleiss (1979) Table 2/4: ICC(1,1)=.17, ICC(2,1)=.29, ICC(3,1)=.71, ICC(1,4)=.44,
    ICC(2,4)=.62, ICC(3,4)=.91; 95% CIs as reported by R psych::ICC for the same data (values from
    pingouin's tests/test_reliability.py)."""
    res = rel.icc(long_from_matrix(SHROUT_FLEISS, raters_by_rows=False))
    assert list(res) == ["icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k"]
    for name, (est, lo, hi) in PSYCH_SF.items():
        e = res[name]
        assert e.estimate is not None and e.ci_low is not None and e.ci_high is not None
        assert round(e.estimate, 2) == est, name
        assert round(e.ci_low, 2) == lo, name
        assert round(e.ci_high, 2) == hi, name
        assert e.n_units == 6 and e.note is None


def test_icc_drops_incomplete_units() -> None:
    """Missing ratings: ICC uses fully crossed units only and reports how many were dropped."""
    df = long_from_matrix(SHROUT_FLEISS, raters_by_rows=False)
    extra = pd.DataFrame({"unit": [99, 99], "rater": [0, 1], "value": [3.0, 4.0]})
    res = rel.icc(pd.concat([df, extra], ignore_index=True))
    assert res["icc2"].estimate == pytest.approx(rel.icc(df)["icc2"].estimate)
    assert res["icc2"].note is not None and "1 unit" in res["icc2"].note


def test_icc_large_runs() -> None:
    """Speed sanity: 100,000 units x 3 raters completes (vectorised ANOVA)."""
    rng = np.random.default_rng(0)
    n = 100_000
    truth = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), 3),
            "rater": np.tile([0, 1, 2], n),
            "value": np.repeat(truth, 3) + rng.normal(scale=0.5, size=3 * n),
        }
    )
    res = rel.icc(df)
    assert res["icc1"].estimate == pytest.approx(0.8, abs=0.01)  # 1 / (1 + 0.25)


# --------------------------------------------------------------------------- Cohen's kappa


def fce_kappa_loop(table: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Independent scalar-loop re-implementation of Fleiss, Cohen & Everitt (1969), eq. for
    var(kappa_w) (large-sample, non-null)."""
    n = table.sum()
    k = table.shape[0]
    p = [[table[i][j] / n for j in range(k)] for i in range(k)]
    pr = [sum(p[i][j] for j in range(k)) for i in range(k)]
    pc = [sum(p[i][j] for i in range(k)) for j in range(k)]
    po = sum(w[i][j] * p[i][j] for i in range(k) for j in range(k))
    pe = sum(w[i][j] * pr[i] * pc[j] for i in range(k) for j in range(k))
    kap = (po - pe) / (1 - pe)
    wbar_i = [sum(pc[j] * w[i][j] for j in range(k)) for i in range(k)]
    wbar_j = [sum(pr[i] * w[i][j] for i in range(k)) for j in range(k)]
    s = sum(
        p[i][j] * (w[i][j] - (wbar_i[i] + wbar_j[j]) * (1 - kap)) ** 2
        for i in range(k)
        for j in range(k)
    )
    var = (s - (kap - pe * (1 - kap)) ** 2) / (n * (1 - pe) ** 2)
    return kap, math.sqrt(var)


def test_cohen_kappa_wikipedia_example() -> None:
    """Wikipedia "Cohen's kappa" worked example: 50 items, yes/yes 20, yes/no 5, no/yes 10,
    no/no 15 -> p_o = .7, p_e = .5, kappa = 0.4. CI checked against an independent loop
    implementation of Fleiss, Cohen & Everitt (1969)."""
    table = np.array([[20, 5], [10, 15]])
    est = rel.cohen_kappa(long_from_table(table))
    assert est.estimate == pytest.approx(0.4)
    _, se = fce_kappa_loop(table, np.eye(2))
    assert est.ci_low == pytest.approx(0.4 - 1.959963984540054 * se)
    assert est.ci_high == pytest.approx(0.4 + 1.959963984540054 * se)
    assert est.n_units == 50


def test_weighted_kappa_hand_computed_3x3() -> None:
    """Weighted kappa on a 3x3 table (sklearn is not installed): exact rational values computed
    by hand from p_o = sum w_ij p_ij, p_e = sum w_ij p_i. p_.j with agreement weights on category
    ranks, linear 1-|i-j|/2 and quadratic 1-(i-j)^2/4 (the sklearn convention); SE against the
    independent loop implementation of Fleiss, Cohen & Everitt (1969)."""
    table = np.array([[10, 2, 0], [1, 8, 3], [0, 2, 4]])
    df = long_from_table(table)
    df["value"] = df["value"].map(
        {0: 1, 1: 5, 2: 7}
    )  # spacing must not matter (rank weights)
    n = 30
    rows, cols = [12, 12, 6], [11, 12, 7]
    for weights, wfun in (
        ("linear", lambda i, j: Fraction(2 - abs(i - j), 2)),
        ("quadratic", lambda i, j: 1 - Fraction((i - j) ** 2, 4)),
        (None, lambda i, j: Fraction(int(i == j))),
    ):
        po = sum(
            wfun(i, j) * Fraction(int(table[i, j]), n)
            for i in range(3)
            for j in range(3)
        )
        pe = sum(
            wfun(i, j) * Fraction(rows[i] * cols[j], n * n)
            for i in range(3)
            for j in range(3)
        )
        exact = (po - pe) / (1 - pe)
        est = rel.cohen_kappa(df, weights=weights)
        assert est.estimate == pytest.approx(float(exact), abs=1e-12)
        w = np.array([[float(wfun(i, j)) for j in range(3)] for i in range(3)])
        kap, se = fce_kappa_loop(table, w)
        assert kap == pytest.approx(float(exact))
        assert est.ci_low == pytest.approx(max(-1.0, kap - 1.959963984540054 * se))
        assert est.ci_high == pytest.approx(min(1.0, kap + 1.959963984540054 * se))
    assert rel.cohen_kappa(df, weights="linear").name == "weighted_kappa_linear"


def test_cohen_kappa_missing_and_unused_categories() -> None:
    """SECURITY.md E10: only units rated by both count; a category used by one rater only is part
    of the category set (union). Hand value: table [[3,0,1],[0,2,0]] for categories a,b,c with
    rater B alone using c: p_o = 5/6, p_e = (4*3 + 2*2)/36 = 4/9, kappa = (5/6-4/9)/(5/9) = 0.7."""
    df = pd.DataFrame(
        {
            "unit": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8],
            "rater": ["A", "B"] * 6 + ["A", "B"],
            "value": [
                "a",
                "a",
                "a",
                "a",
                "a",
                "a",
                "a",
                "c",
                "b",
                "b",
                "b",
                "b",
                "b",
                "c",
            ],
        }
    )
    est = rel.cohen_kappa(df)
    assert est.estimate == pytest.approx(0.7)
    assert est.n_units == 6


# --------------------------------------------------------------------------- Fleiss' kappa


def fleiss_table_to_long(table: np.ndarray) -> pd.DataFrame:
    rows = []
    for s, counts in enumerate(table):
        cats = np.repeat(np.arange(1, table.shape[1] + 1), counts)
        rows += [(s, r, int(c)) for r, c in enumerate(cats)]
    return pd.DataFrame(rows, columns=["unit", "rater", "value"])


def test_fleiss_kappa_fleiss_1971_example() -> None:
    """Wikipedia "Fleiss' kappa" worked example (10 subjects x 14 raters x 5 categories):
    P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210. SE against an independent re-implementation of
    Fleiss, Nee & Landis (1979), eq. for var_0(kappa)."""
    est = rel.fleiss_kappa(fleiss_table_to_long(FLEISS_1971))
    assert est.estimate is not None and round(est.estimate, 3) == 0.210
    n, m = FLEISS_1971.shape[0], 14
    pj = FLEISS_1971.sum(axis=0) / (n * m)
    qj = 1 - pj
    s = sum(pj * qj)
    se = (
        math.sqrt(2)
        / (s * math.sqrt(n * m * (m - 1)))
        * math.sqrt(s**2 - sum(pj * qj * (qj - pj)))
    )
    assert est.ci_low == pytest.approx(est.estimate - 1.959963984540054 * se)
    assert est.ci_high == pytest.approx(est.estimate + 1.959963984540054 * se)


def test_fleiss_kappa_drops_units_with_other_rater_counts() -> None:
    """Units without the modal number of ratings are dropped and reported in the note."""
    df = fleiss_table_to_long(FLEISS_1971)
    df = pd.concat(
        [df, pd.DataFrame({"unit": [50, 50], "rater": [0, 1], "value": [1, 2]})],
        ignore_index=True,
    )
    est = rel.fleiss_kappa(df)
    assert round(est.estimate or 0, 3) == 0.210
    assert est.note is not None and "1 unit" in est.note and est.n_units == 10


# --------------------------------------------------------------------------- Gwet's AC1 / agreement


def ac1_loop(df: pd.DataFrame) -> float:
    """Independent loop implementation of Gwet (2014) eq. 4.1-4.4 restricted to units with >= 2 ratings."""
    groups = [
        g["value"].tolist() for _, g in df.dropna().groupby("unit") if len(g) >= 2
    ]
    cats = sorted({v for g in groups for v in g})
    pa = sum(
        sum(g.count(c) * (g.count(c) - 1) for c in cats) / (len(g) * (len(g) - 1))
        for g in groups
    ) / len(groups)
    pi = {c: sum(g.count(c) / len(g) for g in groups) / len(groups) for c in cats}
    pe = sum(pi[c] * (1 - pi[c]) for c in cats) / (len(cats) - 1)
    return (pa - pe) / (1 - pe)


def test_gwet_ac1_hand_computed_two_raters() -> None:
    """Hand-computed on the Wikipedia 2x2 table (20, 5, 10, 15): p_a = .7, pi_yes = (25/50 + 30/50)/2
    = .55, p_e = 2 * .55 * .45 / (2 - 1) = .495, AC1 = (.7 - .495)/(1 - .495) = 0.405941
    (Gwet 2008, eq. for two raters)."""
    est = rel.gwet_ac1(long_from_table(np.array([[20, 5], [10, 15]])))
    assert est.estimate == pytest.approx(0.205 / 0.505)
    assert (
        est.ci_low is not None
        and est.ci_high is not None
        and est.ci_low < est.estimate < est.ci_high
    )


def test_gwet_ac1_multi_rater_with_missing() -> None:
    """Agrees with an independent loop implementation on random multi-rater data with missing ratings."""
    df = random_long(3, n_units=40, n_raters=4)
    assert rel.gwet_ac1(df, n_boot=0).estimate == pytest.approx(ac1_loop(df))


def test_percent_agreement_hand_computed() -> None:
    """Unit 1: 3 raters a,a,b -> 1/3 agreeing pairs; unit 2: a,a -> 1; unit 3: one rating, excluded.
    Mean = 2/3."""
    df = pd.DataFrame(
        {
            "unit": [1, 1, 1, 2, 2, 3],
            "rater": [1, 2, 3, 1, 2, 1],
            "value": list("aabaab"),
        }
    )
    est = rel.percent_agreement(df)
    assert est.estimate == pytest.approx(2 / 3)
    assert est.n_units == 2


# --------------------------------------------------------------------------- edge cases (SECURITY.md E10)

ALL_NAMES = {
    "percent_agreement", "krippendorff_alpha", "fleiss_kappa", "gwet_ac1", "cohen_kappa",
    "weighted_kappa_linear", "weighted_kappa_quadratic", "icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k",
}  # fmt: skip


def assert_clean(summary: dict) -> None:
    json.dumps(summary, allow_nan=False)
    for name, s in summary["statistics"].items():
        assert name in ALL_NAMES
        assert set(s) in (
            {"estimate", "ci_low", "ci_high"},
            {"estimate", "ci_low", "ci_high", "reason"},
        )
        if s["estimate"] is None:
            assert s["reason"] and s["ci_low"] is None and s["ci_high"] is None
        for key in ("estimate", "ci_low", "ci_high"):
            assert s[key] is None or math.isfinite(s[key])


def test_all_raters_same_category() -> None:
    """E10: every rating is the same category: chance-corrected statistics are null with a reason;
    percent agreement is 1."""
    df = pd.DataFrame(
        {"unit": np.repeat(range(5), 2), "rater": [0, 1] * 5, "value": [3] * 10}
    )
    out = rel.irr_summary(df, level="ordinal")
    assert_clean(out)
    st = out["statistics"]
    assert st["percent_agreement"]["estimate"] == 1.0
    for name in ALL_NAMES - {"percent_agreement"}:
        assert st[name]["estimate"] is None, name
        assert st[name]["reason"]


def test_single_unit() -> None:
    """E10: a single unit gives nulls with reasons (percent agreement is defined, without CI)."""
    df = pd.DataFrame({"unit": [1, 1], "rater": ["a", "b"], "value": [1, 2]})
    out = rel.irr_summary(df, level="interval")
    assert_clean(out)
    assert out["n_units"] == 1 and out["n_raters"] == 2 and out["n_ratings"] == 2
    for name in ALL_NAMES - {"percent_agreement"}:
        assert out["statistics"][name]["estimate"] is None, name


def test_one_rater_only() -> None:
    """E10: one rater only: every statistic null with a reason; no two-rater statistics."""
    df = pd.DataFrame({"unit": range(4), "rater": "x", "value": [1, 2, 3, 4]})
    out = rel.irr_summary(df, level="ratio")
    assert_clean(out)
    assert "cohen_kappa" not in out["statistics"]
    assert all(s["estimate"] is None for s in out["statistics"].values())


def test_summary_shape_and_selection() -> None:
    """JSON shape is fixed; Cohen's kappas only for two raters; ICC and weighted kappa only above nominal."""
    two = long_from_table(np.array([[20, 5], [10, 15]]))
    nominal = rel.irr_summary(two)
    assert set(nominal) == {"n_units", "n_raters", "n_ratings", "level", "statistics"}
    assert set(nominal["statistics"]) == {
        "percent_agreement", "krippendorff_alpha", "fleiss_kappa", "gwet_ac1", "cohen_kappa",
    }  # fmt: skip
    assert nominal["statistics"]["cohen_kappa"]["estimate"] == pytest.approx(0.4)
    assert_clean(nominal)
    three = rel.irr_summary(long_from_matrix(KRIPP_2011), level="interval")
    assert_clean(three)
    assert set(three["statistics"]) == ALL_NAMES - {
        "cohen_kappa",
        "weighted_kappa_linear",
        "weighted_kappa_quadratic",
    }
    assert round(three["statistics"]["krippendorff_alpha"]["estimate"], 3) == 0.849
    ordinal_two = rel.irr_summary(two, level="ordinal")
    assert set(ordinal_two["statistics"]) == ALL_NAMES
    assert_clean(ordinal_two)


def test_missing_values_rows_are_missing_ratings() -> None:
    """NaN values are treated as missing ratings (same result as leaving the rows out)."""
    df = long_from_matrix(KRIPP_2011)
    with_nan = pd.concat(
        [df, pd.DataFrame({"unit": [11], "rater": [2], "value": [NAN]})],
        ignore_index=True,
    )
    assert rel.irr_summary(with_nan, level="ordinal") == rel.irr_summary(
        df, level="ordinal"
    )


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_specific_value_errors() -> None:
    """Missing columns, duplicate (unit, rater) pairs, non-numeric interval values, bad options."""
    df = pd.DataFrame(
        {"unit": [1, 1, 2, 2], "rater": [1, 2, 1, 2], "value": ["a", "b", "a", "a"]}
    )
    with pytest.raises(ValueError, match="missing column"):
        rel.percent_agreement(df, value="score")
    with pytest.raises(ValueError, match="duplicate"):
        rel.fleiss_kappa(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="non-numeric"):
        rel.krippendorff_alpha(df, level="interval")
    with pytest.raises(ValueError, match="non-numeric"):
        rel.icc(df)
    with pytest.raises(ValueError, match="level"):
        rel.irr_summary(df, level="metric")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        rel.cohen_kappa(df, weights="cubic")  # type: ignore[arg-type]
    three = pd.DataFrame(
        {"unit": [1, 1, 1], "rater": [1, 2, 3], "value": ["a", "b", "a"]}
    )
    with pytest.raises(ValueError, match="exactly two raters"):
        rel.cohen_kappa(three)
    with pytest.raises(ValueError, match="n_boot"):
        rel.gwet_ac1(df, n_boot=-1)


@pytest.mark.parametrize("rows", [[[6, 2], [3, 3]], [[4, 3], [2, 4], [1, 2]]])
def test_icc2k_interval_unbounded_below_is_reported_not_inverted(rows):
    """When the ICC(2,1) lower limit is <= -1/(k-1) the Spearman-Brown step-up is not monotone:
    the ICC(2,k) interval is unbounded below (psych::ICC would print e.g. [13.9, 0.99])."""
    data = pd.DataFrame([(u, r, v) for u, row in enumerate(rows) for r, v in enumerate(row)],
                        columns=["unit", "rater", "value"])
    result = rel.icc(data)
    assert result["icc2"].ci_low is not None and result["icc2"].ci_low <= -1.0
    e = result["icc2k"]
    assert e.estimate is not None and (e.ci_low, e.ci_high) == (None, None)
    assert "unbounded below" in e.reason


def test_icc_with_a_zero_denominator_is_not_computable_without_a_warning():
    """[[3,4],[4,5],[5,3]]: MSR + (MSC - MSE)/n = 0, so ICC(2,k) has no value (and no warning)."""
    rows = [[3, 4], [4, 5], [5, 3]]
    data = pd.DataFrame([(u, r, v) for u, row in enumerate(rows) for r, v in enumerate(row)],
                        columns=["unit", "rater", "value"])
    result = rel.icc(data)
    assert result["icc2k"].estimate is None and "not computable" in result["icc2k"].reason
    assert result["icc1"].estimate is not None
