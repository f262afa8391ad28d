"""Read long-format rating spreadsheets (``unit,rater,value``) for ``mbtcode irr``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pandas as pd

from .transcripts import Problem, TranscriptError, decode_text

MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Columns:
    unit: str = "unit"
    rater: str = "rater"
    value: str = "value"


def parse_ratings_csv(data: bytes, filename: str, columns: Columns, *, numeric: bool) -> pd.DataFrame:
    """Parse the file into a DataFrame with columns unit, rater, value; empty values are missing.

    Raises TranscriptError (file, line, what is wrong) for a missing column, a value that is
    not a number where the level needs numbers, or the same rater rating a unit twice.
    """
    if len(data) > MAX_BYTES:
        raise TranscriptError([Problem(filename, None, f"file is larger than {MAX_BYTES // 2**20} MB")])
    text = decode_text(data, filename)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = reader.fieldnames or []
    wanted = (columns.unit, columns.rater, columns.value)
    missing = [c for c in wanted if c not in header]
    if missing:
        found = ", ".join(header) or "none"
        raise TranscriptError([Problem(
            filename, 1, f"missing column(s) {', '.join(missing)} (found: {found})",
            "name them with --unit/--rater/--value",
        )])
    problems: list[Problem] = []
    rows: list[tuple[str, str, object]] = []
    seen: dict[tuple[str, str], int] = {}
    for record in reader:
        line = reader.line_num
        unit = (record.get(columns.unit) or "").strip()
        rater = (record.get(columns.rater) or "").strip()
        raw = (record.get(columns.value) or "").strip()
        if not unit or not rater:
            problems.append(Problem(filename, line, "empty unit or rater"))
            continue
        key = (unit, rater)
        if key in seen:
            problems.append(Problem(filename, line, f"rater '{rater}' rated unit '{unit}' again "
                                    f"(first on line {seen[key]})", "keep one rating per unit and rater"))
            continue
        seen[key] = line
        value: object = raw or None
        if numeric and raw:
            try:
                value = _number(raw)
            except ValueError:
                problems.append(Problem(filename, line, f"'{raw}' is not a number",
                                        "use --level nominal for categories"))
                continue
            if value != value or value in (float("inf"), float("-inf")):
                problems.append(Problem(filename, line, f"'{raw}' is not a finite number"))
                continue
        rows.append((unit, rater, value))
        if len(problems) >= 100:
            break
    if problems:
        raise TranscriptError(problems)
    if not rows:
        raise TranscriptError([Problem(filename, None, "no ratings in the file")])
    frame = pd.DataFrame(rows, columns=["unit", "rater", "value"])
    if numeric:
        frame["value"] = pd.to_numeric(frame["value"])
    return frame


def _number(raw: str) -> float:
    """A number as typed in a spreadsheet; a single decimal comma (``3,5``) is accepted."""
    try:
        return float(raw)
    except ValueError:
        if raw.count(",") == 1 and "." not in raw:
            return float(raw.replace(",", "."))
        raise
