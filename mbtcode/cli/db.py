"""``mbtcode init`` and ``mbtcode serve``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..services.schemes import register_shipped_schemes
from ..services.users import count_users
from ._common import require_current_schema, safe_url, transactional


@click.command()
@transactional
def init() -> None:
    """Create or upgrade the database and register the shipped coding schemes."""
    from ..migrate import current_revision, upgrade_database

    before = current_revision()
    upgrade_database()
    versions = register_shipped_schemes()
    after = current_revision()
    what = "created" if before is None else ("upgraded" if before != after else "up to date")
    click.echo(f"Database {what}: {safe_url()} (schema revision {after}).")
    click.echo(f"Coding schemes available: {', '.join(v.ref for v in versions)}.")
    if count_users() == 0:
        click.echo(
            "No accounts yet: create the first administrator with\n"
            "  mbtcode user add EMAIL --name NAME --role admin"
        )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only change it behind TLS on a trusted network.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Worker threads of the embedded server.")
@with_appcontext
def serve(host: str, port: int, threads: int) -> None:
    """Serve the web app with the embedded production server (waitress)."""
    require_current_schema()
    run_server(host, port, threads)


def run_server(host: str, port: int, threads: int = 8) -> None:
    """Start waitress on the current app; blocks until interrupted."""
    import waitress

    from ..extensions import db

    # End the command's own transaction: on SQLite an open one would hold the write lock
    # for as long as the server runs. Requests get their own sessions.
    db.session.remove()
    app = current_app._get_current_object()
    click.echo(f"mbtcode is running at http://{host}:{port}/  (Ctrl+C stops it)")
    waitress.serve(app, host=host, port=port, threads=threads, ident="mbtcode")
