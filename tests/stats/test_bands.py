"""Interpretation bands: every published boundary, on both sides, and the statistic mapping."""

from __future__ import annotations

import math

import pytest

from mbtcode.stats import bands

NOISE = 1e-12  # floating-point noise around a boundary does not change the band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (-0.3, "poor"),
        (0.0, "poor"),
        (0.4999, "poor"),
        (0.5 - NOISE, "moderate"),
        (0.50, "moderate"),  # Koo & Li: "less than 0.5" is poor
        (0.6, "moderate"),
        (0.75, "moderate"),  # upper bounds inclusive
        (0.75 + NOISE, "moderate"),
        (0.7501, "good"),
        (0.90, "good"),  # "greater than 0.90" is excellent
        (0.9001, "excellent"),
        (1.0, "excellent"),
    ],
)
def test_koo_li(value: float, band: str) -> None:
    """Koo & Li (2016): < .50 poor, .50-.75 moderate, .75-.90 good, > .90 excellent."""
    assert bands.koo_li(value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (-0.2, "poor"),
        (0.39, "poor"),
        (0.3999, "poor"),
        (0.4 - NOISE, "fair"),
        (0.40, "fair"),  # lower bounds inclusive
        (0.59, "fair"),
        (0.595, "fair"),  # between the published .59 and .60
        (0.60, "good"),
        (0.74, "good"),
        (0.745, "good"),
        (0.75, "excellent"),
        (1.0, "excellent"),
    ],
)
def test_cicchetti(value: float, band: str) -> None:
    """Cicchetti (1994): < .40 poor, .40-.59 fair, .60-.74 good, .75-1.00 excellent."""
    assert bands.cicchetti(value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (-1.0, "poor"),
        (-0.001, "poor"),
        (-NOISE, "slight"),
        (0.0, "slight"),
        (0.20, "slight"),  # the example in the module notes
        (0.2 + NOISE, "slight"),
        (0.205, "fair"),
        (0.21, "fair"),
        (0.40, "fair"),
        (0.41, "moderate"),
        (0.60, "moderate"),
        (0.6000001, "substantial"),
        (0.80, "substantial"),
        (0.805, "almost perfect"),
        (0.81, "almost perfect"),
        (1.0, "almost perfect"),
    ],
)
def test_landis_koch(value: float, band: str) -> None:
    """Landis & Koch (1977): < 0 poor, 0-.20 slight, .21-.40 fair, .41-.60 moderate,
    .61-.80 substantial, .81-1.00 almost perfect; published upper bounds inclusive."""
    assert bands.landis_koch(value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (1.0, "reliable"),
        (0.800, "reliable"),
        (0.8 - NOISE, "reliable"),
        (0.7999, "tentative"),
        (0.667, "tentative"),
        (0.6669, "unreliable"),
        (0.0, "unreliable"),
        (-0.5, "unreliable"),
    ],
)
def test_krippendorff_band(value: float, band: str) -> None:
    """Krippendorff (2004, p. 241): >= .800 reliable, >= .667 tentative, else unreliable."""
    assert bands.krippendorff_band(value) == band


@pytest.mark.parametrize(
    "fn", [bands.koo_li, bands.cicchetti, bands.landis_koch, bands.krippendorff_band]
)
def test_no_estimate_no_band(fn) -> None:
    assert fn(None) is None
    assert fn(math.nan) is None
    assert fn(math.inf) is None


@pytest.mark.parametrize(
    ("name", "scale", "band"),
    [
        ("icc1", "Koo & Li", "good"),
        ("icc2", "Koo & Li", "good"),
        ("icc3k", "Koo & Li", "good"),
        ("cohen_kappa", "Landis & Koch", "substantial"),
        ("weighted_kappa_linear", "Landis & Koch", "substantial"),
        ("weighted_kappa_quadratic", "Landis & Koch", "substantial"),
        ("fleiss_kappa", "Landis & Koch", "substantial"),
        ("gwet_ac1", "Landis & Koch", "substantial"),
        ("krippendorff_alpha", "Krippendorff", "tentative"),
    ],
)
def test_band_for_maps_irr_summary_names(name: str, scale: str, band: str) -> None:
    assert bands.band_for(name, 0.78) == (scale, band)
    assert bands.band_for(name, None) == (scale, None)


def test_band_for_has_no_scale_for_percent_agreement_or_unknown_names() -> None:
    assert bands.band_for("percent_agreement", 0.9) is None
    assert bands.band_for("percent_agreement", None) is None
    assert bands.band_for("spearman", 0.9) is None


def test_band_for_covers_every_irr_summary_statistic() -> None:
    """Every statistic irr_summary can return has a scale, except percent agreement."""
    import numpy as np
    import pandas as pd

    from mbtcode.stats.reliability import irr_summary

    df = pd.DataFrame(
        {"unit": np.repeat(range(6), 2), "rater": ["a", "b"] * 6,
         "value": [1, 1, 2, 2, 3, 2, 4, 4, 5, 5, 1, 2]}
    )  # fmt: skip
    names = set(irr_summary(df, level="ordinal", n_boot=0)["statistics"])
    assert len(names) == 13
    for name in names:
        if name == "percent_agreement":
            assert bands.band_for(name, 0.5) is None
        else:
            scale, band = bands.band_for(name, 0.5)  # type: ignore[misc]
            assert scale and band, name
