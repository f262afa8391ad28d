"""Interpretation bands for reliability estimates, named after the published scales.

Pure functions: each takes an estimate (or None) and returns the band's name (None for
None, and for NaN or infinity, which the statistics never return).

Boundaries
----------
The scales publish their bands as closed ranges at two decimals (Landis & Koch: "0.21-0.40
fair"), which leave gaps (0.205) and say nothing about where a boundary value goes. Here
every band is a half-open interval:

* Landis & Koch and Koo & Li: the published **upper** bound is inclusive, so a value on a
  boundary takes the lower band: kappa 0.20 is "slight", 0.205 and 0.40 are "fair"; ICC 0.75
  is "moderate", 0.90 "good", and only values above .90 are "excellent" (Koo & Li: "greater
  than 0.90"); ICC 0.50 is "moderate" ("less than 0.5" is poor).
* Cicchetti and Krippendorff: the published **lower** bound is inclusive (Cicchetti's bands
  start at .40, .60, .75; Krippendorff's thresholds are minimums, alpha >= .800), so 0.40 is
  "fair", 0.595 "fair", 0.60 "good"; alpha 0.800 is "reliable", 0.667 "tentative".

An estimate within 1e-9 of a boundary is treated as lying on it, so floating-point noise
(0.7999999999999999 for a computed 0.8) does not change its band.
"""

from __future__ import annotations

import math

__all__ = [
    "CICCHETTI",
    "KOO_LI",
    "KRIPPENDORFF",
    "LANDIS_KOCH",
    "band_for",
    "cicchetti",
    "koo_li",
    "krippendorff_band",
    "landis_koch",
]

KOO_LI = "Koo & Li"
CICCHETTI = "Cicchetti"
LANDIS_KOCH = "Landis & Koch"
KRIPPENDORFF = "Krippendorff"

_EPS = 1e-9


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _below(x: float, bound: float) -> bool:
    """x < bound, not counting floating-point noise."""
    return x < bound - _EPS


def _at_most(x: float, bound: float) -> bool:
    """x <= bound, not counting floating-point noise."""
    return x <= bound + _EPS


def koo_li(icc: float | None) -> str | None:
    """Koo & Li (2016) band of an intraclass correlation.

    Below .50 poor, .50-.75 moderate, above .75 to .90 good, above .90 excellent
    (Koo, T. K., & Li, M. Y. (2016). A guideline of selecting and reporting intraclass
    correlation coefficients for reliability research. J Chiropr Med, 15(2), 155-163).
    """
    x = _finite(icc)
    if x is None:
        return None
    if _below(x, 0.50):
        return "poor"
    if _at_most(x, 0.75):
        return "moderate"
    if _at_most(x, 0.90):
        return "good"
    return "excellent"


def cicchetti(value: float | None) -> str | None:
    """Cicchetti (1994) band of a kappa or intraclass correlation.

    Below .40 poor, .40-.59 fair, .60-.74 good, .75-1.00 excellent (Cicchetti, D. V.
    (1994). Guidelines, criteria, and rules of thumb for evaluating normed and standardized
    assessment instruments in psychology. Psychological Assessment, 6(4), 284-290).
    """
    x = _finite(value)
    if x is None:
        return None
    if _below(x, 0.40):
        return "poor"
    if _below(x, 0.60):
        return "fair"
    if _below(x, 0.75):
        return "good"
    return "excellent"


def landis_koch(kappa: float | None) -> str | None:
    """Landis & Koch (1977) band of a kappa-type coefficient.

    Below 0 poor, 0-.20 slight, .21-.40 fair, .41-.60 moderate, .61-.80 substantial,
    .81-1.00 almost perfect, upper bounds inclusive (Landis, J. R., & Koch, G. G. (1977).
    The measurement of observer agreement for categorical data. Biometrics, 33(1), 159-174).
    """
    x = _finite(kappa)
    if x is None:
        return None
    if _below(x, 0.0):
        return "poor"
    for upper, band in (
        (0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial")
    ):
        if _at_most(x, upper):
            return band
    return "almost perfect"


def krippendorff_band(alpha: float | None) -> str | None:
    """Krippendorff's (2004) reading of alpha.

    At least .800 "reliable"; at least .667 "tentative" (tentative conclusions only); below
    that "unreliable" (Krippendorff, K. (2004). Content Analysis: An Introduction to Its
    Methodology, 2nd ed., p. 241).
    """
    x = _finite(alpha)
    if x is None:
        return None
    if not _below(x, 0.800):
        return "reliable"
    if not _below(x, 0.667):
        return "tentative"
    return "unreliable"


def band_for(statistic: str, estimate: float | None) -> tuple[str, str | None] | None:
    """(scale name, band) for a statistic name of ``irr_summary``; None if no scale applies.

    ``icc1`` ... ``icc3k``: Koo & Li; ``cohen_kappa``, ``weighted_kappa_*``,
    ``fleiss_kappa``, ``gwet_ac1``: Landis & Koch; ``krippendorff_alpha``: Krippendorff;
    ``percent_agreement`` (and any other name): None. The band is None when the estimate is.
    """
    if statistic.startswith("icc"):
        return KOO_LI, koo_li(estimate)
    if statistic in ("cohen_kappa", "fleiss_kappa", "gwet_ac1") or statistic.startswith(
        "weighted_kappa_"
    ):
        return LANDIS_KOCH, landis_koch(estimate)
    if statistic == "krippendorff_alpha":
        return KRIPPENDORFF, krippendorff_band(estimate)
    return None
