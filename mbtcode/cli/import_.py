"""``mbtcode import``: transcripts into a study, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from ..io.transcripts import CsvColumns, Problem, TranscriptError, parse_speaker_map
from ..services import ServiceError
from ..services.imports import SourceFile, apply_import, plan_import
from ..services.studies import require_study
from ._common import require_current_schema, transactional

FORMATS = ("auto", "txt", "csv", "vtt", "srt", "docx")


def read_limited(path: str, max_bytes: int) -> tuple[SourceFile | None, Problem | None]:
    """Read at most ``max_bytes + 1`` bytes, so the parser can report an oversized file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return SourceFile(path, fh.read(max_bytes + 1)), None
    except FileNotFoundError:
        return None, Problem(path, None, "file not found", "check the path")
    except IsADirectoryError:
        return None, Problem(path, None, "is a directory", "name the transcript files, e.g. DIR/*.txt")
    except OSError as exc:
        return None, Problem(path, None, f"cannot read: {exc.strerror}")


def parse_csv_columns(text: str | None) -> CsvColumns | None:
    """``speaker=Sprecher,text=Inhalt`` → CsvColumns with those header names."""
    if not text:
        return None
    fields = {"speaker", "text", "start", "end"}
    values = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in fields or not value:
            raise ServiceError(
                f"bad --csv-columns part '{part}': use FIELD=HEADER with FIELD one of speaker, text, start, end"
            )
        values[key] = value
    return CsvColumns(**values)


@click.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--study", "study_name", required=True, help="Study to import into.")
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="CSV with one row per file: label, therapist, patient, date, modality, phase, …")
@click.option("--speaker-map", metavar='"T1=therapist,P1=patient"',
              help="Speaker label → role (therapist, patient, other); overrides the defaults.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--csv-columns", metavar='"speaker=Sprecher,text=Text"',
              help="Header names of a CSV transcript's columns, where they differ from speaker/text/start/end.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@transactional
def import_transcripts(files, study_name, manifest, speaker_map, fmt, csv_columns, dry_run) -> None:
    """Import transcripts; the whole batch is checked first and nothing is written on any problem."""
    require_current_schema()
    study = require_study(study_name)
    max_bytes = current_app.config["IMPORT_MAX_BYTES"]
    problems: list[Problem] = []
    sources = []
    for path in files:
        source, problem = read_limited(path, max_bytes)
        if problem:
            problems.append(problem)
        else:
            sources.append(source)
    manifest_source = None
    if manifest:
        manifest_source, problem = read_limited(manifest, max_bytes)
        if problem:
            problems.append(problem)
    mapping = None
    if speaker_map:
        try:
            mapping = parse_speaker_map(speaker_map)
        except TranscriptError as exc:
            problems.extend(exc.problems)
    plan = plan_import(
        study, sources, manifest=manifest_source, speaker_map=mapping, fmt=fmt,
        csv_columns=parse_csv_columns(csv_columns), max_bytes=max_bytes,
    )
    problems.extend(plan.problems)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        n_files = len({p.file for p in problems})
        raise ServiceError(
            f"nothing was imported: {len(problems)} problem(s) in {n_files} file(s); fix them and run again"
        )
    for s in plan.sessions:
        roles = ", ".join(f"{label}={role}" for label, role in s.roles.items())
        click.echo(f"{s.source}: '{s.label}', {len(s.transcript.utterances)} utterances, "
                   f"{s.transcript.format}, {s.modality} [{roles}]")
    if dry_run:
        click.echo(f"Dry run: {len(plan.sessions)} file(s) valid; nothing was written.")
        return
    apply_import(plan, actor=None)
    click.echo(f"Imported {len(plan.sessions)} session(s) into study '{study.name}'.")
