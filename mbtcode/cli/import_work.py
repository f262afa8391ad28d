"""``mbtcode import-ratings``, ``import-codes``, ``import-outcomes``: work done in spreadsheets.

Each command checks the whole file first and writes nothing if any row has a problem (the
same all-or-nothing rule and error format as ``mbtcode import``). See docs/importing-work.md.
"""

from __future__ import annotations

import click
from flask import current_app

from ..io.transcripts import Problem
from ..services import ServiceError
from ..services.outcomes import apply_outcomes_import, plan_outcomes_import
from ..services.studies import require_study
from ..services.work_imports import apply_work_import, plan_codes_import, plan_ratings_import
from ._common import require_current_schema, transactional
from .import_ import read_limited


def _refuse(problems: list[Problem], n_problems: int, filename: str) -> None:
    """Print every problem on stderr and stop with one summary line (exit status 1)."""
    for problem in problems:
        click.echo(str(problem), err=True)
    raise ServiceError(f"nothing was imported: {n_problems} problem(s) in {filename}; fix them and run again")


def _read(path: str):
    source, problem = read_limited(path, current_app.config["IMPORT_MAX_BYTES"])
    if problem:
        _refuse([problem], 1, path)
    return source


def _work_command(plan_function, file: str, study_name: str, dry_run: bool) -> None:
    require_current_schema()
    study = require_study(study_name)
    source = _read(file)
    plan = plan_function(study, source, max_bytes=current_app.config["IMPORT_MAX_BYTES"])
    if not plan.ok:
        _refuse(plan.problems, plan.n_problems, file)
    if dry_run:
        click.echo(f"Dry run: would import {plan.summary()}; nothing was written.")
        return
    apply_work_import(plan, actor=None)
    click.echo(f"imported {plan.summary()}")


@click.command("import-ratings")
@click.argument("file", metavar="FILE.csv")
@click.option("--study", "study_name", required=True, help="Study the sessions belong to.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@transactional
def import_ratings(file: str, study_name: str, dry_run: bool) -> None:
    """Import instrument ratings (columns session,rater,instrument,item,dimension,value) as submitted work."""
    _work_command(plan_ratings_import, file, study_name, dry_run)


@click.command("import-codes")
@click.argument("file", metavar="FILE.csv")
@click.option("--study", "study_name", required=True, help="Study the sessions belong to.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@transactional
def import_codes(file: str, study_name: str, dry_run: bool) -> None:
    """Import utterance codes (columns session,utterance,rater,code_set,code) as submitted work."""
    _work_command(plan_codes_import, file, study_name, dry_run)


@click.command("import-outcomes")
@click.argument("file", metavar="FILE.csv")
@click.option("--study", "study_name", required=True, help="Study the patients belong to.")
@click.option("--replace", is_flag=True,
              help="First delete the study's stored outcomes of the measures in the file.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@transactional
def import_outcomes(file: str, study_name: str, replace: bool, dry_run: bool) -> None:
    """Import outcome measures (columns patient,date,study_day,measure,value)."""
    require_current_schema()
    study = require_study(study_name)
    source = _read(file)
    plan = plan_outcomes_import(study, source, replace=replace,
                                max_bytes=current_app.config["IMPORT_MAX_BYTES"])
    if not plan.ok:
        _refuse(plan.problems, plan.n_problems, file)
    if dry_run:
        click.echo(f"Dry run: would import {plan.summary()}; nothing was written.")
        return
    apply_outcomes_import(plan, actor=None)
    click.echo(f"imported {plan.summary()}")
