"""Export files from one tidy table: CSV, Excel, Parquet, SPSS and Stata; codebooks; manifest.

Pure functions (no Flask, no database). A *table* is anything with ``level``, ``frame`` (a
DataFrame whose columns are exactly the column names, in order), ``columns`` (objects with
``name``, ``label``, ``type``, ``description``, ``values`` and optionally ``item_id``) and
``metadata`` (str → str): ``mbtcode.services.exports.ExportTable`` is one. User
documentation: ``docs/exports.md``.

Column types: ``string``, ``integer``, ``number``, ``date``, ``boolean``. A string column
with ``values`` (value labels ``{integer code: text}``) is *categorical*; booleans carry
``{0: "false", 1: "true"}``. CSV, Excel and Parquet hold the text (and true booleans);
SPSS and Stata hold the integer codes with those texts as value labels, so the same column
reads back the same everywhere.

Byte for byte: the same table gives the same bytes in every format. What would otherwise
vary is pinned:

* ``.xlsx``: XlsxWriter takes the document's ``created`` property from the clock unless it is
  set, and stamps zip members with the time unless it writes in memory; both are fixed
  (``set_properties({"created": …})``, ``in_memory``: members dated 1980-01-01).
* ``.sav``: ReadStat writes the creation date and time into the file header (``creation_date``
  ``dd Mon yy``, 9 bytes at offset 92, and ``creation_time`` ``hh:mm:ss``, 8 bytes at offset
  101, after ``$FL2``, the 60-byte product name, five int32 fields and the float64 bias).
  pyreadstat has no parameter for it (ReadStat's ``readstat_writer_set_file_timestamp`` is not
  exposed), so :func:`_pin_sav_timestamp` overwrites those bytes with :data:`FIXED_TIMESTAMP`.
* ``.dta``: ReadStat writes ``<timestamp>`` + length byte + ``dd Mon yyyy hh:mm`` (17 bytes)
  into the XML-like header after ``<label>``; :func:`_pin_dta_timestamp` walks the header and
  overwrites them the same way.
* ``.parquet``: no time in the file; the writer's version string is constant per pyarrow
  version.
* ``.csv``: plain text.

The manifest's ``generated_at`` is the only time-varying field of an export (and the zip of
the web page has fixed member times, so only the manifest member differs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
import textwrap
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

FORMATS = ("csv", "xlsx", "parquet", "sav", "dta")
TYPES = ("string", "integer", "number", "date", "boolean")
EXTENSIONS = {f: f for f in FORMATS}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
    "sav": "application/x-spss-sav",
    "dta": "application/x-stata-dta",
}
BINARY_FORMATS = ("xlsx", "parquet", "sav", "dta")

#: The creation time written into .xlsx, .sav and .dta files (see the module docstring).
FIXED_TIMESTAMP = datetime(2000, 1, 1, 0, 0, 0)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Value labels of boolean columns in SPSS and Stata (the text CSV writes).
BOOLEAN_LABELS = {0: "false", 1: "true"}

#: A text cell starting with one of these is read as a formula by spreadsheets (OWASP "CSV
#: injection"); CSV and Excel get a leading apostrophe in front of it.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: Stata's limit on variable names; SPSS allows 64.
NAME_MAX = 32
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
#: Reserved words of Stata and SPSS (lower case); no column may be called one of them.
RESERVED_NAMES = frozenset({
    "_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long",
    "_n", "_pi", "_pred", "_rc", "_skip", "strl", "using", "with",
    "all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to",
})
#: Excel's limits: rows per sheet (with the header row) and characters per cell.
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_CHARS = 32_767
#: Stata variable labels and data labels: 80 characters; SPSS file label: 64 bytes.
STATA_LABEL_MAX = 80
SAV_FILE_LABEL_MAX = 64
SAV_VARIABLE_LABEL_MAX = 255
SAV_NOTE_WIDTH = 80


class ExportFormatError(ValueError):
    """A table that a format cannot hold (too many rows for Excel, a bad column name…)."""


FORMAT_NOTES = {
    "csv": (
        "UTF-8 with a byte order mark (so that Excel recognises UTF-8; pandas, readr and SPSS "
        "skip it), comma-separated, one header row of column names, lines ending in \\n, text "
        "quoted only when needed. Missing values are empty. Dates are ISO 8601 (YYYY-MM-DD), "
        "booleans true/false, numbers with a dot (shortest exact form, e.g. 4.5, 4.0). Text "
        "cells that start with =, +, -, @, a tab or a carriage return get a leading apostrophe "
        "(') so that spreadsheets do not run them as formulas."
    ),
    "xlsx": (
        "Excel workbook with three sheets: data (a header row of column names, then one row per "
        "record), codebook and metadata. Numbers are numbers, dates are dates (yyyy-mm-dd), "
        "booleans TRUE/FALSE, text is always text (never a formula or link); text cells that "
        "start with =, +, -, @, a tab or a carriage return get a leading apostrophe. Missing "
        "values are empty cells. At most 1,048,575 rows."
    ),
    "parquet": (
        "Apache Parquet (pyarrow): strings, int64, float64, date32 and boolean columns; missing "
        "values are nulls. The schema's key-value metadata holds the metadata (keys "
        "'mbtcode.<name>') and this codebook as JSON ('mbtcode.codebook'); each field's metadata "
        "holds its label and description. Text is exact (no apostrophes added)."
    ),
    "sav": (
        "SPSS system file. Variable labels come from 'label'; categorical text columns and "
        "booleans are integer codes with value labels (listed under each column); integers, "
        "numbers and dates are numeric (dates with format DATE11); missing values are system "
        "missing (numbers) or empty (text). The file label and document notes carry the study, "
        "scheme and scoring versions; the header's creation time is fixed at "
        "01 Jan 2000 00:00:00 so that unchanged data give identical files. Text is exact."
    ),
    "dta": (
        "Stata 14 or later (format 118). Variable labels come from 'label' (cut at 80 "
        "characters); categorical text columns and booleans are integer codes with value "
        "labels; dates are %td; missing values are '.' (numbers) or \"\" (text). The data "
        "label carries the scheme and scoring versions (the rest is in this codebook); the "
        "header's time stamp is fixed at 01 Jan 2000 00:00. Text is exact."
    ),
}


# ----------------------------------------------------------------------------- names and cells


def safe_column_name(raw: str, used: set[str] | None = None) -> str:
    """A name valid in every format: lower snake_case, a letter first, ≤ 32 characters.

    Accents are dropped, anything else than a letter or digit becomes ``_``; a name that
    would start with a digit gets ``v_`` in front, a reserved word ``_x`` behind; a name too
    long is cut and ends in 5 hex digits of the original's SHA-1, so two long names stay
    apart. With ``used``, the name is made unique against it (``_2``, ``_3`` …) and added.
    """
    text = unicodedata.normalize("NFKD", str(raw)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"v_{name}".rstrip("_")
    if name in RESERVED_NAMES:
        name += "_x"
    if len(name) > NAME_MAX:
        digest = hashlib.sha1(str(raw).encode("utf-8")).hexdigest()[:5]
        name = f"{name[:NAME_MAX - 6].rstrip('_')}_{digest}"
    if used is not None:
        base, n = name, 2
        while name in used:
            suffix = f"_{n}"
            name = base[:NAME_MAX - len(suffix)].rstrip("_") + suffix
            n += 1
        used.add(name)
    return name


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` if a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def check_table(table: Any) -> None:
    """Raise ExportFormatError unless names are valid and unique and match the frame."""
    names = [c.name for c in table.columns]
    if list(table.frame.columns) != names:
        raise ExportFormatError("the frame's columns are not the table's columns, in order")
    if len(set(names)) != len(names):
        raise ExportFormatError("column names are not unique")
    for column in table.columns:
        if not _NAME_RE.match(column.name) or column.name in RESERVED_NAMES:
            raise ExportFormatError(f"column name {column.name!r} is not valid in every format")
        if column.type not in TYPES:
            raise ExportFormatError(f"column {column.name!r} has unknown type {column.type!r}")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and value != value)


def _strings(series: pd.Series) -> list[str | None]:
    """Text cells; an empty text is missing (CSV cannot tell them apart, so no format does)."""
    return [v if type(v) is str and v else (None if _missing(v) or v == "" else str(v))
            for v in series.tolist()]


def _integers(series: pd.Series) -> list[int | None]:
    return [None if _missing(v) else int(v) for v in series.tolist()]


def _numbers(series: pd.Series) -> list[float | None]:
    values = _float_array(series).tolist()
    return [None if v != v else v for v in values]


def _float_array(series: pd.Series) -> np.ndarray:
    """float64 values, NaN for missing (pandas NA, None)."""
    if series.dtype == "float64":
        return series.to_numpy()
    return pd.to_numeric(series, errors="raise").astype("float64").to_numpy(na_value=np.nan)


def _booleans(series: pd.Series) -> list[bool | None]:
    return [None if _missing(v) else bool(v) for v in series.tolist()]


def _dates(series: pd.Series) -> list[date | None]:
    out = []
    for v in series.tolist():
        if _missing(v):
            out.append(None)
        elif isinstance(v, datetime):
            out.append(v.date())
        elif isinstance(v, date):
            out.append(v)
        else:
            out.append(pd.Timestamp(v).date())
    return out


_READERS = {"string": _strings, "integer": _integers, "number": _numbers, "boolean": _booleans,
            "date": _dates}


def _values(table: Any, column: Any) -> list:
    """The column's cells as Python values (None for missing)."""
    return _READERS[column.type](table.frame[column.name])


def normalise_frame(frame: pd.DataFrame, columns: Iterable[Any]) -> pd.DataFrame:
    """The frame's columns in canonical dtypes: text and dates as Python objects (None for
    missing; not pandas' ``str`` dtype), integers ``Int64``, numbers ``float64``, booleans
    ``boolean``.

    Also orders the columns as ``columns`` and resets the index.
    """
    data = {}
    for column in columns:
        if column.type == "number" and column.name in frame:
            data[column.name] = np.array(_float_array(frame[column.name]), dtype="float64")
            continue
        values = _READERS[column.type](frame[column.name]) if column.name in frame else [None] * len(frame)
        if column.type == "integer":
            data[column.name] = pd.array(values, dtype="Int64")
        elif column.type == "number":
            data[column.name] = np.array(values, dtype="float64")  # None → NaN
        elif column.type == "boolean":
            data[column.name] = pd.array(values, dtype="boolean")
        else:  # text and dates: Python objects, None for missing (not pandas' str dtype)
            data[column.name] = pd.Series(values, dtype=object, index=pd.RangeIndex(len(frame)))
    return pd.DataFrame(data, index=pd.RangeIndex(len(frame)))


def _codes(column: Any, values: list) -> list[float]:
    """Categorical text or booleans → their integer codes (NaN for missing)."""
    if column.type == "boolean":
        return [np.nan if v is None else float(int(v)) for v in values]
    inverse = {label: code for code, label in column.values.items()}
    out = []
    for v in values:
        if v is None or v == "":
            out.append(np.nan)
        elif v in inverse:
            out.append(float(inverse[v]))
        else:
            raise ExportFormatError(f"column {column.name!r}: {v!r} has no value label")
    return out


def _is_coded(column: Any) -> bool:
    return column.type == "boolean" or (column.type == "string" and bool(column.values))


def _value_labels(column: Any) -> dict[int, str]:
    if column.type == "boolean":
        return dict(column.values) if column.values else dict(BOOLEAN_LABELS)
    return dict(column.values)


# ----------------------------------------------------------------------------- the formats


def write(table: Any, fmt: str) -> bytes:
    """The table as the bytes of one file in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ExportFormatError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_table(table)
    return {"csv": _csv, "xlsx": _xlsx, "parquet": _parquet, "sav": _sav, "dta": _dta}[fmt](table)


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def _csv_field(text: str) -> str:
    """One CSV field: quoted (quotes doubled) when it holds a comma, quote or line break.

    Written by hand: Python's csv module quotes only the characters of its line terminator,
    so with ``\n`` line ends a lone ``\r`` would go out unquoted and split the row.
    """
    return '"' + text.replace('"', '""') + '"' if _CSV_SPECIAL.search(text) else text


def _csv_cells(table: Any, column: Any) -> list[str]:
    values = _values(table, column)
    if column.type == "string":
        return ["" if v is None else _csv_field(neutralise(v)) for v in values]
    if column.type == "number":
        return ["" if v is None else repr(v) for v in values]
    if column.type == "boolean":
        return ["" if v is None else ("true" if v else "false") for v in values]
    if column.type == "date":
        return ["" if v is None else v.isoformat() for v in values]
    return ["" if v is None else str(v) for v in values]


def _csv(table: Any) -> bytes:
    header = ",".join(c.name for c in table.columns)
    cells = [_csv_cells(table, c) for c in table.columns]
    body = "".join(",".join(row) + "\n" for row in zip(*cells, strict=True))
    return b"\xef\xbb\xbf" + (header + "\n" + body).encode("utf-8")


def _xlsx_text(text: str) -> str:
    return neutralise(text)[:XLSX_MAX_CHARS]


_XML_ESCAPES = re.compile(r"[&<>]")
_XML_ESCAPED = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_EXCEL_ESCAPE = re.compile(r"_x[0-9a-fA-F]{4}_")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Cell text as SpreadsheetML: XML-escaped; control characters as Excel's ``_xHHHH_``
    (a literal ``_xHHHH_`` escaped as ``_x005F_xHHHH_``), as XlsxWriter writes them."""
    if "_x" in text:
        text = _EXCEL_ESCAPE.sub(lambda m: "_x005F" + m.group(0), text)
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: f"_x{ord(m.group(0)):04X}_", text)
    return _XML_ESCAPES.sub(lambda m: _XML_ESCAPED[m.group(0)], text)


def _column_letters(j: int) -> str:
    letters = ""
    j += 1
    while j:
        j, rest = divmod(j - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


_EXCEL_EPOCH = date(1899, 12, 30)
_SHEET_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://'
               'schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.'
               'openxmlformats.org/officeDocument/2006/relationships">')
_SHEET_VIEW = ('<sheetViews><sheetView tabSelected="1" workbookViewId="0"><pane ySplit="1" '
               'topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection '
               'pane="bottomLeft"/></sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>')
_SHEET_TAIL = ('<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
               'footer="0.3"/></worksheet>')


def _inline(ref: str, text: str, style: str = "") -> str:
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{_xml_text(text)}</t></is></c>'


def _data_sheet_xml(table: Any, bold: int, date_style: int) -> str:
    """The ``data`` sheet's XML: a bold header row of names, then one row per record.

    Written here rather than cell by cell through XlsxWriter, which costs about 10 µs a cell
    (20,000 sessions × 56 columns: 11 s); this is the XML XlsxWriter writes for the same cells
    (numbers, booleans, dates with the date style, text as inline strings, so never a formula),
    built a column at a time.
    """
    n = len(table.frame)
    letters = [_column_letters(j) for j in range(len(table.columns))]
    rows = range(2, n + 2)
    columns = []
    for letter, column in zip(letters, table.columns, strict=True):
        values = _values(table, column)
        if column.type == "string":
            cells = ["" if v is None else _inline(f"{letter}{i}", _xlsx_text(v))
                     for i, v in zip(rows, values, strict=True)]
        elif column.type == "number":
            cells = ["" if v is None else f'<c r="{letter}{i}"><v>{v!r}</v></c>'
                     for i, v in zip(rows, values, strict=True)]
        elif column.type == "integer":
            cells = ["" if v is None else f'<c r="{letter}{i}"><v>{v}</v></c>'
                     for i, v in zip(rows, values, strict=True)]
        elif column.type == "boolean":
            cells = ["" if v is None else f'<c r="{letter}{i}" t="b"><v>{int(v)}</v></c>'
                     for i, v in zip(rows, values, strict=True)]
        else:
            cells = ["" if v is None else
                     f'<c r="{letter}{i}" s="{date_style}"><v>{(v - _EXCEL_EPOCH).days}</v></c>'
                     for i, v in zip(rows, values, strict=True)]
        columns.append(cells)
    last = f"{letters[-1]}{n + 1}" if letters else ""
    dimension = f'<dimension ref="A1:{last}"/>' if letters and last != "A1" else '<dimension ref="A1"/>'
    widths = "".join(f'<col min="{j + 1}" max="{j + 1}" width="11.7109375" customWidth="1"/>'
                     for j, c in enumerate(table.columns) if c.type == "date")
    header = "".join(_inline(f"{letter}1", c.name, f' s="{bold}"')
                     for letter, c in zip(letters, table.columns, strict=True))
    body = "".join(f'<row r="{i}">{"".join(cells)}</row>'
                   for i, cells in zip(rows, zip(*columns), strict=True)) if columns else ""
    return (_SHEET_HEAD + dimension + _SHEET_VIEW + (f"<cols>{widths}</cols>" if widths else "")
            + f'<sheetData><row r="1">{header}</row>{body}</sheetData>' + _SHEET_TAIL)


def _xlsx(table: Any) -> bytes:
    """The workbook: ``data``, ``codebook`` and ``metadata`` sheets.

    XlsxWriter writes the workbook (styles, document properties, the codebook and metadata
    sheets); the data sheet's XML comes from :func:`_data_sheet_xml` and replaces the
    placeholder XlsxWriter wrote for it, in a zip with the same members and fixed times.
    """
    import xlsxwriter

    n_rows = len(table.frame)
    if n_rows + 1 > XLSX_MAX_ROWS:
        raise ExportFormatError(
            f"the {table.level} table has {n_rows:,} rows; an Excel sheet holds at most "
            f"{XLSX_MAX_ROWS - 1:,}: choose csv, parquet, sav or dta")
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {
        "in_memory": True,  # zip members dated 1980-01-01, not now
        "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
    })
    workbook.set_properties({
        "title": f"mbtcode {table.level} export",
        "comments": (f"scheme {table.metadata.get('scheme_revision', '')} "
                     f"v{table.metadata.get('scheme_version', '')}, scoring "
                     f"{table.metadata.get('scoring_version', '')}"),
        "created": FIXED_TIMESTAMP,
    })
    bold = workbook.add_format({"bold": True})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    placeholder = workbook.add_worksheet("data")
    # the date style in use, so that styles.xml holds it (bold is used by the codebook); a
    # number, not text, so that the shared strings hold only what the other sheets use
    placeholder.write_datetime(1, 0, FIXED_TIMESTAMP, date_format)

    book = workbook.add_worksheet("codebook")
    headers = ["name", "label", "type", "description", "values", "original_id"]
    for j, header in enumerate(headers):
        book.write_string(0, j, header, bold)
    for i, entry in enumerate(codebook_json(table)["columns"], start=1):
        values = "; ".join(f"{v['value']} = {v['label']}" for v in entry["values"])
        for j, text in enumerate([entry["name"], entry["label"], entry["type"],
                                  entry["description"], values, entry.get("original_id") or ""]):
            if text:
                book.write_string(i, j, _xlsx_text(text))
    book.set_column(0, 0, 28)
    book.set_column(1, 1, 40)
    book.set_column(3, 3, 80)

    meta = workbook.add_worksheet("metadata")
    meta.write_string(0, 0, "key", bold)
    meta.write_string(0, 1, "value", bold)
    for i, (key, value) in enumerate(table.metadata.items(), start=1):
        meta.write_string(i, 0, _xlsx_text(str(key)))
        if value:
            meta.write_string(i, 1, _xlsx_text(str(value)))
    meta.set_column(0, 0, 22)
    meta.set_column(1, 1, 100)
    workbook.close()

    sheet = _data_sheet_xml(table, bold.xf_index, date_format.xf_index).encode("utf-8")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = sheet if info.filename == "xl/worksheets/sheet1.xml" else source.read(info)
            target.writestr(info, data)
    return out.getvalue()


def _parquet(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(),
             "date": pa.date32(), "boolean": pa.bool_()}
    arrays, fields = [], []
    for column in table.columns:
        kind = kinds[column.type]
        arrays.append(pa.array(_values(table, column), type=kind))
        meta = {"label": column.label, "description": column.description}
        if column.values:
            meta["values"] = json.dumps({str(k): v for k, v in column.values.items()}, ensure_ascii=False)
        if getattr(column, "item_id", None):
            meta["original_id"] = column.item_id
        fields.append(pa.field(column.name, kind, nullable=True, metadata=meta))
    metadata = {f"mbtcode.{key}": str(value) for key, value in table.metadata.items()}
    metadata["mbtcode.codebook"] = json.dumps(codebook_json(table), ensure_ascii=False, sort_keys=False)
    schema = pa.schema(fields, metadata=metadata)
    arrow_table = pa.Table.from_arrays(arrays, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(arrow_table, buffer, compression="snappy")
    return buffer.getvalue()


def _clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _wrap_bytes(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` UTF-8 bytes (SPSS document lines), broken at spaces if possible."""
    lines = []
    for line in textwrap.wrap(text, width, break_long_words=True) or [text.strip() or "-"]:
        while len(line.encode("utf-8")) > width:
            cut = len(_clip_bytes(line, width))
            space = line.rfind(" ", 0, cut)
            cut = space if space > 0 else cut
            lines.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        lines.append(line)
    return lines


def _file_label(table: Any) -> str:
    m = table.metadata
    return (f"mbtcode {table.level}; scheme {m.get('scheme_revision', '')} "
            f"v{m.get('scheme_version', '')}; scoring {m.get('scoring_version', '')}; "
            f"study {m.get('study', '')}")


def _stats_frame(table: Any, *, dates_as: str) -> tuple[pd.DataFrame, dict, dict, dict]:
    """The frame as pyreadstat writes it: codes for categories, floats, text, dates.

    Returns the frame, the value labels, the formats for all-missing date columns and the
    SPSS measurement levels.
    """
    data, value_labels, formats, measures = {}, {}, {}, {}
    for column in table.columns:
        values = _values(table, column)
        if _is_coded(column):
            data[column.name] = np.array(_codes(column, values), dtype="float64")
            value_labels[column.name] = _value_labels(column)
            measures[column.name] = "nominal"
        elif column.type == "string":
            data[column.name] = pd.Series(["" if v is None else v for v in values], dtype=object)
            measures[column.name] = "nominal"
        elif column.type == "date":
            if all(v is None for v in values):
                # pyreadstat would make an all-missing object column text: keep it a date
                data[column.name] = np.full(len(values), np.nan)
                formats[column.name] = dates_as
            else:
                data[column.name] = pd.Series(values, dtype=object)
            measures[column.name] = "scale"
        else:
            data[column.name] = np.array([np.nan if v is None else float(v) for v in values],
                                         dtype="float64")
            measures[column.name] = "scale"
    frame = pd.DataFrame(data, columns=[c.name for c in table.columns])
    return frame, value_labels, formats, measures


def _via_file(writer, suffix: str, frame: pd.DataFrame, **kwargs: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mbtcode-export-") as folder:
        path = os.path.join(folder, f"export{suffix}")
        writer(frame, path, **kwargs)
        with open(path, "rb") as fh:
            return fh.read()


def _sav(table: Any) -> bytes:
    import pyreadstat

    frame, value_labels, formats, measures = _stats_frame(table, dates_as="DATE11")
    for column in table.columns:
        if column.type in ("integer",) or _is_coded(column):
            formats.setdefault(column.name, "F8.0")
    notes = []
    for key, value in table.metadata.items():
        notes += _wrap_bytes(f"{key}: {value}", SAV_NOTE_WIDTH)
    data = _via_file(
        pyreadstat.write_sav, ".sav", frame,
        file_label=_clip_bytes(_file_label(table), SAV_FILE_LABEL_MAX),
        column_labels={c.name: _clip_bytes(c.label, SAV_VARIABLE_LABEL_MAX) for c in table.columns},
        note=notes,
        variable_value_labels=value_labels,
        variable_measure=measures,
        variable_format=formats,
    )
    return _pin_sav_timestamp(data)


def _dta(table: Any) -> bytes:
    import pyreadstat

    frame, value_labels, formats, _measures = _stats_frame(table, dates_as="%td")
    data = _via_file(
        pyreadstat.write_dta, ".dta", frame,
        file_label=_file_label(table)[:STATA_LABEL_MAX],
        column_labels={c.name: c.label[:STATA_LABEL_MAX] for c in table.columns},
        version=14,  # format 118: Stata 14 and later
        variable_value_labels=value_labels,
        variable_format=formats,
    )
    return _pin_dta_timestamp(data)


def _sav_stamp() -> bytes:
    t = FIXED_TIMESTAMP
    return (f"{t.day:02d} {_MONTHS[t.month - 1]} {t.year % 100:02d}"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}").encode("ascii")


def _pin_sav_timestamp(data: bytes) -> bytes:
    """Overwrite the SPSS header's creation date and time (offsets 92 and 101) with the fixed one.

    Header layout (ReadStat ``sav_file_header_record_t``; the SPSS system file format):
    rec_type[4] ``$FL2``, prod_name[60], layout_code, nominal_case_size, compression,
    weight_index, ncases (int32 each), bias (float64), creation_date[9] ``dd Mon yy``,
    creation_time[8] ``hh:mm:ss``, file_label[64].
    """
    if data[:4] not in (b"$FL2", b"$FL3") or len(data) < 176:
        raise ExportFormatError("unexpected SPSS file header; cannot pin its time stamp")
    stamp = _sav_stamp()
    original = data[92:109]
    if not re.fullmatch(rb"\d\d [A-Z][a-z][a-z] \d\d\d\d:\d\d:\d\d", original):
        raise ExportFormatError("unexpected SPSS creation time field; cannot pin it")
    return data[:92] + stamp + data[109:]


def _pin_dta_timestamp(data: bytes) -> bytes:
    """Overwrite the Stata header's ``<timestamp>`` (``dd Mon yyyy hh:mm``) with the fixed one.

    Header (formats 117–119): ``<stata_dta><header><release>NNN</release><byteorder>LSF|MSF
    </byteorder><K>`` K (2 bytes; 4 in 119) ``</K><N>`` N (4 bytes in 117, else 8) ``</N>
    <label>`` length (1 byte in 117, else 2) + label ``</label><timestamp>`` length byte (17)
    + the time stamp ``</timestamp></header>``.
    """
    head = b"<stata_dta><header><release>"
    if not data.startswith(head):
        raise ExportFormatError("unexpected Stata file header; cannot pin its time stamp")
    pos = len(head)
    release = int(data[pos:pos + 3])
    pos += 3
    tag = b"</release><byteorder>"
    if data[pos:pos + len(tag)] != tag:
        raise ExportFormatError("unexpected Stata file header; cannot pin its time stamp")
    pos += len(tag)
    order = "<" if data[pos:pos + 3] == b"LSF" else ">"
    pos += 3
    pos += len(b"</byteorder><K>") + (4 if release >= 119 else 2) + len(b"</K><N>")
    pos += (4 if release == 117 else 8) + len(b"</N><label>")
    if release == 117:
        (label_len,) = struct.unpack_from("B", data, pos)
        pos += 1
    else:
        (label_len,) = struct.unpack_from(order + "H", data, pos)
        pos += 2
    pos += label_len
    tag = b"</label><timestamp>"
    if data[pos:pos + len(tag)] != tag:
        raise ExportFormatError("unexpected Stata file header; cannot pin its time stamp")
    pos += len(tag)
    length = data[pos]
    t = FIXED_TIMESTAMP
    stamp = f"{t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} {t.hour:02d}:{t.minute:02d}".encode("ascii")
    if length != len(stamp) or data[pos + 1 + length:pos + 1 + length + 12] != b"</timestamp>":
        raise ExportFormatError("unexpected Stata time stamp field; cannot pin it")
    return data[:pos + 1] + stamp + data[pos + 1 + length:]


# ----------------------------------------------------------------------------- codebook, manifest


def codebook_json(table: Any) -> dict[str, Any]:
    """Every column (name, label, type, description, value labels, original id), the
    metadata, the counting rule, the row order and how each format stores the values."""
    metadata = {str(k): str(v) for k, v in table.metadata.items()}
    columns = []
    for column in table.columns:
        entry: dict[str, Any] = {
            "name": column.name, "label": column.label, "type": column.type,
            "description": column.description,
            "categorical": _is_coded(column),
            "values": [{"value": int(k), "label": v} for k, v in _value_labels(column).items()]
            if _is_coded(column) else [],
        }
        original = getattr(column, "item_id", None)
        if original:
            entry["original_id"] = original
        columns.append(entry)
    return {
        "title": f"mbtcode export codebook: {metadata.get('study', '')}, {table.level} level",
        "level": table.level,
        "rows": int(len(table.frame)),
        "row_order": metadata.get("row_order", ""),
        "counting_rule": metadata.get("counting_rule", ""),
        "metadata": metadata,
        "formats": dict(FORMAT_NOTES),
        "columns": columns,
    }


#: Characters escaped in the Markdown codebook: everything that can start inline markup
#: (emphasis, code spans, links and images, autolinks and raw HTML, entities, strikethrough,
#: math) or end a table cell. CommonMark shows a backslash-escaped ASCII punctuation character
#: as itself.
_MD_SPECIAL = frozenset("\\`*_{}[]()<>#|!&~$")
#: Bare URLs that GitHub-flavoured Markdown would turn into links: ``scheme://`` and ``www.``.
_MD_AUTOLINK = re.compile(r"(?i):(?=//)|(?<=www)\.")


def _md(text: Any) -> str:
    """User-supplied text (a study name, label, description, value label, metadata value) as
    literal Markdown text: on one line, Markdown punctuation backslash-escaped, so that nothing
    in it renders as a link, an image, HTML, emphasis or a new table cell."""
    text = "".join("\\" + c if c in _MD_SPECIAL else c for c in " ".join(str(text).split()))
    return _MD_AUTOLINK.sub(lambda m: "\\" + m.group(0), text)


def _md_code(text: Any) -> str:
    """Text as a Markdown code span (on one line; a fence longer than any run of backticks in
    it; pipes escaped, which GitHub-flavoured tables require even inside code)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def codebook_markdown(table: Any) -> str:
    """The codebook as Markdown (the same content as :func:`codebook_json`).

    Every text that comes from the study, the scheme or the data is escaped (:func:`_md`,
    :func:`_md_code`): the codebook renders it as literal text, never as markup.
    """
    book = codebook_json(table)
    study = _md(book["metadata"].get("study", ""))
    lines = [f"# mbtcode export codebook: {study}, {_md(book['level'])} level", ""]
    lines += [f"{book['rows']:,} rows. **Row order:** {_md(book['row_order'])}", ""]
    if book["counting_rule"]:
        lines += ["## Which rating counts", "", _md(book["counting_rule"]), ""]
    lines += ["## Metadata", "", "| key | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in book["metadata"].items()
              if k not in ("counting_rule", "row_order")]  # shown above
    lines += ["", "## Columns", "", "| # | name | label | type | description |", "|---|---|---|---|---|"]
    for i, column in enumerate(book["columns"], start=1):
        kind = column["type"] + (" (categorical)" if column["categorical"] and column["type"] == "string" else "")
        description = _md(column["description"])
        if column.get("original_id"):
            description += f" Original item id: {_md_code(column['original_id'])}."
        lines.append(f"| {i} | {_md_code(column['name'])} | {_md(column['label'])} | {_md(kind)} | "
                     f"{description} |")
    coded = [c for c in book["columns"] if c["categorical"]]
    if coded:
        lines += ["", "## Value labels", "",
                  "CSV, Excel and Parquet hold the text; SPSS and Stata hold the integer code with "
                  "the text as its value label.", ""]
        for column in coded:
            pairs = ", ".join(f"{v['value']} = {_md(v['label'])}" for v in column["values"])
            lines.append(f"- {_md_code(column['name'])}: {pairs}")
    lines += ["", "## Formats", ""]
    lines += [f"- **{fmt}**: {_md(note)}" for fmt, note in book["formats"].items()]
    return "\n".join(lines) + "\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(table: Any, files: Mapping[str, bytes], *, now: datetime | None = None) -> dict[str, Any]:
    """What an export holds: the files with their SHA-256 and size, rows, flags, metadata.

    ``generated_at`` (UTC) is its only time-varying field.
    """
    metadata = {str(k): str(v) for k, v in table.metadata.items()}
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "generated_at": moment.isoformat().replace("+00:00", "Z"),
        "mbtcode_version": metadata.get("mbtcode_version", ""),
        "study": metadata.get("study", ""),
        "level": table.level,
        "rows": int(len(table.frame)),
        "include_text": metadata.get("include_text") == "true",
        "include_notes": metadata.get("include_notes") == "true",
        "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()},
        "metadata": metadata,
    }


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n").encode("utf-8")


def bundle(table: Any, fmt: str, data_name: str, *, data: bytes | None = None,
           now: datetime | None = None) -> dict[str, bytes]:
    """The files of one export, in order: the data file ``data_name``, ``<data_name>.codebook.md``,
    ``<data_name>.codebook.json`` and ``<data_name>.manifest.json`` (listing the other three)."""
    files = {
        data_name: write(table, fmt) if data is None else data,
        f"{data_name}.codebook.md": codebook_markdown(table).encode("utf-8"),
        f"{data_name}.codebook.json": _json_bytes(codebook_json(table)),
    }
    files[f"{data_name}.manifest.json"] = _json_bytes(manifest(table, files, now=now))
    return files


#: Zip member time (the earliest a zip can hold): members do not change with the clock.
ZIP_MEMBER_TIME = (1980, 1, 1, 0, 0, 0)


def zip_files(files: Mapping[str, bytes]) -> bytes:
    """A zip of ``files`` (in the given order) whose members carry fixed times and modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_MEMBER_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the platform
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
