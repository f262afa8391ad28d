"""``mbtcode user …``: accounts."""

from __future__ import annotations

import sys

import click

from ..models import ROLES
from ..services import ServiceError
from ..services.users import create_user
from ._common import require_current_schema, transactional


@click.group()
def user() -> None:
    """Manage user accounts."""


@user.command("add")
@click.argument("email")
@click.option("--name", required=True, help="Display name (shown to coordinators only).")
@click.option("--role", required=True, type=click.Choice(ROLES), help="Site-wide role.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@transactional
def add_user(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create an account; asks for the password unless --password-stdin is given."""
    require_current_schema()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ServiceError("no password on standard input")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise ServiceError("standard input is not a terminal: pass --password-stdin and pipe the password")
    account = create_user(email, name=name, role=role, password=password, actor=None)
    click.echo(f"Created {account.role} {account.email} (id {account.id}).")
