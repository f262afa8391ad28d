"""``mbtcode irr``: inter-rater reliability of any long-format spreadsheet."""

from __future__ import annotations

from pathlib import Path

import click

from ..io.irr_csv import Columns, parse_ratings_csv
from ..io.transcripts import TranscriptError
from ..stats.reliability import irr_summary
from ._common import emit_json

LEVELS = ("nominal", "ordinal", "interval", "ratio")


@click.command("irr")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--unit", default="unit", show_default=True, help="Column naming the rated unit.")
@click.option("--rater", default="rater", show_default=True, help="Column naming the rater.")
@click.option("--value", default="value", show_default=True, help="Column with the rating or code.")
@click.option("--level", type=click.Choice(LEVELS), default="nominal", show_default=True,
              help="Level of measurement of the values.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
def irr(file: str, unit: str, rater: str, value: str, level: str, as_json: bool) -> None:
    """Agreement statistics with 95% CIs for ratings in long format (one row per rating).

    Needs no database: reads FILE, prints percent agreement, Krippendorff's alpha, Fleiss'
    kappa, Gwet's AC1, and for two raters Cohen's kappa; for ordinal or higher levels also
    the weighted kappas and the six ICC forms. A statistic that cannot be computed is
    null with a reason.
    """
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot read ({exc.strerror})") from exc
    try:
        frame = parse_ratings_csv(data, file, Columns(unit, rater, value), numeric=level != "nominal")
    except TranscriptError as exc:
        for problem in exc.problems[:-1]:
            click.echo(str(problem), err=True)
        raise click.ClickException(str(exc.problems[-1])) from exc
    try:
        summary = irr_summary(frame, level=level)
    except ValueError as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    if as_json:
        emit_json(summary)
        return
    click.echo(f"{file}: {summary['n_units']} units, {summary['n_raters']} raters, "
               f"{summary['n_ratings']} ratings, {level} level")
    for name, stat in summary["statistics"].items():
        if stat["estimate"] is None:
            click.echo(f"  {name:<26} —        ({stat.get('reason')})")
            continue
        ci = ""
        if stat["ci_low"] is not None:
            ci = f"  95% CI [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
        click.echo(f"  {name:<26} {stat['estimate']:7.3f}{ci}")
