"""Pure transcript parsers (no Flask, no database).

Formats: plain text (``SPEAKER: text``), CSV/TSV, WebVTT, SRT and Word ``.docx``.
Every parser collects *all* problems it can find in one file and raises a single
:class:`TranscriptError` listing them, so a batch import can report everything at once.

User documentation: ``docs/transcript-formats.md``. Keep both in sync.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath

__all__ = [
    "ROLES",
    "FORMATS",
    "MAX_BYTES",
    "MAX_UTTERANCES",
    "MAX_UTTERANCE_CHARS",
    "Problem",
    "TranscriptError",
    "ParsedUtterance",
    "ParsedTranscript",
    "CsvColumns",
    "decode_text",
    "parse_transcript",
    "parse_timestamp",
    "parse_speaker_map",
    "default_role",
    "resolve_roles",
    "is_valid_label",
]

ROLES = ("therapist", "patient", "other")
FORMATS = ("txt", "csv", "vtt", "srt", "docx")
MAX_BYTES = 20 * 1024 * 1024
MAX_UTTERANCES = 50_000
MAX_UTTERANCE_CHARS = 20_000
MAX_PROBLEMS = 100  # per file; the rest is summarised in one extra problem

EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".csv": "csv",
    ".tsv": "csv",
    ".vtt": "vtt",
    ".webvtt": "vtt",
    ".srt": "srt",
    ".docx": "docx",
}


# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem in one file. ``line`` is 1-based (a paragraph number for .docx)."""

    file: str
    line: int | None
    message: str
    hint: str | None = None
    unit: str = "line"  # "line" or "paragraph" (docx); only changes how str() reads

    def __str__(self) -> str:
        if self.line is None:
            where = self.file
        elif self.unit == "line":
            where = f"{self.file}:{self.line}"
        else:
            where = f"{self.file}, {self.unit} {self.line}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" — {self.hint}"
        return text


class TranscriptError(ValueError):
    """Raised with every problem found; ``str()`` gives one problem per line."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def _cap(problems: list[Problem], filename: str) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    extra = len(problems) - MAX_PROBLEMS
    return problems[:MAX_PROBLEMS] + [
        Problem(filename, None, f"… and {extra} more problem(s) in this file not shown")
    ]


# --------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedUtterance:
    position: int  # 1-based
    speaker: str
    text: str
    start: float | None  # seconds
    end: float | None
    line: int  # line (paragraph for docx) where the utterance starts


_new_object = object.__new__


def _make_utterance(position: int, speaker: str, text: str, start: float | None,
                    end: float | None, line: int) -> ParsedUtterance:
    """Same result as ParsedUtterance(...), without the frozen-dataclass __init__ cost
    (a large share of the parse time of a typical file)."""
    obj = _new_object(ParsedUtterance)
    obj.__dict__.update(position=position, speaker=speaker, text=text, start=start,
                        end=end, line=line)
    return obj


@dataclass(frozen=True)
class ParsedTranscript:
    filename: str
    format: str  # one of FORMATS (.tsv files report "csv")
    sha256: str  # hex digest of the raw file bytes
    utterances: tuple[ParsedUtterance, ...]
    speakers: tuple[str, ...]  # labels in order of first appearance


@dataclass(frozen=True)
class CsvColumns:
    speaker: str = "speaker"
    text: str = "text"
    start: str = "start"
    end: str = "end"


# --------------------------------------------------------------------------------------
# Decoding and binary detection
# --------------------------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str, str | None], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", None),
    (b"%PDF-", "a PDF document", "export the transcript as .docx, .txt or .csv"),
    (b"GIF87a", "a GIF image", None),
    (b"GIF89a", "a GIF image", None),
    (b"\xff\xd8\xff", "a JPEG image", None),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc/.xls)",
     "save it as .docx (Word) or .csv (Excel)"),
    (b"{\\rtf", "an RTF document", "save it as .docx or plain text (.txt)"),
)


def _zip_kind(data: bytes) -> str:
    """'docx', 'xlsx', 'odt' or 'zip' for data that starts with a ZIP signature."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return "zip"
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "content.xml" in names:
        return "odt"
    return "zip"


def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _binary_problem(data: bytes, filename: str) -> Problem | None:
    for magic, what, hint in _MAGIC:
        if data.startswith(magic):
            return Problem(
                filename, None, f"this is {what}, not a transcript",
                hint or "upload the transcript as .txt, .csv, .vtt, .srt or .docx",
            )
    if _is_zip(data):
        kind = _zip_kind(data)
        if kind == "docx":
            return Problem(filename, None, "this is a Word document (.docx), not a text file",
                           "name it *.docx or pass --format docx")
        if kind == "xlsx":
            return Problem(filename, None, "this is an Excel workbook, not a text file",
                           "save the sheet as CSV (UTF-8)")
        if kind == "odt":
            return Problem(filename, None, "this is an OpenDocument file, not a text file",
                           "save it as .docx, .txt or .csv")
        return Problem(filename, None, "this is a ZIP archive, not a transcript",
                       "unpack it and import the transcript files")
    return None


def _line_of_offset(data: bytes, offset: int) -> int:
    head = data[:offset].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return head.count(b"\n") + 1


def _suggest_encoding(data: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
    except Exception:  # pragma: no cover - suggestion only
        return None
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    return best.encoding


def decode_text(data: bytes, filename: str) -> str:
    """Decode a text file: UTF-8 (BOM optional) or UTF-16 with BOM.

    Line endings (CRLF, CR, LF) are normalised to ``\\n``. Binary files and invalid
    UTF-8 raise :class:`TranscriptError`.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        body, codec, skip = data[3:], "utf-8", 3
    elif data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        codec = "utf-16-le" if data.startswith(b"\xff\xfe") else "utf-16-be"
        body, skip = data[2:], 2
    else:
        body, codec, skip = data, "utf-8", 0
        problem = _binary_problem(data, filename)
        if problem is None and b"\x00" in data:
            hint = "upload the transcript as .txt, .csv, .vtt, .srt or .docx"
            sample = data[:4096]
            if sample.count(b"\x00") * 3 >= len(sample):
                hint = "if this is UTF-16 text without a byte order mark, re-save it as UTF-8"
            problem = Problem(filename, _line_of_offset(data, data.index(b"\x00")),
                              "file contains NUL bytes: it looks like a binary file, "
                              "not a text transcript", hint)
        if problem is not None:
            raise TranscriptError([problem])
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        if codec == "utf-8":
            enc = _suggest_encoding(data)
            hint = "re-save the file as UTF-8"
            if enc:
                hint = f"the file looks like {enc}; re-save it as UTF-8"
            bad = body[exc.start:exc.start + 1].hex().upper()
            msg = f"file is not valid UTF-8 (byte 0x{bad} at byte offset {offset})"
        else:
            hint = "re-save the file as UTF-8"
            msg = f"file is not valid {codec.upper()} (byte offset {offset})"
        raise TranscriptError([Problem(filename, _line_of_offset(data, offset), msg, hint)])
    if skip and text.startswith("\ufeff"):  # doubled BOM
        text = text[1:]
    if "\x00" in text:
        raise TranscriptError([Problem(filename, None, "file contains NUL characters: it looks "
                                       "like a binary file, not a text transcript")])
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


# --------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------

_TS_RE = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?$")
_NUM_RE = re.compile(r"^\d+(?:[.,]\d+)?$")
_TS_FORMS = "hh:mm:ss, mm:ss or hh:mm:ss.mmm"


def parse_timestamp(value: str) -> float:
    """``hh:mm:ss``, ``mm:ss`` or ``hh:mm:ss.mmm`` (``,`` also accepted) -> seconds.

    Raises ``ValueError`` with a user-facing message.
    """
    m = _TS_RE.match(value)
    if m is None:
        value = value.strip()
        m = _TS_RE.match(value)
        if m is None:
            raise ValueError(f"invalid timestamp '{value}' (expected {_TS_FORMS})")
    hours, minutes, seconds, frac = m.groups()
    mi, se = int(minutes), int(seconds)
    if mi >= 60:
        hint = " (use hh:mm:ss for times past one hour)" if hours is None else ""
        raise ValueError(f"invalid timestamp '{value}': minutes must be below 60{hint}")
    if se >= 60:
        raise ValueError(f"invalid timestamp '{value}': seconds must be below 60")
    total = float((int(hours) * 3600 if hours else 0) + mi * 60 + se)
    if frac:
        total = round(total + int(frac) / (10 ** len(frac)), 3)
    return total


def _parse_seconds(value: str) -> float:
    """CSV time cell: seconds as a number (``12.5`` or ``12,5``) or a timestamp."""
    s = value.strip()
    if _NUM_RE.match(s):
        return round(float(s.replace(",", ".")), 3)
    if s.startswith("-"):
        raise ValueError(f"invalid time '{s}': must not be negative")
    if ":" not in s:
        raise ValueError(f"invalid time '{s}' (expected seconds or {_TS_FORMS})")
    return parse_timestamp(s)


def _fmt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    out = f"{h:02d}:{m:02d}:{s:02d}"
    return out + (f".{ms:03d}" if ms else "")


# --------------------------------------------------------------------------------------
# Speaker labels and roles
# --------------------------------------------------------------------------------------

_LABEL_RE = re.compile(r"[^\W_][\w \-.']{0,39}")
_LABEL_HELP = ("speaker labels are 1–40 letters, digits, spaces or -_.' and start with a "
               "letter or digit")

_ROLE_WORDS = {
    "therapist": (
        "t", "th", "ther", "thera", "therapist", "therapeut", "therapeutin",
        "cotherapist", "cotherapeut", "cotherapeutin", "ct", "cth",
        "clinician", "counselor", "counsellor", "behandler", "behandlerin",
    ),
    "patient": (
        "p", "pt", "pat", "patient", "patientin", "client", "klient", "klientin",
        "c", "cl", "kl", "participant", "teilnehmer", "teilnehmerin", "tn",
    ),
    "other": (
        "other", "others", "unknown", "unk", "observer", "beobachter", "beobachterin",
        "interviewer", "x", "group", "gruppe", "all", "alle", "several", "multiple",
    ),
}
_ROLE_BY_WORD = {w: role for role, words in _ROLE_WORDS.items() for w in words}
_SEP_RE = re.compile(r"[\s_.\-']+")
_DIGIT_SUFFIX_RE = re.compile(r"^(.*?[^\W\d_])[\s_.\-]*\d+[^\W\d_]?$")
_LETTER_SUFFIX_RE = re.compile(r"^(.*?[^\W\d_])[\s_.\-]+[^\W\d_]$")


def _normalize_label(label: str) -> str:
    return " ".join(label.split())


def is_valid_label(label: str) -> bool:
    return _LABEL_RE.fullmatch(label) is not None


@lru_cache(maxsize=4096)
def default_role(label: str) -> str | None:
    """The default role of a speaker label, or ``None`` when it is not recognised.

    Case-insensitive; a trailing number (``T1``, ``T-2``, ``TH-04``, ``Pt 2``) or a single
    letter after a separator (``Patient A``, ``T-B``) is ignored.
    """
    s = label.strip().lower()
    candidates = [s]
    m = _DIGIT_SUFFIX_RE.match(s)
    if m:
        candidates.append(m.group(1))
    m = _LETTER_SUFFIX_RE.match(s)
    if m:
        candidates.append(m.group(1))
    for cand in candidates:
        role = _ROLE_BY_WORD.get(_SEP_RE.sub("", cand))
        if role:
            return role
    return None


def _split_entries(text: str) -> list[str]:
    return [e.strip() for e in re.split(r"[,;]", text) if e.strip()]


def _speaker_map_problems(text: str, source: str, line: int | None
                          ) -> tuple[dict[str, str], list[Problem]]:
    result: dict[str, str] = {}
    folded: dict[str, str] = {}
    problems: list[Problem] = []
    allowed = ", ".join(ROLES)
    for entry in _split_entries(text or ""):
        if entry.count("=") != 1:
            problems.append(Problem(source, line, f"invalid speaker map entry '{entry}'",
                                    "write LABEL=ROLE, e.g. \"T1=therapist,P1=patient\""))
            continue
        label, role = (x.strip() for x in entry.split("="))
        label = _normalize_label(label)
        role_l = role.lower()
        bad = False
        if not is_valid_label(label):
            problems.append(Problem(source, line, f"invalid speaker label '{label}' in "
                                    f"speaker map entry '{entry}'", _LABEL_HELP))
            bad = True
        if role_l not in ROLES:
            problems.append(Problem(source, line, f"unknown role '{role}' for speaker "
                                    f"'{label}'", f"roles are: {allowed}"))
            bad = True
        if bad:
            continue
        key = label.casefold()
        if key in folded and folded[key] != role_l:
            problems.append(Problem(source, line, f"speaker '{label}' is mapped twice, "
                                    f"to '{folded[key]}' and '{role_l}'"))
            continue
        folded[key] = role_l
        result[label] = role_l
    return result, problems


def parse_speaker_map(text: str, *, source: str = "--speaker-map") -> dict[str, str]:
    """Parse ``"T1=therapist,P1=patient"`` (``;`` also separates entries)."""
    result, problems = _speaker_map_problems(text, source, None)
    if problems:
        raise TranscriptError(problems)
    return result


def resolve_roles(transcript: ParsedTranscript,
                  speaker_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """label -> role for every speaker of ``transcript``.

    Explicit map first (exact label, then case-insensitive), then :func:`default_role`.
    Raises :class:`TranscriptError` with one problem per unrecognised label.
    """
    speaker_map = dict(speaker_map or {})
    problems: list[Problem] = []
    speaker_map = {k: str(v).strip().lower() for k, v in speaker_map.items()}
    for key, role in speaker_map.items():
        if role not in ROLES:
            problems.append(Problem("speaker map", None, f"unknown role '{role}' for "
                                    f"speaker '{key}'", f"roles are: {', '.join(ROLES)}"))
    if problems:
        raise TranscriptError(problems)
    folded = {_normalize_label(k).casefold(): v for k, v in speaker_map.items()}
    first_line: dict[str, int] = {}
    for u in transcript.utterances:
        first_line.setdefault(u.speaker, u.line)
    unit = "paragraph" if transcript.format == "docx" else "line"
    roles: dict[str, str] = {}
    for label in transcript.speakers:
        role = speaker_map.get(label) or folded.get(label.casefold()) or default_role(label)
        if role is None:
            problems.append(Problem(
                transcript.filename, first_line.get(label), f"unknown speaker '{label}'",
                f"pass --speaker-map \"{label}=therapist\" (or patient/other), or add a "
                f"speaker_map column to the manifest", unit))
        else:
            roles[label] = role
    if problems:
        raise TranscriptError(problems)
    return roles


# --------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------

# "SPEAKER: text" — the colon must not be followed by a digit or '/' (10:30, http://).
_SPEAKER_RE = re.compile(r"([^\W_][\w \-.']{0,39}?)[ \t]*:(?![\d/])[ \t]*")
# "[...]" at the start of a line is taken as a timestamp (and must then be valid) when its
# content has no spaces and contains a colon: "[00:01:05]", "[1:05]", also "[00:6l:00]".
# "[inaudible]" or "[laughs]" are ordinary text.
_BRACKET_RE = re.compile(r"\[[ \t]*([^\]\s:]{0,20}:[^\]\s]{0,20})[ \t]*\][ \t]*")


def _plausible_label(label: str, seen: set[str] | dict[str, int]) -> bool:
    """Is the prefix before a colon a speaker label rather than part of a sentence?"""
    if " " not in label or label in seen:
        return True
    words = label.split()
    if len(words) > 3:
        return False
    if default_role(label):
        return True
    return all(w[0].isupper() or w[0].isdigit() for w in words)


def _split_speaker(line: str, seen) -> tuple[str, str] | None:
    m = _SPEAKER_RE.match(line)
    if not m:
        return None
    label = _normalize_label(m.group(1))
    if not _plausible_label(label, seen):
        return None
    return label, line[m.end():]


class _Builder:
    """Accumulates utterances and checks limits, timing order and empty text."""

    def __init__(self, filename: str, unit: str = "line"):
        self.filename = filename
        self.unit = unit
        self.problems: list[Problem] = []
        self.items: list[list] = []  # [speaker, text, start, end, line]
        self.speakers: dict[str, int] = {}
        self.last_start: float | None = None
        self.too_many = False

    def problem(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.filename, line, message, hint, self.unit))

    def check_order(self, start: float | None, line: int) -> None:
        if start is None:
            return
        if self.last_start is not None and start < self.last_start:
            self.problem(line, f"timestamp {_fmt_time(start)} is earlier than the previous "
                         f"one ({_fmt_time(self.last_start)}): utterances are out of order")
        else:
            self.last_start = start

    def add(self, speaker: str, text: str, start: float | None, end: float | None,
            line: int) -> bool:
        if len(self.items) >= MAX_UTTERANCES:
            if not self.too_many:
                self.too_many = True
                self.problem(line, f"too many utterances (the limit is {MAX_UTTERANCES:,})",
                             "split the transcript into several files")
            return False
        self.speakers.setdefault(speaker, line)
        self.items.append([speaker, text, start, end, line])
        return True

    def finish(self, fmt: str, data: bytes) -> ParsedTranscript:
        utterances = []
        for item in self.items:
            speaker, text, start, end, line = item
            text = text.strip()
            if not text:
                self.problem(line, f"utterance by '{speaker}' has no text")
            elif len(text) > MAX_UTTERANCE_CHARS:
                self.problem(line, f"utterance by '{speaker}' is too long ({len(text):,} "
                             f"characters; the limit is {MAX_UTTERANCE_CHARS:,})",
                             "split it into several utterances")
            utterances.append(_make_utterance(len(utterances) + 1, speaker, text, start,
                                              end, line))
        if not utterances and not self.problems:
            self.problem(None, "no utterances found in the file")
        if self.problems:
            self.problems.sort(key=lambda p: (p.line is None, p.line or 0))
            raise TranscriptError(_cap(self.problems, self.filename))
        return ParsedTranscript(
            filename=self.filename,
            format=fmt,
            sha256=hashlib.sha256(data).hexdigest(),
            utterances=tuple(utterances),
            speakers=tuple(self.speakers),
        )


# --------------------------------------------------------------------------------------
# txt / docx (line based)
# --------------------------------------------------------------------------------------


def _first_line_hint(line: str) -> str:
    if line.startswith("WEBVTT"):
        return "this looks like a WebVTT file: name it *.vtt or pass --format vtt"
    if line.isdigit():
        return "this looks like an SRT subtitle file: name it *.srt or pass --format srt"
    return "every utterance must start with 'SPEAKER: text', e.g. 'T: How are you?'"


# Fast path for a txt/docx line: optional "[timestamp]", then "SPEAKER:".
_LINE_RE = re.compile(
    r"(?:\[[ \t]*([^\]\s:]{0,20}:[^\]\s]{0,20})[ \t]*\][ \t]*)?"
    r"([^\W_][\w \-.']{0,39}?)[ \t]*:(?![\d/])[ \t]*"
)


def _parse_lines(lines: Iterable[tuple[int, str]], b: _Builder) -> None:
    cur: list | None = None  # builder item: [speaker, text, start, end, line]
    blank = False
    reported_orphan = False
    seen = b.speakers
    items = b.items
    line_match = _LINE_RE.match
    for lineno, raw in lines:
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            blank = True
            continue
        m = line_match(line)
        if m is not None:
            label = m.group(2)
            if " " in label:
                if "  " in label:
                    label = " ".join(label.split())
                if not _plausible_label(label, seen):
                    m = None
        if m is None:
            if line[0] == "[":
                mb = _BRACKET_RE.match(line)
                if mb:
                    b.problem(lineno, f"expected 'SPEAKER: text' after the timestamp "
                              f"[{mb.group(1)}]")
                    continue
            if cur is None:
                if not reported_orphan:
                    reported_orphan = True
                    b.problem(lineno, f"the first {b.unit} has no speaker label",
                              _first_line_hint(line))
                continue
            if cur[1]:
                cur[1] += ("\n" if blank else " ") + line
            else:
                cur[1] = line
            blank = False
            continue
        blank = False
        ts_text = m.group(1)
        text = line[m.end():]
        if ts_text is None and text.startswith("["):
            mb = _BRACKET_RE.match(text)
            if mb:
                ts_text, text = mb.group(1), text[mb.end():]
        start = None
        if ts_text is not None:
            try:
                start = parse_timestamp(ts_text)
            except ValueError as exc:
                b.problem(lineno, str(exc))
            else:
                if b.last_start is None or start >= b.last_start:
                    b.last_start = start
                else:
                    b.check_order(start, lineno)
        if len(items) < MAX_UTTERANCES:  # inlined b.add() (hot loop)
            if label not in seen:
                seen[label] = lineno
            cur = [label, text, start, None, lineno]
            items.append(cur)
        else:
            b.add(label, text, start, None, lineno)
            return


def _parse_txt(text: str, b: _Builder) -> None:
    _parse_lines(enumerate(text.split("\n"), 1), b)


def _parse_docx(data: bytes, b: _Builder) -> None:
    try:
        import docx  # python-docx

        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # BadZipFile, KeyError, lxml errors, PackageNotFoundError …
        b.problem(None, "not a valid Word .docx file",
                  f"open and re-save it in Word, or export it as .txt ({type(exc).__name__})")
        return
    paragraphs = document.paragraphs

    def lines():
        for number, para in enumerate(paragraphs, 1):
            for piece in para.text.split("\n"):  # soft line breaks stay in the paragraph
                yield number, piece

    _parse_lines(lines(), b)
    if not b.items and not b.problems and document.tables:
        b.problem(None, "no utterances found in the document's paragraphs",
                  "transcripts inside Word tables are not read: export the table as CSV")


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------

_SYNONYMS = {
    "speaker": ("speaker", "speaker_label", "speaker_name", "speakerlabel", "spk", "name",
                "who", "role", "sprecher", "sprecherin"),
    "text": ("text", "utterance", "content", "transcript", "utterance_text", "transcription",
             "sentence", "statement", "words", "aussage", "äußerung", "aeusserung"),
    "start": ("start", "start_time", "starttime", "start_s", "start_sec", "start_seconds",
              "begin", "onset", "from", "time", "timestamp"),
    "end": ("end", "end_time", "endtime", "end_s", "end_sec", "end_seconds", "stop",
            "offset", "to"),
}


def _norm_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _sniff_delimiter(text: str, preferred: str = ",") -> str:
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    best, best_n = preferred, 1
    for delim in (preferred, ",", ";", "\t"):
        try:
            n = len(next(csv.reader([first], delimiter=delim)))
        except (csv.Error, StopIteration):
            continue
        if n > best_n:
            best, best_n = delim, n
    return best


def _read_csv(text: str, delimiter: str):
    """Yield (start_line, row). Raises csv.Error with line info attached by caller."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    prev = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _CsvLineError(reader.line_num, str(exc)) from None
        yield prev + 1, row
        prev = reader.line_num


class _CsvLineError(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def _find_columns(header: list[str], columns: CsvColumns) -> tuple[dict[str, int], list[str]]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(_norm_header(name), i)
    found: dict[str, int] = {}
    missing: list[str] = []
    defaults = CsvColumns()
    for key in ("speaker", "text", "start", "end"):
        wanted = getattr(columns, key)
        names = [wanted]
        if wanted == getattr(defaults, key):
            names += list(_SYNONYMS[key])
        for n in names:
            i = index.get(_norm_header(n))
            if i is not None:
                found[key] = i
                break
        else:
            if key in ("speaker", "text"):
                missing.append(wanted)
    return found, missing


def _csv_synonym_hint(columns: CsvColumns, missing: list[str]) -> str:
    parts = []
    for key in ("speaker", "text"):
        wanted = getattr(columns, key)
        if wanted in missing:
            if wanted == getattr(CsvColumns(), key):
                parts.append(f"accepted names for the {key} column: "
                             + ", ".join(_SYNONYMS[key][:6]))
            else:
                parts.append(f"the {key} column was configured as '{wanted}'")
    return "; ".join(parts)


def _parse_csv(text: str, b: _Builder, columns: CsvColumns, preferred: str) -> None:
    delimiter = _sniff_delimiter(text, preferred)
    rows = _read_csv(text, delimiter)
    try:
        header_line, header = 0, None
        for header_line, row in rows:
            if any(c.strip() for c in row):
                header = row
                break
        if header is None:
            b.problem(None, "CSV file has no header row")
            return
        found, missing = _find_columns(header, columns)
        if missing:
            shown = ", ".join(f"'{h.strip()}'" for h in header if h.strip()) or "none"
            b.problem(header_line, "missing required column(s) "
                      + ", ".join(f"'{m}'" for m in missing) + f"; columns found: {shown}",
                      _csv_synonym_hint(columns, missing))
            return
        si, ti = found["speaker"], found["text"]
        st, en = found.get("start"), found.get("end")
        for lineno, row in rows:
            if not any(c.strip() for c in row):
                continue

            def cell(i):
                return row[i].strip() if i is not None and i < len(row) else ""

            label = _normalize_label(cell(si))
            utext = cell(ti)
            label_ok = False
            if not label:
                b.problem(lineno, "row has no speaker")
            elif not is_valid_label(label):
                b.problem(lineno, f"invalid speaker label '{label}'", _LABEL_HELP)
            else:
                label_ok = True
            start = end = None
            for idx, what in ((st, "start"), (en, "end")):
                raw = cell(idx)
                if raw:
                    try:
                        value = _parse_seconds(raw)
                    except ValueError as exc:
                        b.problem(lineno, f"{what}: {exc}")
                        continue
                    if what == "start":
                        start = value
                    else:
                        end = value
            if start is not None and end is not None and end < start:
                b.problem(lineno, f"end {_fmt_time(end)} is before start {_fmt_time(start)}")
            b.check_order(start, lineno)
            if label_ok and not b.add(label, utext, start, end, lineno):
                return
    except _CsvLineError as exc:
        b.problem(exc.line, f"CSV syntax error: {exc.message}",
                  "check for unbalanced quotes or a cell that is far too long")


# --------------------------------------------------------------------------------------
# WebVTT and SRT (cue based)
# --------------------------------------------------------------------------------------

_TIMING_RE = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")
_VOICE_RE = re.compile(r"<v(?:\.[^\s>]*)?(?:[ \t]+([^>]*))?>")
_VTT_TAG_RE = re.compile(r"</?(?:c|i|b|u|v|lang|ruby|rt)(?:[.\s][^>]*)?>|<\d[\d:.]*>")
_SRT_TAG_RE = re.compile(r"</?(?:i|b|u|font)(?:\s[^>]*)?>|\{\\[^}]*\}")
_VTT_BLOCK_KEYWORDS = ("NOTE", "STYLE", "REGION")


def _blocks(lines: list[str], first: int) -> list[list[tuple[int, str]]]:
    """Blank-line separated blocks of (line number, text) starting at index ``first``."""
    blocks: list[list[tuple[int, str]]] = []
    cur: list[tuple[int, str]] = []
    for i in range(first, len(lines)):
        s = lines[i].strip()
        if s:
            cur.append((i + 1, lines[i].rstrip()))
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def _parse_timing(line: str, lineno: int, b: _Builder) -> tuple[float | None, float | None]:
    m = _TIMING_RE.match(line)
    if not m:
        b.problem(lineno, f"invalid cue timing '{line.strip()}'",
                  "expected e.g. '00:00:01.000 --> 00:00:04.000'")
        return None, None
    times: list[float | None] = []
    for what, value in (("start", m.group(1)), ("end", m.group(2))):
        try:
            times.append(parse_timestamp(value))
        except ValueError as exc:
            b.problem(lineno, f"cue {what}: {exc}")
            times.append(None)
    start, end = times
    if start is not None and end is not None and end < start:
        b.problem(lineno, f"cue ends ({_fmt_time(end)}) before it starts ({_fmt_time(start)})")
    return start, end


def _add_cue(b: _Builder, state: dict, start, end, payload: list[tuple[int, str]],
             vtt: bool) -> None:
    """Split a cue payload into speaker segments and add/merge them."""
    tag_re = _VTT_TAG_RE if vtt else _SRT_TAG_RE
    segments: list[list] = []  # [speaker|None, [texts], line]

    def append(text: str, lineno: int, speaker: str | None = None, new: bool = False):
        if new or not segments:
            segments.append([speaker, [], lineno])
        segments[-1][1].append(text)

    for lineno, line in payload:
        voices = list(_VOICE_RE.finditer(line)) if vtt else []
        if voices:
            before = line[:voices[0].start()]
            if tag_re.sub("", before).strip():
                append(before, lineno)
            for k, m in enumerate(voices):
                name = _normalize_label(m.group(1) or "")
                stop = voices[k + 1].start() if k + 1 < len(voices) else len(line)
                if not is_valid_label(name):
                    b.problem(lineno, f"invalid speaker name '{name}' in voice tag",
                              _LABEL_HELP)
                    name = ""  # already reported: drop this segment
                append(line[m.end():stop], lineno, name, new=True)
            continue
        clean = tag_re.sub("", line).strip()
        split = _split_speaker(clean, b.speakers)
        if split is not None:
            append(split[1], lineno, split[0], new=True)
        else:
            append(clean, lineno)

    for speaker, texts, lineno in segments:
        text = " ".join(t for t in (tag_re.sub("", x).strip() for x in texts) if t)
        if vtt:
            text = html.unescape(text).strip()
        if not text or speaker == "":
            continue
        if speaker:
            if b.add(speaker, text, start, end, lineno):
                state["cur"] = b.items[-1]
            continue
        cur = state.get("cur")
        if cur is None:
            if not state.get("orphan"):
                state["orphan"] = True
                b.problem(lineno, "the first cue has no speaker",
                          "start the cue text with 'SPEAKER: ' or a voice tag <v SPEAKER>")
            continue
        cur[1] = f"{cur[1]} {text}" if cur[1] else text
        if end is not None and (cur[3] is None or end > cur[3]):
            cur[3] = end


def _parse_vtt(text: str, b: _Builder) -> None:
    lines = text.split("\n")
    first = 0
    if lines and re.match(r"^WEBVTT(?:[ \t].*)?$", lines[0].rstrip()):
        # skip the header block
        first = 1
        while first < len(lines) and lines[first].strip():
            first += 1
    else:
        b.problem(1, "missing 'WEBVTT' header", "the first line of a WebVTT file must be "
                  "'WEBVTT'; if this is an SRT file, name it *.srt or pass --format srt")
    _parse_cues(lines, first, b, vtt=True)


def _parse_cues(lines: list[str], first: int, b: _Builder, *, vtt: bool) -> None:
    """Read WebVTT cues or SRT subtitles: optional id line, timing line, text lines."""
    state: dict = {}
    for block in _blocks(lines, first):
        head = block[0][1].strip()
        keyword = head.split(None, 1)[0] if head else ""
        if vtt and keyword in _VTT_BLOCK_KEYWORDS and "-->" not in head:
            continue
        if "-->" in block[0][1]:
            t = 0
        elif len(block) > 1 and "-->" in block[1][1]:
            t = 1
        elif vtt:
            b.problem(block[0][0], "expected a cue timing line",
                      "e.g. '00:00:01.000 --> 00:00:04.000'; cue text must not contain "
                      "blank lines")
            continue
        else:
            b.problem(block[0][0], "expected a subtitle number followed by a timing line",
                      "e.g. '1' then '00:00:01,000 --> 00:00:04,000'; subtitle text must "
                      "not contain blank lines")
            continue
        lineno, timing = block[t]
        start, end = _parse_timing(timing, lineno, b)
        b.check_order(start, lineno)
        _add_cue(b, state, start, end, block[t + 1:], vtt=vtt)
        if b.too_many:
            return


def _parse_srt(text: str, b: _Builder) -> None:
    _parse_cues(text.split("\n"), 0, b, vtt=False)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------

_SRT_SNIFF = re.compile(r"^\s*\d+\s*\n\s*\d+:\d{2}:\d{2}[,.]\d{1,3}\s*-->")


def _sniff_text_format(text: str) -> str:
    stripped = text.lstrip()
    if re.match(r"^WEBVTT(?:[ \t\n]|$)", stripped):
        return "vtt"
    if _SRT_SNIFF.match(stripped):
        return "srt"
    first = stripped.split("\n", 1)[0]
    delim = _sniff_delimiter(first)
    try:
        header = next(csv.reader([first], delimiter=delim))
    except (csv.Error, StopIteration):
        header = []
    if len(header) > 1:
        _, missing = _find_columns(header, CsvColumns())
        if not missing:
            return "csv"
    return "txt"


def _fmt_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1048576:.1f}".removesuffix(".0") + " MB"
    if n >= 1024:
        return f"{n / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{n} bytes"


def parse_transcript(data: bytes, filename: str, *, fmt: str = "auto",
                     csv_columns: CsvColumns | None = None,
                     max_bytes: int = MAX_BYTES) -> ParsedTranscript:
    """Parse one transcript file. Raises :class:`TranscriptError` listing all problems."""
    fmt = (fmt or "auto").strip().lower()
    if fmt == "tsv":
        fmt = "csv"
    if fmt != "auto" and fmt not in FORMATS:
        raise TranscriptError([Problem(filename, None, f"unknown format '{fmt}'",
                                       "use one of: auto, " + ", ".join(FORMATS))])
    if len(data) > max_bytes:
        raise TranscriptError([Problem(
            filename, None, f"file is too large ({_fmt_size(len(data))}; the limit is "
            f"{_fmt_size(max_bytes)})", "split the transcript into several files")])
    if not data:
        raise TranscriptError([Problem(filename, None, "file is empty")])

    ext = PurePath(filename).suffix.lower()
    if fmt == "auto":
        fmt = EXTENSIONS.get(ext, "")
        if not fmt and _is_zip(data) and _zip_kind(data) == "docx":
            fmt = "docx"

    b = _Builder(filename, "paragraph" if fmt == "docx" else "line")
    if fmt == "docx":
        kind = _zip_kind(data) if _is_zip(data) else None
        if kind not in ("docx", "zip"):  # "zip": damaged; python-docx reports it below
            problem = _binary_problem(data, filename)
            raise TranscriptError([problem if kind is None and problem else Problem(
                filename, None, "not a valid Word .docx file",
                (problem.message if problem else
                 "if this is a plain-text transcript, name it *.txt or pass --format txt"))])
        _parse_docx(data, b)
        return b.finish("docx", data)

    text = decode_text(data, filename)
    if not text.strip():
        raise TranscriptError([Problem(filename, None, "file is empty (only whitespace)")])
    if not fmt:
        fmt = _sniff_text_format(text)
    if fmt == "txt":
        _parse_txt(text, b)
    elif fmt == "csv":
        _parse_csv(text, b, csv_columns or CsvColumns(), "\t" if ext == ".tsv" else ",")
    elif fmt == "vtt":
        _parse_vtt(text, b)
    else:
        _parse_srt(text, b)
    return b.finish(fmt, data)
