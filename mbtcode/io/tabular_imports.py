"""Pure parsers for work moved in from spreadsheets: ratings, utterance codes and outcomes.

Each parser reads one CSV file (same encodings, delimiters and header rules as the transcript
manifest) and returns the rows that are well-formed, with their line numbers, plus every
problem found in the others. Whether a session, rater, item or patient exists is the
services' business (``services/work_imports.py``, ``services/outcomes.py``): they add their
problems to these, so a user sees everything wrong with a file at once.

User documentation: ``docs/importing-work.md``. Keep both in sync.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .transcripts import (
    MAX_BYTES,
    Problem,
    TranscriptError,
    _CsvLineError,
    _fmt_size,
    _norm_header,
    _read_csv,
    _sniff_delimiter,
    decode_text,
)

__all__ = [
    "CODE_COLUMNS",
    "MAX_MEASURE_LENGTH",
    "MAX_STUDY_DAY",
    "OUTCOME_COLUMNS",
    "RATING_COLUMNS",
    "CodeRow",
    "OutcomeRow",
    "ParsedTable",
    "RatingRow",
    "normalise_key",
    "parse_codes_csv",
    "parse_number",
    "parse_outcomes_csv",
    "parse_ratings_csv",
]

RATING_COLUMNS = ("session", "rater", "instrument", "item", "dimension", "value")
CODE_COLUMNS = ("session", "utterance", "rater", "code_set", "code")
OUTCOME_COLUMNS = ("patient", "date", "study_day", "measure", "value")
MAX_MEASURE_LENGTH = 64
MAX_CODE_LENGTH = 64  # patient codes, ids: the width of the columns that store them
#: A bound far beyond any treatment (about 270 years), so a typo cannot overflow the column.
MAX_STUDY_DAY = 100_000
NA_VALUES = ("na", "n/a")

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_RE = re.compile(r"^[+-]?\d{1,15}$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$")

R = TypeVar("R")


@dataclass(frozen=True)
class RatingRow:
    """One rating as written: names still unresolved; value None and not N/A means empty."""

    line: int
    session: str
    rater: str  # lower-cased e-mail
    instrument: str
    item: str  # may be empty (overall ratings)
    dimension: str  # normalised: lower case, spaces and '-' as '_'
    value: int | None
    not_applicable: bool

    @property
    def empty(self) -> bool:
        return self.value is None and not self.not_applicable


@dataclass(frozen=True)
class CodeRow:
    """One utterance code as written; an empty ``code`` means the utterance was not coded."""

    line: int
    session: str
    utterance: int  # 1-based position in the transcript
    rater: str  # lower-cased e-mail
    code_set: str
    code: str

    @property
    def empty(self) -> bool:
        return not self.code


@dataclass(frozen=True)
class OutcomeRow:
    """One outcome value as written; ``value`` None means the cell was empty."""

    line: int
    patient: str
    measure: str
    date: datetime.date | None
    study_day: int | None
    value: float | None

    @property
    def empty(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class ParsedTable(Generic[R]):
    """The well-formed rows of one file and the problems of the others.

    Rows with a problem are left out of ``rows``, so later checks never report a second,
    derived problem for a line that is already wrong.
    """

    filename: str
    sha256: str
    rows: tuple[R, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def normalise_key(value: str) -> str:
    """How names are compared: case-insensitive, spaces and '-' read as '_' (like headers)."""
    return _norm_header(value)


# --------------------------------------------------------------------------- reading


class _Table:
    """A file's rows as ``(line, cell)`` pairs, after the header checks."""

    def __init__(self, filename: str):
        self.filename = filename
        self.problems: list[Problem] = []

    def problem(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.filename, line, message, hint))


def _decode(data: bytes, filename: str) -> str:
    """decode_text, with the transcript wording of its messages turned into CSV wording."""
    try:
        return decode_text(data, filename)
    except TranscriptError as exc:
        raise TranscriptError(
            replace(
                p,
                message=p.message.replace("not a text transcript", "not a CSV file")
                .replace("not a transcript", "not a CSV file"),
                hint=(p.hint or "").replace("upload the transcript as .txt, .csv, .vtt, .srt or .docx",
                                             "save the sheet as CSV (UTF-8)") or None,
            )
            for p in exc.problems
        ) from None


def _rows(
    data: bytes, filename: str, table: _Table, *, required: tuple[str, ...],
    optional: tuple[str, ...] = (), max_bytes: int = MAX_BYTES,
    check_header: Callable[[dict[str, int], int], None] | None = None,
) -> Iterator[tuple[int, Callable[[str], str]]]:
    """Yield ``(line, cell)`` for each non-empty row; header and file problems go to ``table``.

    ``cell(name)`` is the stripped value of a column ("" when the column is absent).
    """
    if len(data) > max_bytes:
        table.problem(None, f"file is too large ({_fmt_size(len(data))}; the limit is "
                      f"{_fmt_size(max_bytes)})", "split it into several files")
        return
    if not data:
        table.problem(None, "file is empty")
        return
    try:
        text = _decode(data, filename)
    except TranscriptError as exc:
        table.problems.extend(exc.problems)
        return
    if not text.strip():
        table.problem(None, "file is empty (only whitespace)")
        return
    allowed = required + optional
    reader = _read_csv(text, _sniff_delimiter(text))
    try:
        header_line, header = next(((n, row) for n, row in reader if any(c.strip() for c in row)),
                                   (0, None))
        if header is None:
            table.problem(None, "file is empty")
            return
        columns: dict[str, int] = {}
        unknown: list[str] = []
        unnamed: list[int] = []
        for i, raw in enumerate(header):
            name = _norm_header(raw)
            if not name:
                # Spreadsheets often save trailing delimiters; only values under them are wrong.
                unnamed.append(i)
                continue
            if name not in allowed:
                unknown.append(raw.strip())
            elif name in columns:
                table.problem(header_line, f"column '{name}' appears twice")
            else:
                columns[name] = i
        if unknown:
            table.problem(header_line, "unknown column(s) " + ", ".join(f"'{u}'" for u in unknown),
                          "allowed columns: " + ", ".join(allowed) + " (remove or rename the others)")
        missing = [c for c in required if c not in columns]
        if missing:
            found = ", ".join(f"'{h.strip()}'" for h in header if h.strip()) or "none"
            table.problem(header_line, "missing column(s) " + ", ".join(f"'{m}'" for m in missing)
                          + f"; columns found: {found}",
                          "the header row needs: " + ", ".join(required))
        if check_header is not None:
            check_header(columns, header_line)
        if table.problems:
            return
        width = len(header)
        seen_any = False
        for line, row in reader:
            if not any(c.strip() for c in row):
                continue
            seen_any = True
            if len(row) > width and any(c.strip() for c in row[width:]):
                table.problem(line, f"row has {len(row)} values but the header has {width} columns",
                              "put values that contain the delimiter in double quotes")
                continue
            stray = [i + 1 for i in unnamed if i < len(row) and row[i].strip()]
            if stray:
                table.problem(line, f"value in column {stray[0]}, which has no name in the header",
                              "name the column, or remove the value")
                continue

            def cell(name: str, row: list[str] = row) -> str:
                i = columns.get(name)
                return row[i].strip() if i is not None and i < len(row) else ""

            yield line, cell
        if not seen_any:
            table.problem(None, "file has a header but no rows")
    except _CsvLineError as exc:
        table.problem(exc.line, f"CSV syntax error: {exc.message}", "check for unbalanced double quotes")


def _finish(data: bytes, table: _Table, rows: list[R]) -> ParsedTable[R]:
    problems = sorted(table.problems, key=lambda p: (p.line is None, p.line or 0))
    return ParsedTable(table.filename, hashlib.sha256(data).hexdigest(), tuple(rows), tuple(problems))


def _required_cells(table: _Table, line: int, cell: Callable[[str], str], names: tuple[str, ...]) -> bool:
    """Report each empty required cell; True if all are given."""
    ok = True
    for name in names:
        if not cell(name):
            table.problem(line, f"the '{name}' cell is empty", "every row needs " + ", ".join(names))
            ok = False
    return ok


def _label(value: str) -> str:
    return " ".join(value.split())


# --------------------------------------------------------------------------- ratings


def parse_ratings_csv(data: bytes, filename: str, *, max_bytes: int = MAX_BYTES) -> ParsedTable[RatingRow]:
    """Read ``session,rater,instrument,item,dimension,value`` rows.

    ``value`` is a whole number, ``NA``/``N/A`` (any case) or empty (not rated); the
    instrument's scale and N/A rule are checked by the service, which knows the scheme.
    """
    table = _Table(filename)
    rows: list[RatingRow] = []
    for line, cell in _rows(data, filename, table, required=RATING_COLUMNS, max_bytes=max_bytes):
        ok = _required_cells(table, line, cell, ("session", "rater", "instrument", "dimension"))
        raw = cell("value")
        value, na = None, False
        if raw.lower() in NA_VALUES:
            na = True
        elif raw:
            if _INT_RE.match(raw) and raw.isascii():
                value = int(raw)
            else:
                table.problem(line, f"value '{raw}' is not a whole number",
                              "write a whole number on the instrument's scale, NA for not applicable, "
                              "or leave the cell empty if the item was not rated")
                ok = False
        if ok:
            rows.append(RatingRow(line, _label(cell("session")), cell("rater").lower(),
                                  cell("instrument"), cell("item"), normalise_key(cell("dimension")),
                                  value, na))
    return _finish(data, table, rows)


# --------------------------------------------------------------------------- codes


def parse_codes_csv(data: bytes, filename: str, *, max_bytes: int = MAX_BYTES) -> ParsedTable[CodeRow]:
    """Read ``session,utterance,rater,code_set,code`` rows; an empty code means "not coded"."""
    table = _Table(filename)
    rows: list[CodeRow] = []
    for line, cell in _rows(data, filename, table, required=CODE_COLUMNS, max_bytes=max_bytes):
        ok = _required_cells(table, line, cell, ("session", "utterance", "rater"))
        raw_position = cell("utterance")
        position = 0
        if raw_position:
            if raw_position.isascii() and raw_position.isdigit() and len(raw_position) <= 9 \
                    and int(raw_position) > 0:
                position = int(raw_position)
            else:
                table.problem(line, f"utterance '{raw_position}' is not a position in the transcript",
                              "write the utterance's number: 1 for the first utterance, 2 for the "
                              "second, …")
                ok = False
        code = cell("code")
        if code and not cell("code_set"):
            table.problem(line, "the 'code_set' cell is empty",
                          "name the code set of the code, e.g. the one for therapist utterances")
            ok = False
        if ok:
            rows.append(CodeRow(line, _label(cell("session")), position, cell("rater").lower(),
                                cell("code_set"), code))
    return _finish(data, table, rows)


# --------------------------------------------------------------------------- outcomes


def _needs_a_date_column(table: _Table) -> Callable[[dict[str, int], int], None]:
    def check(columns: dict[str, int], line: int) -> None:
        if "date" not in columns and "study_day" not in columns:
            table.problem(line, "missing column 'date' or 'study_day'",
                          "date each value by calendar date (YYYY-MM-DD), by study day, or both")

    return check


def parse_number(raw: str) -> float:
    """A number as typed in a spreadsheet; a single decimal comma (``3,5``) is accepted.

    Raises ValueError for anything else, including ``nan`` and ``inf``.
    """
    if not _NUMBER_RE.match(raw) or not raw.isascii():
        raise ValueError(raw)
    if "," in raw:
        if raw.count(",") > 1 or "." in raw:
            raise ValueError(raw)
        raw = raw.replace(",", ".")
    return float(raw)


def parse_outcomes_csv(data: bytes, filename: str, *, max_bytes: int = MAX_BYTES) -> ParsedTable[OutcomeRow]:
    """Read ``patient,date,study_day,measure,value`` rows (``date`` or ``study_day`` may be absent).

    Each row needs a date, a study day or both; the value is a finite number or empty.
    """
    table = _Table(filename)
    rows: list[OutcomeRow] = []
    for line, cell in _rows(data, filename, table, required=("patient", "measure", "value"),
                            optional=("date", "study_day"), max_bytes=max_bytes,
                            check_header=_needs_a_date_column(table)):
        ok = _required_cells(table, line, cell, ("patient", "measure"))
        patient = _label(cell("patient"))
        if len(patient) > MAX_CODE_LENGTH:
            table.problem(line, f"patient code is too long ({len(patient)} characters; the limit is "
                          f"{MAX_CODE_LENGTH})")
            ok = False
        measure = _label(cell("measure"))
        if len(measure) > MAX_MEASURE_LENGTH:
            table.problem(line, f"measure name is too long ({len(measure)} characters; the limit is "
                          f"{MAX_MEASURE_LENGTH})", "use a short name such as BSI-GSI, GAF or WAI")
            ok = False
        date = None
        raw_date = cell("date")
        if raw_date:
            try:
                if not _DATE_RE.match(raw_date):
                    raise ValueError
                date = datetime.date.fromisoformat(raw_date)
            except ValueError:
                table.problem(line, f"invalid date '{raw_date}' (expected YYYY-MM-DD, e.g. 2024-03-15)")
                ok = False
        day = None
        raw_day = cell("study_day")
        if raw_day:
            if _INT_RE.match(raw_day) and raw_day.isascii() and abs(int(raw_day)) <= MAX_STUDY_DAY:
                day = int(raw_day)
            else:
                table.problem(line, f"study_day '{raw_day}' is not a whole number of days "
                              f"between -{MAX_STUDY_DAY:,} and {MAX_STUDY_DAY:,}",
                              "day 0 is the patient's first session in the study; days before it "
                              "are negative")
                ok = False
        if not raw_date and not raw_day:
            table.problem(line, "row has neither a date nor a study_day",
                          "give the date (YYYY-MM-DD), the study day, or both")
            ok = False
        value = None
        raw_value = cell("value")
        if raw_value:
            try:
                value = parse_number(raw_value)
            except ValueError:
                try:
                    special = float(raw_value)
                except ValueError:
                    special = 0.0
                if not math.isfinite(special):
                    table.problem(line, f"value '{raw_value}' is not a finite number",
                                  "leave the cell empty if there is no value")
                else:
                    table.problem(line, f"value '{raw_value}' is not a number",
                                  "write digits with a decimal point or a single decimal comma, "
                                  "without thousands separators or units")
                ok = False
            else:
                if not math.isfinite(value):
                    table.problem(line, f"value '{raw_value}' is not a finite number",
                                  "leave the cell empty if there is no value")
                    ok = False
        if ok:
            rows.append(OutcomeRow(line, patient, measure, date, day, value))
    return _finish(data, table, rows)
