"""``mbtcode session …``: therapy sessions of a study."""

from __future__ import annotations

import click

from ..services.sessions import list_sessions
from ..services.studies import require_study
from ._common import emit_json, require_current_schema, transactional


@click.group()
def session() -> None:
    """List therapy sessions."""


@session.command("list")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@transactional
def list_(study_name: str, as_json: bool) -> None:
    """List a study's sessions with utterance counts and speakers."""
    require_current_schema()
    summaries = list_sessions(require_study(study_name))
    if as_json:
        emit_json([s.as_json() for s in summaries])
        return
    if not summaries:
        click.echo("No sessions yet: mbtcode import FILE... --study NAME")
    for s in summaries:
        speakers = ", ".join(f"{label}={role}" for label, role in s.speakers.items())
        meta = " ".join(
            x for x in (s.session.modality, s.session.phase or "",
                        s.session.session_date.isoformat() if s.session.session_date else "") if x
        )
        click.echo(f"{s.session.id:>5}  {s.session.label:<28} {s.n_utterances:>5} utt.  {meta}  [{speakers}]")
