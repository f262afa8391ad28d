"""``mbtcode irr FILE.csv``: the fixed JSON shape, which statistics appear, errors."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pytest

SHAPE_KEYS = {"n_units", "n_raters", "n_ratings", "level", "statistics"}
TWO_RATER = {"cohen_kappa", "weighted_kappa_linear", "weighted_kappa_quadratic"}
ICCS = {"icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k"}


@pytest.fixture
def irr(runner, tmp_path):
    def run(rows: list[str], *args: str):
        path = tmp_path / "ratings.csv"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return runner.invoke(args=["irr", str(path), *args])

    return run


def _long(matrix: list[list[object]], header: str = "unit,rater,value") -> list[str]:
    rows = [header]
    for r, ratings in enumerate(matrix):
        for u, value in enumerate(ratings):
            rows.append(f"u{u},R{r},{'' if value is None else value}")
    return rows


TWO = [[3, 5, 2, 6, 4, 1, 7, 4], [4, 5, 1, 6, 3, 2, 7, 5]]


def test_json_has_the_fixed_shape_and_only_json_on_stdout(irr):
    result = irr(_long(TWO), "--level", "ordinal", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == SHAPE_KEYS
    assert (summary["n_units"], summary["n_raters"], summary["n_ratings"], summary["level"]) == (8, 2, 16, "ordinal")
    for stat in summary["statistics"].values():
        assert {"estimate", "ci_low", "ci_high"} <= set(stat)


def test_two_raters_ordinal_has_kappas_and_iccs(irr):
    stats = json.loads(irr(_long(TWO), "--level", "ordinal", "--json").stdout)["statistics"]
    assert TWO_RATER | ICCS | {"percent_agreement", "krippendorff_alpha", "fleiss_kappa", "gwet_ac1"} == set(stats)


def test_nominal_level_has_no_iccs_and_no_weighted_kappas(irr):
    stats = json.loads(irr(_long(TWO), "--json").stdout)["statistics"]
    assert "cohen_kappa" in stats
    assert not (ICCS | {"weighted_kappa_linear", "weighted_kappa_quadratic"}) & set(stats)


def test_three_raters_have_no_two_rater_statistics(irr):
    three = [*TWO, [3, 5, 2, 5, 4, 1, 6, 4]]
    stats = json.loads(irr(_long(three), "--level", "interval", "--json").stdout)["statistics"]
    assert not TWO_RATER & set(stats)
    assert ICCS <= set(stats)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_agrees_with_the_krippendorff_package(irr, level):
    """Second implementation: the krippendorff package on the same reliability matrix."""
    matrix = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5],
              [None, 3, 3, 3, 2, 3, 4, 2, 2, 5], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5]]
    stats = json.loads(irr(_long(matrix), "--level", level, "--json").stdout)["statistics"]
    expected = krippendorff.alpha(
        reliability_data=np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float),
        level_of_measurement=level,
    )
    assert stats["krippendorff_alpha"]["estimate"] == pytest.approx(expected, abs=1e-9)


def test_one_category_only_gives_null_with_a_reason_never_nan(irr):
    result = irr(_long([[2, 2, 2], [2, 2, 2]]), "--level", "ordinal", "--json")
    assert result.exit_code == 0
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    stats = json.loads(result.stdout)["statistics"]
    assert stats["cohen_kappa"]["estimate"] is None and stats["cohen_kappa"]["reason"]
    assert stats["percent_agreement"]["estimate"] == 1.0


def test_custom_column_names(irr):
    rows = _long(TWO, header="Sitzung;Rater;Wert")
    rows = [rows[0]] + [r.replace(",", ";") for r in rows[1:]]
    result = irr(rows, "--unit", "Sitzung", "--rater", "Rater", "--value", "Wert", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_units"] == 8


def test_missing_column_is_a_one_line_error_naming_what_was_found(irr):
    result = irr(_long(TWO), "--unit", "session")
    assert result.exit_code == 1
    assert "missing column(s) session (found: unit, rater, value)" in result.stderr


def test_non_numeric_value_and_duplicate_rating_give_file_and_line(irr):
    rows = ["unit,rater,value", "1,A,3", "1,B,high", "1,A,4", "2,A,5", "2,B,5"]
    result = irr(rows, "--level", "interval")
    assert result.exit_code == 1
    assert "ratings.csv:3: 'high' is not a number" in result.stderr
    assert "ratings.csv:4: rater 'A' rated unit '1' again (first on line 2)" in result.stderr
    assert result.stdout == ""


def test_decimal_comma_is_read_as_a_number(irr):
    rows = ["unit;rater;value", "1;A;3,5", "1;B;3,0", "2;A;5,0", "2;B;4,5", "3;A;1,5", "3;B;2,0"]
    result = irr(rows, "--level", "interval", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_ratings"] == 6
