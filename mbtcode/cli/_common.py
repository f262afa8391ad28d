"""Helpers shared by the CLI modules: one transaction per command, errors as one line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import OperationalError

from ..extensions import db
from ..services import ServiceError


def transactional(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command in an app context; commit once at the end, roll back on any error.

    Domain refusals (ServiceError) become a one-line ``Error: …`` and exit status 1.
    """

    @with_appcontext
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            db.session.commit()
            return result
        except ServiceError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from exc
        except OperationalError as exc:
            db.session.rollback()
            reason = str(exc.orig).splitlines()[0] if exc.orig else exc.__class__.__name__
            raise click.ClickException(
                f"database {safe_url()} not usable: {reason}; nothing was changed "
                "(if it is busy, try again)"
            ) from exc
        except BaseException:
            db.session.rollback()
            raise

    return wrapper


def require_current_schema() -> None:
    """Refuse to work on a database that ``mbtcode init`` has not created or upgraded."""
    from ..migrate import current_revision, head_revision

    current = current_revision()
    if current != head_revision():
        state = "has no mbtcode tables" if current is None else f"is at revision {current}"
        raise click.ClickException(
            f"the database {safe_url()} {state}; run 'mbtcode init' first"
        )


def safe_url() -> str:
    """The database URL with any password hidden."""
    return db.engine.url.render_as_string(hide_password=True)


def emit_json(data: Any) -> None:
    """Write JSON to stdout, and nothing else."""
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, sort_keys=False)
    sys.stdout.write("\n")


def info(message: str) -> None:
    """A progress or summary line for people (stderr when stdout is reserved for data)."""
    click.echo(message, err=True)
