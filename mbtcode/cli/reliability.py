"""``mbtcode reliability``: the study's inter-rater reliability report."""

from __future__ import annotations

import click

from ..services.studies import require_study
from ._common import emit_json, require_current_schema, transactional


def _fmt(stat: dict) -> str:
    if stat.get("estimate") is None:
        return f"—  ({stat.get('reason')})"
    text = f"{stat['estimate']:.3f}"
    if stat.get("ci_low") is not None:
        text += f" [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
    if stat.get("band"):
        text += f" {stat['band']} ({stat['scale']})"
    return text


@click.command("reliability")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON only.")
@click.option("--boot", "n_boot", type=click.IntRange(0, 100_000), default=1000, show_default=True,
              help="Bootstrap replicates for the bootstrap intervals (0: none).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the bootstrap.")
@transactional
def reliability(study_name: str, as_json: bool, n_boot: int, seed: int) -> None:
    """Reliability of a study's double-coded sessions: codes, session tallies and ratings.

    Counts only submitted work of sessions with two or more submitted assignments (gold
    sessions and consensus codings left out). The JSON has every figure of the report page.
    """
    from ..services.reliability_report import reliability_report  # pandas: only when used

    require_current_schema()
    report = reliability_report(require_study(study_name), n_boot=n_boot, seed=seed)
    if as_json:
        emit_json(report)
        return
    s = report["sessions"]
    click.echo(f"{report['study']} ({report['scheme']}): {s['double_coded']} of {s['total']} sessions "
               f"double-coded, {len(report['raters'])} raters")
    if not s["double_coded"]:
        click.echo("No double-coded sessions with submitted work yet.")
        return
    for cs in report["code_sets"]:
        o = cs["overall"]
        click.echo(f"\n{cs['title']}: {o['n_units']} utterances, {o['n_raters']} raters")
        for name, stat in o["statistics"].items():
            click.echo(f"  {name:<26} {_fmt(stat)}")
        click.echo("  per code (utterance alpha | session-tally ICC(1)):")
        for code in cs["codes"]:
            alpha = code["utterance"]["statistics"]["krippendorff_alpha"]
            tally = code["session_tally"]["statistics"].get("icc1", {"estimate": None, "reason": "no data"})
            prev = "—" if code["prevalence"] is None else f"{code['prevalence']:.1%}"
            click.echo(f"    {code['code']:<24} prev {prev:>6}  {_fmt(alpha)} | {_fmt(tally)}")
    click.echo("\nMBT-ACS and other session ratings:")
    for entry in report["ratings"]["items"] + report["ratings"]["means"]:
        stat = entry["statistics"].get("icc1") or entry["statistics"]["krippendorff_alpha"]
        label = f"{entry['label']} [{entry['dimension']}]"
        click.echo(f"  {label[:60]:<60} n={entry['n_units']:<4} ICC(1) {_fmt(stat)}")
