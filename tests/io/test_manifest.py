"""Tests for mbtcode.io.manifest (pure parser; no Flask, no DB)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from mbtcode.io.manifest import COLUMNS, ManifestRow, parse_manifest
from mbtcode.io.transcripts import Problem, TranscriptError

DATA = Path(__file__).parent / "data" / "transcripts"
HEADER = ",".join(COLUMNS)


def manifest(text: str | bytes, filename: str = "manifest.csv") -> dict[str, ManifestRow]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_manifest(data, filename)


def problems(text: str | bytes) -> list[Problem]:
    with pytest.raises(TranscriptError) as info:
        manifest(text)
    return info.value.problems


def one_problem(text: str | bytes) -> Problem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_fixture_manifest_full_rows():
    rows = manifest((DATA / "manifest.csv").read_bytes())
    assert list(rows) == ["individual.txt", "group.txt", "session.vtt"]
    assert rows["individual.txt"] == ManifestRow(
        line=2, file="individual.txt", label="S12", therapists=("TH-04",),
        patients=("PT-013",), date=datetime.date(2024, 3, 15), modality="individual",
        phase="main", session_number=12, language="de", speaker_map={},
    )


def test_semicolon_separated_therapists_and_patients():
    row = manifest((DATA / "manifest.csv").read_bytes())["group.txt"]
    assert row.therapists == ("TH-04", "TH-07")
    assert row.patients == ("PT-001", "PT-002", "PT-003")


def test_speaker_map_column():
    rows = manifest((DATA / "manifest.csv").read_bytes())
    assert rows["group.txt"].speaker_map == {"T1": "therapist", "T2": "therapist"}
    assert rows["session.vtt"].speaker_map == {"Th": "therapist", "Patient A": "patient"}


def test_empty_cells_are_none_or_empty():
    row = manifest((DATA / "manifest.csv").read_bytes())["session.vtt"]
    assert (row.label, row.therapists, row.patients, row.date, row.modality, row.phase,
            row.session_number, row.language) == (None, (), (), None, None, None, None, None)


def test_only_file_column_is_required():
    assert manifest("file\na.txt\nb.vtt\n")["b.vtt"].line == 3


def test_keyed_by_basename_of_paths():
    rows = manifest("file\nsessions/2024/a.txt\nC:\\data\\b.txt\n")
    assert list(rows) == ["a.txt", "b.txt"]
    assert rows["b.txt"].file == "b.txt"


def test_headers_and_values_case_insensitive():
    row = manifest("File,Modality,PHASE,Therapists\na.txt,Group,Final,T-1\n")["a.txt"]
    assert (row.modality, row.phase, row.therapists) == ("group", "final", ("T-1",))


def test_semicolon_delimiter():
    row = manifest("file;therapist;speaker_map\na.txt;TH-1, TH-2;T=therapist,P=patient\n")
    assert row["a.txt"].therapists == ("TH-1", "TH-2")
    assert row["a.txt"].speaker_map == {"T": "therapist", "P": "patient"}


def test_utf8_bom_and_crlf():
    assert "a.txt" in manifest(b"\xef\xbb\xbffile,label\r\na.txt,x\r\n")


def test_utf16_with_bom():
    assert "ä.txt" in manifest(b"\xff\xfe" + "file\r\nä.txt\r\n".encode("utf-16-le"))


def test_binary_manifest_refused():
    p = one_problem(b"\x89PNG\r\n\x1a\n....")
    assert p.message == "this is a PNG image, not a CSV manifest"


def test_empty_manifest():
    assert str(one_problem(b"  \n")) == "manifest.csv: manifest is empty"


def test_only_delimiters_is_empty():
    assert one_problem(",,\n,\n").message == "manifest is empty"


def test_header_without_rows():
    assert one_problem("file,label\n").message == "manifest has a header but no rows"


def test_missing_file_column_lists_columns_found():
    p = one_problem("label,date\nx,2024-01-01\n")
    assert p.line == 1
    assert p.message == "missing required column 'file'; columns found: 'label', 'date'"


def test_unknown_columns_listed_with_allowed_ones():
    p = one_problem("file,notes,Rater\na.txt,x,y\n")
    assert p.line == 1
    assert p.message == "unknown column(s) 'notes', 'Rater'"
    assert p.hint == "allowed columns: " + ", ".join(COLUMNS)


def test_duplicate_column():
    assert one_problem("file,label,Label\na.txt,x,y\n").message == "column 'label' appears twice"


def test_duplicate_file():
    p = one_problem("file\na.txt\nb.txt\ndir/a.txt\n")
    assert (p.line, p.message) == (4, "file 'a.txt' is listed twice (first on line 2)")


def test_duplicate_label_case_insensitive():
    p = one_problem("file,label\na.txt,S1\nb.txt,s1\n")
    assert (p.line, p.message) == (3, "label 's1' is used twice (first on line 2)")


@pytest.mark.parametrize("value", ["15.03.2024", "2024-02-30", "2024-3-15", "20240315",
                                   "yesterday"])
def test_bad_date(value):
    p = one_problem(f"file,date\na.txt,{value}\n")
    assert (p.line, p.message) == (2, f"invalid date '{value}' (expected YYYY-MM-DD, "
                                      "e.g. 2024-03-15)")


def test_bad_modality_lists_allowed():
    p = one_problem("file,modality\na.txt,couple\n")
    assert (p.line, p.message) == (2, "invalid modality 'couple'")
    assert p.hint == "allowed: individual, group, psychoeducation"


def test_bad_phase_lists_allowed():
    p = one_problem("file,phase\na.txt,middle\n")
    assert p.message == "invalid phase 'middle'"
    assert p.hint == "allowed: initial, main, final"


@pytest.mark.parametrize("value", ["0", "-1", "2.0", "two", "³"])
def test_session_number_must_be_positive_int(value):
    p = one_problem(f"file,session_number\na.txt,{value}\n")
    assert p.message == f"session_number must be a positive whole number, not '{value}'"


def test_bad_speaker_map_reports_manifest_line():
    p = one_problem("file,speaker_map\na.txt,T=therapist\nb.txt,P=client\n")
    assert str(p) == ("manifest.csv:3: unknown role 'client' for speaker 'P' — roles are: "
                      "therapist, patient, other")


def test_code_both_therapist_and_patient():
    p = one_problem("file,therapist,patient\na.txt,X1,X1\n")
    assert p.message == "'X1' is listed as both therapist and patient"


def test_row_with_too_many_values():
    p = one_problem("file,label\na.txt,x,extra\n")
    assert p.message == "row has 3 values but the header has 2 columns"


def test_row_without_file_name():
    assert one_problem("file,label\n,x\n").message == "row has no file name"


def test_all_problems_collected_in_line_order():
    found = problems("file,date,phase\na.txt,2024-13-01,main\nb.txt,2024-01-01,late\n"
                     "a.txt,,\n")
    assert [p.line for p in found] == [2, 3, 4]


def test_manifest_problem_is_transcript_error_value_error():
    with pytest.raises(ValueError):
        manifest("label\nx\n")


def test_site_and_team_columns_are_optional_and_trimmed():
    rows = manifest("file,Site,TEAM\na.txt, Oslo   Nord ,Team A\nb.txt,,\n")
    assert (rows["a.txt"].site, rows["a.txt"].team) == ("Oslo Nord", "Team A")
    assert (rows["b.txt"].site, rows["b.txt"].team) == (None, None)
    assert manifest("file\nc.txt\n")["c.txt"].site is None


@pytest.mark.parametrize("column", ["site", "team"])
def test_site_and_team_at_most_100_characters(column):
    assert getattr(manifest(f"file,{column}\na.txt,{'x' * 100}\n")["a.txt"], column) == "x" * 100
    p = one_problem(f"file,{column}\na.txt,{'x' * 101}\n")
    assert (p.line, p.message) == (2, f"{column} is too long (101 characters; the limit is 100)")
