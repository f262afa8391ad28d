"""``mbtcode study …``: studies."""

from __future__ import annotations

import click

from ..models import STUDY_ROLES
from ..services import ServiceError
from ..services.permissions import add_member
from ..services.studies import create_study, list_studies_with_counts, require_study
from ..services.users import get_user_by_email
from ._common import emit_json, require_current_schema, transactional


@click.group()
def study() -> None:
    """Manage studies."""


@study.command("create")
@click.argument("name")
@click.option("--scheme", "scheme_ref", metavar="ID[@REVISION]",
              help="Coding scheme to pin (default: the latest revision of mbt-individual).")
@transactional
def create(name: str, scheme_ref: str | None) -> None:
    """Create a study that codes with one scheme revision."""
    require_current_schema()
    created = create_study(name, actor=None, scheme_ref=scheme_ref)
    click.echo(f"Created study '{created.name}' (id {created.id}) using scheme {created.scheme_version.ref}.")


@study.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@transactional
def list_(as_json: bool) -> None:
    """List studies with their scheme and number of sessions."""
    require_current_schema()
    rows = list_studies_with_counts()
    if as_json:
        emit_json([
            {"id": s.id, "name": s.name, "scheme": s.scheme_version.ref, "n_sessions": n}
            for s, n in rows
        ])
        return
    if not rows:
        click.echo("No studies yet: mbtcode study create NAME")
    for s, n in rows:
        click.echo(f"{s.id:>4}  {s.name}  ({s.scheme_version.ref}, {n} sessions)")


@study.command("member")
@click.argument("name")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(STUDY_ROLES), help="Role in this study.")
@transactional
def member(name: str, email: str, role: str) -> None:
    """Give an existing account a role in a study (or change it)."""
    require_current_schema()
    target = require_study(name)
    user = get_user_by_email(email)
    if user is None:
        raise ServiceError(f"no account {email}; create it with 'mbtcode user add'")
    add_member(target, user, role, actor=None)
    click.echo(f"{user.email} is a {role} in '{target.name}'.")
