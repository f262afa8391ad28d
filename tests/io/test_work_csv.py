"""Tests for mbtcode.io.tabular_imports: ratings, codes and outcomes CSVs (pure; no Flask, no DB)."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from mbtcode.io.tabular_imports import (
    CodeRow,
    OutcomeRow,
    RatingRow,
    parse_codes_csv,
    parse_number,
    parse_outcomes_csv,
    parse_ratings_csv,
)
from mbtcode.io.transcripts import Problem

RATINGS_HEADER = "session,rater,instrument,item,dimension,value\n"
CODES_HEADER = "session,utterance,rater,code_set,code\n"
OUTCOMES_HEADER = "patient,date,study_day,measure,value\n"


def _bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def ratings(text: str | bytes, **kwargs):
    return parse_ratings_csv(_bytes(text), "ratings.csv", **kwargs)


def codes(text: str | bytes):
    return parse_codes_csv(_bytes(text), "codes.csv")


def outcomes(text: str | bytes):
    return parse_outcomes_csv(_bytes(text), "outcomes.csv")


def one_problem(parsed) -> Problem:
    assert len(parsed.problems) == 1, [str(p) for p in parsed.problems]
    return parsed.problems[0]


# --------------------------------------------------------------------------- ratings


def test_ratings_rows_with_line_numbers_values_na_and_empty():
    parsed = ratings(RATINGS_HEADER + "S1,Rater@Example.org,mbt-acs,2,adherence,4\n"
                     "\n"
                     "S1,rater@example.org,mbt-acs,,overall_adherence,n/a\n"
                     "S1,rater@example.org,mbt-acs,3,Competence,\n")
    assert parsed.ok
    assert parsed.rows == (
        RatingRow(2, "S1", "rater@example.org", "mbt-acs", "2", "adherence", 4, False),
        RatingRow(4, "S1", "rater@example.org", "mbt-acs", "", "overall_adherence", None, True),
        RatingRow(5, "S1", "rater@example.org", "mbt-acs", "3", "competence", None, False),
    )
    assert parsed.rows[2].empty and not parsed.rows[1].empty


@pytest.mark.parametrize("value", ["4.5", "four", "4,0", "٤", "1e3"])
def test_rating_value_must_be_a_whole_number(value):
    p = one_problem(ratings(RATINGS_HEADER + f'S1,r@x.org,mbt-acs,2,adherence,"{value}"\n'))
    assert (p.file, p.line, p.message) == ("ratings.csv", 2, f"value '{value}' is not a whole number")
    assert "NA" in p.hint


@pytest.mark.parametrize("value", ["NA", "na", "N/A", "n/A"])
def test_na_spellings(value):
    (row,) = ratings(RATINGS_HEADER + f"S1,r@x.org,mbt-acs,2,adherence,{value}\n").rows
    assert row.not_applicable and row.value is None


def test_ratings_empty_required_cells_are_named():
    parsed = ratings(RATINGS_HEADER + ",r@x.org,mbt-acs,2,,4\n")
    assert [p.message for p in parsed.problems] == ["the 'session' cell is empty",
                                                    "the 'dimension' cell is empty"]
    assert parsed.rows == ()


def test_headers_case_insensitive_trimmed_with_bom_and_semicolons():
    parsed = ratings(b"\xef\xbb\xbf Session ;RATER;Instrument; item ;Dimension;Value;\r\n"
                     b"S1;r@x.org;mbt-acs;2;adherence;4;\r\n")
    assert parsed.ok and parsed.rows[0].value == 4


def test_utf16_with_bom_and_tabs():
    data = b"\xff\xfe" + (RATINGS_HEADER.replace(",", "\t") + "S1\tr@x.org\tmbt-acs\t2\tadherence\t4\n"
                          ).encode("utf-16-le")
    assert ratings(data).rows[0].session == "S1"


def test_unknown_extra_column_is_named():
    p = one_problem(ratings("session,rater,instrument,item,dimension,value,comment\nS1,r,i,1,a,4,x\n"))
    assert (p.line, p.message) == (1, "unknown column(s) 'comment'")
    assert p.hint.startswith("allowed columns: session, rater, instrument, item, dimension, value")


def test_missing_columns_are_named_with_those_found():
    p = one_problem(ratings("session,rater,value\nS1,r,4\n"))
    assert p.message == ("missing column(s) 'instrument', 'item', 'dimension'; "
                         "columns found: 'session', 'rater', 'value'")


def test_duplicate_column():
    assert "column 'value' appears twice" in [p.message for p in ratings(
        "session,rater,instrument,item,dimension,value,Value\n").problems]


def test_value_under_an_unnamed_column():
    p = one_problem(ratings(RATINGS_HEADER.rstrip("\n") + ",\nS1,r,i,1,a,4,oops\n"))
    assert (p.line, p.message) == (2, "value in column 7, which has no name in the header")


def test_row_with_more_values_than_header():
    p = one_problem(ratings(RATINGS_HEADER + "S1,r,i,1,a,4,5\n"))
    assert p.message == "row has 7 values but the header has 6 columns"


@pytest.mark.parametrize("data, message", [
    (b"", "file is empty"),
    (b" \n\n", "file is empty (only whitespace)"),
    (b",,,\n", "file is empty"),
    (RATINGS_HEADER.encode(), "file has a header but no rows"),
])
def test_empty_files(data, message):
    assert one_problem(ratings(data)).message == message


def test_wrong_encoding_names_line_and_a_fix():
    p = one_problem(ratings((RATINGS_HEADER + "Sitzung Ä,r@x.org,mbt-acs,2,adherence,4\n").encode("cp1252")))
    assert p.line == 2
    assert p.message.startswith("file is not valid UTF-8")
    assert "re-save it as UTF-8" in p.hint


def test_binary_and_excel_files_are_refused_in_csv_words():
    assert one_problem(ratings(b"\x89PNG\r\n\x1a\nxxxx")).message == "this is a PNG image, not a CSV file"
    p = one_problem(ratings(b"ab\x00cd\x00" * 10))
    assert "not a CSV file" in p.message and "transcript" not in str(p)


def test_size_limit():
    p = one_problem(ratings(RATINGS_HEADER + "S1,r,i,1,a,4\n" * 10, max_bytes=100))
    assert p.message.startswith("file is too large (") and p.message.endswith("the limit is 100 bytes)")


def test_unbalanced_quote_is_reported_on_its_line_and_swallows_nothing_silently():
    parsed = ratings(RATINGS_HEADER + 'S1,r,i,1,a,4\nS1,"r,i,1,a,4\nS2,r,i,1,a,4\n')
    assert {p.line for p in parsed.problems} == {3}
    assert [r.line for r in parsed.rows] == [2]


def test_sha256_of_the_raw_bytes():
    data = (RATINGS_HEADER + "S1,r,i,1,a,4\n").encode()
    assert ratings(data).sha256 == hashlib.sha256(data).hexdigest()


def test_every_problem_is_reported_in_line_order():
    parsed = ratings(RATINGS_HEADER + "S1,r,i,1,a,x\nS1,r,i,1,a,4\n,r,i,1,a,4\nS1,r,i,1,a,y\n")
    assert [p.line for p in parsed.problems] == [2, 4, 5]
    assert [r.line for r in parsed.rows] == [3]


# --------------------------------------------------------------------------- codes


def test_codes_rows():
    parsed = codes(CODES_HEADER + "S 1,1,R@x.org,intervention-spectrum,EV\nS 1,2,r@x.org,,\n")
    assert parsed.rows == (CodeRow(2, "S 1", 1, "r@x.org", "intervention-spectrum", "EV"),
                           CodeRow(3, "S 1", 2, "r@x.org", "", ""))
    assert parsed.rows[1].empty


@pytest.mark.parametrize("position", ["0", "-1", "1.0", "one", "³", "99999999999"])
def test_utterance_must_be_a_positive_position(position):
    p = one_problem(codes(CODES_HEADER + f"S1,{position},r@x.org,cs,EV\n"))
    assert (p.line, p.message) == (2, f"utterance '{position}' is not a position in the transcript")


def test_code_without_code_set():
    assert one_problem(codes(CODES_HEADER + "S1,1,r@x.org,,EV\n")).message == "the 'code_set' cell is empty"


def test_codes_missing_column():
    p = one_problem(codes("session,utterance,rater,code\nS1,1,r,EV\n"))
    assert p.message.startswith("missing column(s) 'code_set'")


# --------------------------------------------------------------------------- outcomes


def test_outcome_rows_with_date_day_or_both():
    parsed = outcomes(OUTCOMES_HEADER + "PT-01,2024-03-15,,BSI-GSI,1.25\nPT-01,,-14,GAF,55\n"
                      "PT-02,2024-04-01,17,WAI,\" 4,5 \"\nPT-03,2024-04-01,,WAI,\n")
    assert parsed.ok, [str(p) for p in parsed.problems]
    assert parsed.rows == (
        OutcomeRow(2, "PT-01", "BSI-GSI", datetime.date(2024, 3, 15), None, 1.25),
        OutcomeRow(3, "PT-01", "GAF", None, -14, 55.0),
        OutcomeRow(4, "PT-02", "WAI", datetime.date(2024, 4, 1), 17, 4.5),
        OutcomeRow(5, "PT-03", "WAI", datetime.date(2024, 4, 1), None, None),
    )


def test_date_or_study_day_column_may_be_absent():
    assert outcomes("patient,study_day,measure,value\nPT-01,3,GAF,50\n").rows[0].study_day == 3
    assert outcomes("patient,date,measure,value\nPT-01,2024-01-02,GAF,50\n").rows[0].study_day is None


def test_neither_date_nor_day_column():
    p = one_problem(outcomes("patient,measure,value\nPT-01,GAF,50\n"))
    assert (p.line, p.message) == (1, "missing column 'date' or 'study_day'")


def test_row_without_date_or_day():
    p = one_problem(outcomes(OUTCOMES_HEADER + "PT-01,,,GAF,50\n"))
    assert (p.line, p.message) == (2, "row has neither a date nor a study_day")


@pytest.mark.parametrize("value", ["15.03.2024", "2024-02-30", "2024-3-15", "tomorrow"])
def test_bad_date(value):
    p = one_problem(outcomes(OUTCOMES_HEADER + f"PT-01,{value},,GAF,50\n"))
    assert p.message == f"invalid date '{value}' (expected YYYY-MM-DD, e.g. 2024-03-15)"


@pytest.mark.parametrize("value", ["1.5", "day 3", "100001", "-100001"])
def test_bad_study_day(value):
    p = one_problem(outcomes(OUTCOMES_HEADER + f"PT-01,,{value},GAF,50\n"))
    assert p.message.startswith(f"study_day '{value}' is not a whole number of days")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_non_finite_value(value):
    p = one_problem(outcomes(OUTCOMES_HEADER + f"PT-01,2024-01-01,,GAF,{value}\n"))
    assert (p.line, p.message) == (2, f"value '{value}' is not a finite number")


@pytest.mark.parametrize("value", ["fifty", "1,234.5", "1_000", "50 pts", "1,2,3"])
def test_non_numeric_value(value):
    p = one_problem(outcomes(OUTCOMES_HEADER + f'PT-01,2024-01-01,,GAF,"{value}"\n'))
    assert p.message == f"value '{value}' is not a number"


def test_measure_length_limit():
    p = one_problem(outcomes(OUTCOMES_HEADER + f"PT-01,2024-01-01,,{'M' * 65},1\n"))
    assert p.message == "measure name is too long (65 characters; the limit is 64)"
    assert outcomes(OUTCOMES_HEADER + f"PT-01,2024-01-01,,{'M' * 64},1\n").ok


def test_outcomes_extra_column():
    p = one_problem(outcomes("patient,date,measure,value,rater\nPT-01,2024-01-01,GAF,50,x\n"))
    assert p.message == "unknown column(s) 'rater'"


@pytest.mark.parametrize("raw, number", [("3", 3.0), ("-2.5", -2.5), ("3,5", 3.5), (".5", 0.5),
                                         ("1e3", 1000.0), ("+7", 7.0)])
def test_parse_number(raw, number):
    assert parse_number(raw) == number
