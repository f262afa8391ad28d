"""Pure parser for the import manifest (a CSV with one row per transcript file).

Documented in ``docs/transcript-formats.md`` (section "Manifest"). Same encoding rules
as transcripts (``decode_text``); delimiter sniffed among ``,`` ``;`` and tab.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field, replace

from mbtcode.io.transcripts import (
    Problem,
    TranscriptError,
    _cap,
    _CsvLineError,
    _norm_header,
    _read_csv,
    _sniff_delimiter,
    _speaker_map_problems,
    decode_text,
)

__all__ = ["COLUMNS", "MODALITIES", "PHASES", "ManifestRow", "parse_manifest"]

COLUMNS = ("file", "label", "therapist", "patient", "date", "modality", "phase",
           "session_number", "language", "speaker_map", "site", "team")
MODALITIES = ("individual", "group", "psychoeducation")
PHASES = ("initial", "main", "final")
_ALIASES = {"therapists": "therapist", "patients": "patient"}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Width of the session's site and team columns.
MAX_SITE_TEAM_LENGTH = 100


@dataclass(frozen=True)
class ManifestRow:
    line: int
    file: str  # basename of the transcript file
    label: str | None
    therapists: tuple[str, ...]
    patients: tuple[str, ...]
    date: datetime.date | None
    modality: str | None
    phase: str | None
    session_number: int | None
    language: str | None
    speaker_map: dict[str, str] = field(default_factory=dict)
    site: str | None = None  # clinic or site code
    team: str | None = None  # the therapist team


def _basename(value: str) -> str:
    return value.replace("\\", "/").rstrip().rsplit("/", 1)[-1].strip()


def _codes(value: str) -> tuple[str, ...]:
    out: list[str] = []
    for code in re.split(r"[;,]", value):
        code = " ".join(code.split())
        if code and code not in out:
            out.append(code)
    return tuple(out)


def parse_manifest(data: bytes, filename: str) -> dict[str, ManifestRow]:
    """Parse a manifest CSV; returns rows keyed by transcript file basename.

    Raises :class:`TranscriptError` listing every problem found.
    """
    try:
        text = decode_text(data, filename)
    except TranscriptError as exc:
        raise TranscriptError(
            replace(p, message=p.message.replace("not a transcript", "not a CSV manifest"))
            for p in exc.problems
        ) from None
    if not text.strip():
        raise TranscriptError([Problem(filename, None, "manifest is empty")])
    problems: list[Problem] = []

    def problem(line: int | None, message: str, hint: str | None = None) -> None:
        problems.append(Problem(filename, line, message, hint))

    rows: dict[str, ManifestRow] = {}
    labels: dict[str, int] = {}
    reader = _read_csv(text, _sniff_delimiter(text))
    try:
        header_line, header = 0, None
        for header_line, row in reader:
            if any(c.strip() for c in row):
                header = row
                break
        if header is None:  # only delimiters / empty quoted cells
            raise TranscriptError([Problem(filename, None, "manifest is empty")])
        columns: dict[str, int] = {}
        unknown: list[str] = []
        for i, raw in enumerate(header):
            name = _norm_header(raw)
            name = _ALIASES.get(name, name)
            if not name:
                unknown.append("(empty)")
            elif name not in COLUMNS:
                unknown.append(raw.strip())
            elif name in columns:
                problem(header_line, f"column '{name}' appears twice")
            else:
                columns[name] = i
        if unknown:
            problem(header_line, "unknown column(s) " + ", ".join(f"'{u}'" for u in unknown),
                    "allowed columns: " + ", ".join(COLUMNS))
        if "file" not in columns:
            found = ", ".join(f"'{h.strip()}'" for h in header if h.strip()) or "none"
            problem(header_line, f"missing required column 'file'; columns found: {found}",
                    "the 'file' column holds each transcript's file name")
        if problems:
            raise TranscriptError(problems)

        ncols = len(header)
        seen_any = False
        for lineno, row in reader:
            if not any(c.strip() for c in row):
                continue
            seen_any = True
            if len(row) > ncols and any(c.strip() for c in row[ncols:]):
                problem(lineno, f"row has {len(row)} values but the header has {ncols} "
                        "columns", "put values that contain the delimiter in double quotes")

            def cell(name: str) -> str:
                i = columns.get(name)
                return row[i].strip() if i is not None and i < len(row) else ""

            file_value = cell("file")
            base = _basename(file_value)
            if not base:
                problem(lineno, "row has no file name")

            label = " ".join(cell("label").split()) or None
            if label is not None:
                key = label.casefold()
                if key in labels:
                    problem(lineno, f"label '{label}' is used twice (first on line "
                            f"{labels[key]})")
                else:
                    labels[key] = lineno

            therapists = _codes(cell("therapist"))
            patients = _codes(cell("patient"))
            for code in therapists:
                if code in patients:
                    problem(lineno, f"'{code}' is listed as both therapist and patient")

            date = None
            raw_date = cell("date")
            if raw_date:
                try:
                    if not _DATE_RE.match(raw_date):
                        raise ValueError
                    date = datetime.date.fromisoformat(raw_date)
                except ValueError:
                    problem(lineno, f"invalid date '{raw_date}' (expected YYYY-MM-DD, "
                            "e.g. 2024-03-15)")

            modality = cell("modality").lower() or None
            if modality is not None and modality not in MODALITIES:
                problem(lineno, f"invalid modality '{cell('modality')}'",
                        "allowed: " + ", ".join(MODALITIES))
            phase = cell("phase").lower() or None
            if phase is not None and phase not in PHASES:
                problem(lineno, f"invalid phase '{cell('phase')}'",
                        "allowed: " + ", ".join(PHASES))

            session_number = None
            raw_number = cell("session_number")
            if raw_number:
                if raw_number.isascii() and raw_number.isdigit() and int(raw_number) > 0:
                    session_number = int(raw_number)
                else:
                    problem(lineno, f"session_number must be a positive whole number, not "
                            f"'{raw_number}'")

            language = cell("language") or None

            site_team: dict[str, str | None] = {}
            for name in ("site", "team"):
                value = " ".join(cell(name).split()) or None
                if value is not None and len(value) > MAX_SITE_TEAM_LENGTH:
                    problem(lineno, f"{name} is too long ({len(value)} characters; the limit is "
                            f"{MAX_SITE_TEAM_LENGTH})", f"use a short {name} name or code")
                    value = None
                site_team[name] = value

            speaker_map, map_problems = _speaker_map_problems(cell("speaker_map"), filename,
                                                              lineno)
            problems.extend(map_problems)

            if base:
                if base in rows:
                    problem(lineno, f"file '{base}' is listed twice (first on line "
                            f"{rows[base].line})")
                    continue
                rows[base] = ManifestRow(
                    line=lineno, file=base, label=label, therapists=therapists,
                    patients=patients, date=date, modality=modality, phase=phase,
                    session_number=session_number, language=language,
                    speaker_map=speaker_map, site=site_team["site"], team=site_team["team"],
                )
        if not seen_any:
            problem(None, "manifest has a header but no rows")
    except _CsvLineError as exc:
        problem(exc.line, f"CSV syntax error: {exc.message}",
                "check for unbalanced double quotes")
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise TranscriptError(_cap(problems, filename))
    return rows
