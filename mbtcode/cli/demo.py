"""``mbtcode demo``: a ready-to-try instance with fictional sessions."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..services.demo import FIDELITY_STUDY, load_demo
from ._common import safe_url, transactional
from .db import run_server


@click.command()
@click.option("--no-serve", is_flag=True, help="Set up the demo and exit without starting the server.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@with_appcontext
def demo(no_serve: bool, host: str, port: int) -> None:
    """Create (or upgrade) the database, load the demo study, print the accounts, serve."""
    _setup()
    if not no_serve:
        run_server(host, port)
    else:
        click.echo(f"Start it with: mbtcode serve --host {host} --port {port}")


@transactional
def _setup() -> None:
    from ..migrate import upgrade_database

    upgrade_database()
    result = load_demo(current_app.instance_path)
    click.echo(f"Instance folder: {current_app.instance_path}")
    click.echo(f"Database: {safe_url()}")
    if result.imported:
        click.echo(f"Demo study '{result.study_name}': imported {result.imported} sessions.")
    else:
        click.echo(f"Demo study '{result.study_name}' is already loaded.")
    click.echo(f"Fidelity demo study '{FIDELITY_STUDY}': a simulated year of rated sessions "
               "for the fidelity dashboard.")
    click.echo("Demo accounts (fictional data only; passwords kept in the instance folder):")
    for email, role, password in result.accounts:
        click.echo(f"  {role:<12} {email:<32} {password}")
