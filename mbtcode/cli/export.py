"""``mbtcode export``: one export table as CSV, Excel, Parquet, SPSS or Stata, with codebooks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from ..database import reading
from ..extensions import db
from ..services import ServiceError
from ._common import require_current_schema, transactional

#: ``services.exports.LEVELS`` and ``FORMATS`` (kept equal by a test; spelled out here so that
#: ``mbtcode --help`` does not import pandas).
LEVELS = ("session", "therapist", "utterance", "rating", "outcomes")
FORMATS = ("csv", "xlsx", "parquet", "sav", "dta")
BINARY = ("xlsx", "parquet", "sav", "dta")

#: Mode of the files of an export with utterance text or notes (identifying): the owner only.
IDENTIFYING_MODE = 0o600


def write_atomically(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``path`` through a temporary file in the same folder and a rename.

    An interrupted export leaves the old file (or none), never half a file. ``mode``: the
    file's permissions (default: as ``open()`` would create it, 0666 less the umask). The
    temporary file is created 0600, so the data are never readable by others on the way.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (binary formats are refused there)."""
    return sys.stdout.isatty()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@click.command("export")
@click.option("--study", "study_name", required=True, help="Study name ('mbtcode study list').")
@click.option("--level", required=True, type=click.Choice(LEVELS),
              help="One row per session, therapist, utterance and coding, single rating, or "
                   "outcome (merged with the nearest scored session).")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="File format.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write FILE with FILE.codebook.md, FILE.codebook.json and FILE.manifest.json, "
                   "each atomically, one after the other (data file first, manifest last); "
                   "without it the data go to standard output.")
@click.option("--include-text", is_flag=True,
              help="Add the utterance text and the transcript's speaker labels, which can be "
                   "names (utterance level). Identifying: the files are written readable by "
                   "you only (mode 0600).")
@click.option("--include-notes", is_flag=True,
              help="Add the raters' notes and rationales (utterance and rating levels). "
                   "Identifying: the files are written readable by you only (mode 0600).")
@transactional
def export(study_name: str, level: str, fmt: str, out: Path | None, include_text: bool,
           include_notes: bool) -> None:
    """Export a study's fidelity data as a tidy table for outcome analyses.

    De-identified unless asked otherwise: rater codes (R<number>), never names; no utterance
    text, speaker labels or notes without --include-text / --include-notes. Unchanged data
    give identical files (only the manifest's generated_at differs). See docs/exports.md.

    The export is audited (export.file, with the data file's SHA-256) before any file is
    written: an interrupted export may be in the audit log without its files, never the
    other way round. The four files are replaced one at a time, each atomically: if writing
    stops half-way, some may be new and the rest old; compare them with the manifest.
    """
    from ..io import export_formats as ef  # pandas: only when used
    from ..services import exports
    from ..services.studies import get_study_by_name

    if out is None and fmt in BINARY and stdout_is_terminal():
        raise click.ClickException(
            f"{fmt} is a binary format and standard output is a terminal: write it to a file "
            f"with --out FILE (or redirect standard output)")
    if out is not None:
        out = out.expanduser()
        if not out.parent.is_dir():
            raise click.ClickException(f"folder {out.parent} does not exist; create it first or "
                                       "choose another --out")
    require_current_schema()
    study = get_study_by_name(study_name)
    if study is None:
        raise click.ClickException(
            f"no study named '{study_name}'; list the studies with 'mbtcode study list'")
    try:
        with reading():  # raters keep saving while a large table is built (SQLite)
            table = exports.export_table(study, level, actor=None, include_text=include_text,
                                         include_notes=include_notes)
            data = ef.write(table, fmt)
    except ef.ExportFormatError as exc:
        raise ServiceError(str(exc)) from exc
    rows = len(table.frame)
    if out is None:
        exports.record_file(table, fmt, data, actor=None, name="<stdout>")
        db.session.commit()  # audited before a byte leaves
        stream = click.get_binary_stream("stdout")
        stream.write(data)
        stream.flush()
        click.echo(f"{rows:,} rows ({level} level, {fmt}) written to standard output; use --out "
                   "FILE for the codebook and manifest", err=True)
        return
    files = ef.bundle(table, fmt, out.name, data=data)
    exports.record_file(table, fmt, data, actor=None, name=str(out))
    db.session.commit()  # audited before any file is written: over-reporting is the safe side
    mode = IDENTIFYING_MODE if include_text or include_notes else None
    for name, content in files.items():  # the data file first, the manifest last
        write_atomically(out.with_name(name), content, mode=mode)
    click.echo(f"Exported {rows:,} rows ({level} level, {fmt}) to {out} "
               f"(+ .codebook.md, .codebook.json, .manifest.json)")
